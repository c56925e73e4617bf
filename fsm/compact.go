package fsm

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// Go's collector does not move objects. A bulk load folds its entities
// in among the garbage of folding them (decoded commands, field maps,
// encodings being built), so once that garbage is collected the
// entities are left scattered over spans that are mostly empty: after
// loading 1,000,000 consumers the heap's spans held 2.5 GB for 1.9 GB of
// live objects, and the resident set followed the spans. A restart, which
// builds the same state from a snapshot with few allocations and little
// garbage in between, serves it in 1.8 GB.
//
// So after bulk folds that changed a good part of a large state, the
// machine builds the state again from its own entities, through the
// snapshot code, and publishes the copy in the original's place
// (Update.Rebuilt). Nothing about the configuration changes: same
// entities, same hash (checked), same index. If an event is applied
// meanwhile, the copy is out of date and is dropped; its changes count
// towards the rebuild after the next bulk fold.

// compactAbove is the number of entities below which a state is not
// rebuilt: the memory to win is small, and so is the state.
var compactAbove = 100_000

// compactAfter rebuilds the live state when the bulk folds since the
// last rebuild (folded changes) came to a quarter of its entities or
// more. It reports whether those changes still count towards the next
// rebuild: they were too few yet, or the state moved on during this one.
func (m *Machine) compactAfter(folded int) (again bool) {
	s := m.State()
	n := s.entities.Len()
	if n < compactAbove {
		return false
	}
	if folded*4 < n {
		return true
	}
	// A collection can come due while a rebuild runs (it takes seconds,
	// the quiet period five); two would hold three copies of the state.
	if !m.compacting.TryLock() {
		return true
	}
	defer m.compacting.Unlock()
	t0 := time.Now()
	ok, err := m.compact(s)
	switch {
	case err != nil:
		slog.Error("rebuild the state after bulk changes", "err", err)
	case !ok:
		slog.Info("state not rebuilt: it changed meanwhile", "index", s.Index)
		return true
	default:
		slog.Info("rebuilt the state after bulk changes", "entities", n, "took", time.Since(t0).Round(time.Millisecond))
	}
	return false
}

// compact builds a copy of s in new memory and publishes it in s's
// place. It reports false when s is no longer the live state. The
// entities go through their encoded form, not handed over as they are,
// so that the copy's encodings are new bytes too (in the reader's slabs):
// sharing the old ones would keep the old allocations alive.
func (m *Machine) compact(s *State) (bool, error) {
	pr, pw := io.Pipe()
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		bw := bufio.NewWriterSize(pw, 256<<10)
		err := writeEntities(msgpack.NewEncoder(bw), s, SnapshotVersion)
		if err == nil {
			err = bw.Flush()
		}
		pw.CloseWithError(err)
	}()
	t := m.fold.begin(Empty())
	err := m.restoreEntities(msgpack.NewDecoder(bufio.NewReaderSize(pr, 256<<10)), SnapshotVersion, t, true)
	// The writer may be blocked on a read that will not come.
	pr.CloseWithError(errors.New("rebuild stopped reading"))
	<-wrote
	if err != nil {
		return false, err
	}
	next := t.commit(s.Index)
	next.meta = s.meta
	if next.hash != s.hash || next.entities.Len() != s.entities.Len() {
		return false, fmt.Errorf("the copy of state %d differs: %d entities, hash %x; the state has %d, hash %x",
			s.Index, next.entities.Len(), next.hash[:8], s.entities.Len(), s.hash[:8])
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.state.Load() != s {
		return false, nil
	}
	m.publish(Update{Prev: s, Next: next, Rebuilt: true})
	return true, nil
}
