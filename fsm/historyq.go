package fsm

import (
	"log/slog"
	"sync"
	"time"

	"github.com/gatehouse-gw/gatehouse/log"
)

// historyWriter commits the history of applied events in apply order, on
// a goroutine of its own, so that an apply (and the write acknowledged on
// it) does not wait for the history file. A 100,000-consumer batch's
// history was 2 to 5 seconds of its apply. Nothing is less durable for
// it: the file is never synced on a commit anyway; the Raft log holds
// every entry until a snapshot, and a snapshot is persisted only after
// the commits before it (flush). A process that dies with commits
// queued replays those entries from the Raft log at its next start, as
// it replays the ones committed but not yet synced.
//
// Every reader of the history file flushes first, so a write's record
// and versions are visible to a read that follows the write's answer
// (the audit log, time travel, a backup).
type historyWriter struct {
	h *log.History
	// busy marks a bulk job's commit as bulk work, so the collection
	// after bulk changes (collect.go) waits for it: the job's records
	// and bbolt's buffers are a few hundred megabytes until it ends.
	busy func() (done func())

	mu      sync.Mutex
	cond    sync.Cond // signalled on a new job, a finished commit, close
	pending []historyJob
	queued  uint64 // jobs handed over so far
	done    uint64 // jobs committed (or failed) so far
	closed  bool
	exited  chan struct{}

	// stall is held by tests to keep commits queued; the writer takes it
	// shared around each commit.
	stall sync.RWMutex
}

// historyJob is one apply's history: its entries, and whether the
// versions are complete from the first index (the log applied from its
// start).
type historyJob struct {
	entries   []historyEntry
	fromStart bool
}

// historyEntry is one applied entry's history as the apply leaves it:
// the record without its change list, and what the writer needs to make
// that list and the entry's time-travel versions. Describing the changes
// (each entity's fields, redacted) and versioning them (an encoding and
// a hash each) was 1.6 s of a 100,000-consumer batch's apply, and so of
// the write's answer; here it is behind it.
type historyEntry struct {
	rec     *log.Record
	next    *State // the state after the entry
	changes []Change
	afters  []map[string]any // each change's fields after it (fieldsAfter)
	salt    []byte           // the state's before the entry
}

// prepare completes the entry's record and appends its versions.
func (e *historyEntry) prepare(versions []log.Version) []log.Version {
	e.rec.Changes = describeChanges(e.rec.Type, e.changes, e.afters, e.salt)
	versions, err := versionsOf(&e.rec.Event, e.next, e.changes, versions)
	if err != nil {
		slog.Error("time-travel version", "index", e.rec.Event.Index, "err", err)
	}
	return versions
}

// maxPendingJobs bounds the queue: an apply waits when the file falls
// that far behind, instead of holding ever more records in memory.
const maxPendingJobs = 256

func newHistoryWriter(h *log.History, busy func() func()) *historyWriter {
	w := &historyWriter{h: h, busy: busy, exited: make(chan struct{})}
	w.cond.L = &w.mu
	go w.run()
	return w
}

// submit hands a job to the writer, or commits it here once the writer
// is closed.
func (w *historyWriter) submit(j historyJob) {
	if len(j.entries) == 0 && !j.fromStart {
		return
	}
	w.mu.Lock()
	for len(w.pending) >= maxPendingJobs && !w.closed {
		w.cond.Wait()
	}
	if w.closed {
		w.mu.Unlock()
		<-w.exited // after the writer's last commit, which precedes this one
		w.commit([]historyJob{j})
		return
	}
	w.pending = append(w.pending, j)
	w.queued++
	w.cond.Broadcast()
	w.mu.Unlock()
}

// flush waits until every job submitted before it is committed.
func (w *historyWriter) flush() {
	w.mu.Lock()
	for target := w.queued; w.done < target; {
		w.cond.Wait()
	}
	w.mu.Unlock()
}

// close commits what is queued and stops the writer; later jobs are
// committed by their submitter.
func (w *historyWriter) close() {
	w.mu.Lock()
	w.closed = true
	w.cond.Broadcast()
	w.mu.Unlock()
	<-w.exited
}

func (w *historyWriter) run() {
	defer close(w.exited)
	for {
		w.mu.Lock()
		for len(w.pending) == 0 && !w.closed {
			w.cond.Wait()
		}
		jobs := w.pending
		w.pending = nil
		w.cond.Broadcast() // room for submitters waiting on a full queue
		w.mu.Unlock()
		if len(jobs) == 0 {
			return // closed, and nothing left
		}
		// Jobs that queued up meanwhile go in one transaction, as the
		// entries of one Raft batch always did.
		w.stall.RLock()
		w.commit(jobs)
		w.stall.RUnlock()
		w.mu.Lock()
		w.done += uint64(len(jobs))
		w.cond.Broadcast()
		w.mu.Unlock()
	}
}

func (w *historyWriter) commit(jobs []historyJob) {
	t0 := time.Now()
	var recs []*log.Record
	n := 0
	for _, j := range jobs {
		for i := range j.entries {
			n += len(j.entries[i].changes)
		}
	}
	if n >= bulkChanges && w.busy != nil {
		// From before the changes are described: that is seconds too.
		defer w.busy()()
	}
	versions := make([]log.Version, 0, n+len(jobs))
	for _, j := range jobs {
		if j.fromStart {
			// Before the versions it vouches for, in their order.
			if err := w.h.SetVersionsFrom(0); err != nil {
				slog.Error("time-travel versions", "err", err)
			}
		}
		for i := range j.entries {
			recs = append(recs, j.entries[i].rec)
			versions = j.entries[i].prepare(versions)
		}
	}
	if err := w.h.Commit(recs, versions); err != nil {
		// The Raft log still holds these events; a restart replays them
		// into the history. Losing the process is better than silently
		// diverging, but serving on is better still: log loudly.
		slog.Error("history append failed", "err", err)
	}
	if d := time.Since(t0); d > time.Second {
		slog.Info("slow history commit", "records", len(recs), "versions", len(versions), "took", d.Round(time.Millisecond))
	}
}
