package fsm

import (
	"bytes"
	"fmt"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/log"
)

// waitDone reports whether done closes within d.
func waitDone(done <-chan struct{}, d time.Duration) bool {
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// An apply does not wait for the history file, and every reader of the
// file waits for the commits queued before it: the audit log, a
// snapshot, time travel.
func TestHistoryReadsWaitForQueuedCommits(t *testing.T) {
	m := testMachine(t)
	svc := func(i int) *Command {
		id := fmt.Sprintf("00000000-0000-4000-8000-%012d", i)
		return &Command{Op: "create", Kind: Services, NewID: id, Body: map[string]any{"host": "a.test", "name": fmt.Sprintf("s%d", i)}}
	}
	if res := applyCmd(m, 1, 1, svc(1)); res.Err != nil {
		t.Fatal(res.Err)
	}

	m.writer.stall.Lock()
	stalled := true
	defer func() {
		if stalled {
			m.writer.stall.Unlock()
		}
	}()
	applied := make(chan struct{})
	go func() {
		defer close(applied)
		for i := 2; i <= 3; i++ {
			applyCmd(m, uint64(i), int64(i), svc(i))
		}
	}()
	if !waitDone(applied, 5*time.Second) {
		t.Fatal("applies waited for the history file")
	}
	if m.State().Index != 3 {
		t.Fatalf("state at %d, want 3", m.State().Index)
	}

	type read struct {
		rec  *log.Record
		snap []byte
		past *State
		err  error
	}
	reads := make(chan read, 3)
	go func() {
		rec, err := m.History().Get(3)
		reads <- read{rec: rec, err: err}
	}()
	go func() {
		var buf bytes.Buffer
		err := m.Persist(m.State(), &buf)
		reads <- read{snap: buf.Bytes(), err: err}
	}()
	go func() {
		s, err := m.StateAt(2)
		reads <- read{past: s, err: err}
	}()
	select {
	case r := <-reads:
		t.Fatalf("a read of the history went ahead of its queued commits: %+v", r)
	case <-time.After(100 * time.Millisecond):
	}
	m.writer.stall.Unlock()
	stalled = false

	for range 3 {
		var r read
		select {
		case r = <-reads:
		case <-time.After(10 * time.Second):
			t.Fatal("a read still waits after the commits")
		}
		if r.err != nil {
			t.Fatal(r.err)
		}
		switch {
		case r.rec != nil:
			if r.rec.Event.Index != 3 || r.rec.Outcome != "applied" {
				t.Errorf("record 3: %+v", r.rec)
			}
		case r.snap != nil:
			m2 := testMachine(t)
			if err := m2.Restore(bytes.NewReader(r.snap)); err != nil {
				t.Fatal(err)
			}
			if last, _ := m2.History().Last(); last != 3 {
				t.Errorf("the snapshot's history ends at %d, want 3", last)
			}
		case r.past != nil:
			if r.past.Index != 2 || r.past.Find(Services, "s2") == nil || r.past.Find(Services, "s3") != nil {
				t.Errorf("state at 2 is wrong: index %d", r.past.Index)
			}
		default:
			t.Errorf("empty read: %+v", r)
		}
	}
}

// Close commits what is queued, and an apply after it commits its own.
func TestHistoryCloseCommitsTheQueue(t *testing.T) {
	h, err := log.OpenHistory(filepath.Join(t.TempDir(), "h.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	m := New(h, testPlugins{})
	m.writer.stall.Lock()
	for i := 1; i <= 20; i++ {
		id := fmt.Sprintf("00000000-0000-4000-8000-%012d", i)
		applyCmd(m, uint64(i), int64(i), &Command{Op: "create", Kind: Consumers, NewID: id, Body: map[string]any{"username": id}})
	}
	closed := make(chan struct{})
	go func() { m.Close(); close(closed) }()
	if waitDone(closed, 100*time.Millisecond) {
		t.Fatal("Close returned with commits queued")
	}
	m.writer.stall.Unlock()
	if !waitDone(closed, 10*time.Second) {
		t.Fatal("Close did not return")
	}
	if last, _ := h.Last(); last != 20 {
		t.Fatalf("history ends at %d after Close, want 20", last)
	}
	applyCmd(m, 21, 21, &Command{Op: "create", Kind: Consumers, NewID: id1, Body: map[string]any{"username": "late"}})
	if rec, _ := h.Get(21); rec == nil {
		t.Fatal("an apply after Close left no record")
	}
}

// A snapshot holds the state it writes and maps the history while it
// dumps it: the collection after bulk changes waits for it to end.
func TestCollectionWaitsForASnapshot(t *testing.T) {
	defer func(q time.Duration) { bulkQuiet = q }(bulkQuiet)
	bulkQuiet = 300 * time.Millisecond
	m := testMachine(t)
	applyCmd(m, 1, 1, &Command{Op: "create", Kind: Consumers, NewID: id1, Body: map[string]any{"username": "u"}})
	// The snapshot waits for a queued commit, stalled here, so it is
	// still running when the collection comes due.
	m.writer.stall.Lock()
	applyCmd(m, 2, 2, &Command{Op: "create", Kind: Consumers, NewID: id2, Body: map[string]any{"username": "v"}})
	persisted := make(chan error, 1)
	go func() { persisted <- m.Persist(m.State(), io.Discard) }()
	time.Sleep(50 * time.Millisecond) // the snapshot has started
	m.collect.bulk()
	if n := waitRuns(&m.collect, 1, bulkQuiet+time.Second); n != 0 {
		m.writer.stall.Unlock()
		t.Fatalf("collected %d times while a snapshot was being written", n)
	}
	m.writer.stall.Unlock()
	if err := <-persisted; err != nil {
		t.Fatal(err)
	}
	if n := waitRuns(&m.collect, 1, bulkQuiet+5*time.Second); n != 1 {
		t.Fatalf("collected %d times after the snapshot, want 1", n)
	}
}
