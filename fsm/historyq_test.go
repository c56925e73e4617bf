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

// The writer describes each record's changes once the apply has sealed
// its entities: creations whole, updates by the fields they changed,
// deletions whole, secrets redacted, as they were when applied.
func TestHistoryRecordsDescribeTheChanges(t *testing.T) {
	m := testMachine(t)
	m.writer.stall.Lock() // the three applies are sealed and published first
	payload, err := EncodeBatch([]*Command{
		{Op: "upsert", Kind: Consumers, Key: id1, NewID: id1, Body: map[string]any{"username": "alice"}},
		{Op: "upsert", Kind: KeyAuths, Key: id2, NewID: id2, Body: map[string]any{"key": "secret-k1", "consumer": map[string]any{"id": id1}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	data, _ := log.Encode(&log.Event{Type: log.TypeBatch, Time: 1e9, Op: "config", Entity: "config", Payload: payload})
	if res := m.Apply(1, data); res.Err != nil {
		t.Fatal(res.Err)
	}
	applyCmd(m, 2, 2e9, &Command{Op: "update", Kind: Consumers, Key: id1, Body: map[string]any{"tags": []any{"vip"}}})
	applyCmd(m, 3, 3e9, &Command{Op: "delete", Kind: KeyAuths, Key: id2})
	m.writer.stall.Unlock()

	var recs []*log.Record
	if err := m.History().Range(1, 3, func(r *log.Record) bool { recs = append(recs, r); return true }); err != nil {
		t.Fatal(err)
	}
	if len(recs) != 3 {
		t.Fatalf("%d records, want 3", len(recs))
	}
	want := []struct {
		ops  []string
		kind string
	}{{[]string{"created", "created"}, ""}, {[]string{"updated"}, Consumers}, {[]string{"deleted"}, KeyAuths}}
	for i, r := range recs {
		var ops []string
		for _, c := range r.Changes {
			ops = append(ops, c.Op)
		}
		if fmt.Sprint(ops) != fmt.Sprint(want[i].ops) {
			t.Fatalf("record %d: changes %v, want %v", i+1, ops, want[i].ops)
		}
	}
	alice, key := recs[0].Changes[0].After, recs[0].Changes[1].After
	if alice["username"] != "alice" || alice["id"] != id1 {
		t.Errorf("the created consumer is recorded as %v", alice)
	}
	// Without a salt event (a cluster's first), a secret reads "redacted".
	if k, _ := key["key"].(string); k == "secret-k1" || k == "" {
		t.Errorf("the created key is recorded as %q, want it redacted", k)
	}
	up := recs[1].Changes[0]
	if _, ok := up.After["username"]; ok || fmt.Sprint(up.After["tags"]) != "[vip]" || up.Before["tags"] != nil {
		t.Errorf("the update is recorded as %v -> %v, want only what changed", up.Before, up.After)
	}
	if k, _ := recs[2].Changes[0].Before["key"].(string); k != key["key"] {
		t.Errorf("the deleted key is recorded as %q, want %q", k, key["key"])
	}
}
