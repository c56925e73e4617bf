package fsm

import (
	"math"
	"runtime/debug"
	"testing"
	"time"
)

func waitRuns(c *collector, want int64, within time.Duration) int64 {
	deadline := time.Now().Add(within)
	for c.runs.Load() < want && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	return c.runs.Load()
}

// A restore (like a bulk apply) leaves its garbage to one collection
// soon after, not to the pacer; while a bulk operation outside the
// machine runs (the next batch's validation), the collection waits.
func TestBulkChangesAreCollectedOnceIdle(t *testing.T) {
	defer func(q time.Duration) { bulkQuiet = q }(bulkQuiet)
	bulkQuiet = 300 * time.Millisecond
	m := testMachine(t)
	if res := applyCmd(m, 1, 1, &Command{Op: "create", Kind: Consumers, NewID: id1, Body: map[string]any{"username": "u"}}); res.Err != nil {
		t.Fatal(res.Err)
	}
	m2 := roundTrip(t, m)
	done := m2.Busy()
	if n := waitRuns(&m2.collect, 1, bulkQuiet+time.Second); n != 0 {
		t.Fatalf("collected %d times while a bulk operation was running", n)
	}
	m2.collect.bulk() // more bulk changes meanwhile
	done()
	done() // a second call changes nothing
	if n := waitRuns(&m2.collect, 1, bulkQuiet+5*time.Second); n != 1 {
		t.Fatalf("collected %d times once idle, want 1", n)
	}
	time.Sleep(bulkQuiet + time.Second)
	if n := m2.collect.runs.Load(); n != 1 {
		t.Errorf("%d collections in all, want 1", n)
	}
}

// The changes of a rebuild that found the state moved on are not
// forgotten: the next collection hands them over again, with the new
// ones; after a rebuild that went through, only the new ones.
func TestStaleRebuildKeepsItsChanges(t *testing.T) {
	defer func(q time.Duration) { bulkQuiet = q }(bulkQuiet)
	bulkQuiet = time.Millisecond
	var c collector
	calls, replies := make(chan int), make(chan bool)
	c.compact = func(n int) bool { calls <- n; return <-replies }
	next := func() int {
		t.Helper()
		select {
		case n := <-calls:
			return n
		case <-time.After(10 * time.Second):
			t.Fatal("no rebuild was asked for")
			return 0
		}
	}
	folded := func() int {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.folded
	}
	c.bulkFold(100)
	if n := next(); n != 100 {
		t.Fatalf("asked to rebuild after %d changes, want 100", n)
	}
	replies <- true // stale
	for i := 0; i < 500 && folded() != 100; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	c.bulkFold(50)
	if n := next(); n != 150 {
		t.Fatalf("after a stale rebuild, asked for %d changes, want 150", n)
	}
	replies <- false
	waitRuns(&c, 2, 10*time.Second)
	c.bulkFold(7)
	if n := next(); n != 7 {
		t.Fatalf("after a rebuild, asked for %d changes, want 7", n)
	}
	replies <- false
	waitRuns(&c, 3, 10*time.Second)
}

func gcPercent() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}

// While bulk work runs, the collector's target is raised, under a soft
// memory limit when none is set; once the work has ended and been
// collected (or changed nothing), both are as before. GOGC=off stays off.
func TestBulkWorkRaisesTheCollectorsTarget(t *testing.T) {
	defer func(q time.Duration) { bulkQuiet = q }(bulkQuiet)
	bulkQuiet = 200 * time.Millisecond
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(math.MaxInt64))
	m := testMachine(t)

	done := m.Busy() // a declarative load being validated
	if p := gcPercent(); p != bulkGCPercent {
		t.Errorf("GC percent %d during a validation, want %d", p, bulkGCPercent)
	}
	if l := debug.SetMemoryLimit(-1); l == math.MaxInt64 || l <= 0 {
		t.Errorf("no memory limit while the target is raised (%d)", l)
	}
	done() // rejected: nothing to collect
	if p, l := gcPercent(), debug.SetMemoryLimit(-1); p != 100 || l != math.MaxInt64 {
		t.Errorf("after a validation that changed nothing: GC percent %d, limit %d; want 100, none", p, l)
	}

	done = m.Busy()
	m.collect.bulkFold(bulkChanges) // its apply
	done()
	if p := gcPercent(); p != bulkGCPercent {
		t.Errorf("GC percent %d before the collection, want %d", p, bulkGCPercent)
	}
	if n := waitRuns(&m.collect, 1, bulkQuiet+5*time.Second); n != 1 {
		t.Fatalf("%d collections, want 1", n)
	}
	if p, l := gcPercent(), debug.SetMemoryLimit(-1); p != 100 || l != math.MaxInt64 {
		t.Errorf("after the collection: GC percent %d, limit %d; want 100, none", p, l)
	}

	debug.SetGCPercent(-1)
	done = m.Busy()
	if p := gcPercent(); p != -1 {
		t.Errorf("GOGC=off became %d during bulk work", p)
	}
	done()
}
