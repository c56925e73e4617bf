package fsm

import (
	"testing"
	"time"
)

// A restore (like a bulk apply) leaves its garbage to one collection
// soon after, not to the pacer; calls in quick succession make one.
func TestRestoreIsCollectedSoonAfter(t *testing.T) {
	m := testMachine(t)
	if res := applyCmd(m, 1, 1, &Command{Op: "create", Kind: Consumers, NewID: id1, Body: map[string]any{"username": "u"}}); res.Err != nil {
		t.Fatal(res.Err)
	}
	m2 := roundTrip(t, m)
	m2.collect.soon()
	m2.collect.soon()
	deadline := time.Now().Add(bulkQuiet + 5*time.Second)
	for m2.collect.runs.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if m2.collect.runs.Load() == 0 {
		t.Fatalf("no collection within %v of a restore", bulkQuiet+5*time.Second)
	}
	time.Sleep(bulkQuiet + time.Second)
	if n := m2.collect.runs.Load(); n != 1 {
		t.Errorf("%d collections after a restore and two more bulk signals, want 1", n)
	}
}
