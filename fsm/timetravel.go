package fsm

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"path/filepath"
	"reflect"
	"sort"
	"sync"

	"github.com/gatehouse-gw/gatehouse/log"
)

// Time travel folds the permanent history into the state as it was at
// some index. Folding from the first event costs a replay of the whole
// log (seconds at a million events), so the machine keeps checkpoints:
// states it passed through, every checkpointEvery indexes. A persistent
// state shares everything unchanged with its successors, so a checkpoint
// costs only what changed since the one before. A past state is then the
// nearest checkpoint plus at most the spacing's worth of events.
//
// The memory held is one entity version per entity changed in each
// checkpoint's stretch: with few checkpoints it is bounded by
// maxCheckpoints times the configuration's size, and at worst by one
// version per event. Fewer checkpoints would hold less and replay more:
// at about 20 µs an event, a 32,768-event stretch replays in under a
// second.
const (
	checkpointEvery = 8192
	maxCheckpoints  = 32 // beyond this, every other checkpoint is dropped
)

type checkpoints struct {
	mu     sync.Mutex
	every  uint64
	states []*State // by Index
	gen    int      // bumped by reset: a replay of an older history must not add to a newer one
}

func (c *checkpoints) generation() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

func (c *checkpoints) first() *State {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.states) == 0 {
		return nil
	}
	return c.states[0]
}

func (c *checkpoints) add(s *State) { c.addIf(s, -1) }

// addIf records s if no checkpoint covers its stretch of the log yet and
// (gen >= 0) no reset happened since generation gen.
func (c *checkpoints) addIf(s *State, gen int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen >= 0 && gen != c.gen {
		return
	}
	if c.every == 0 {
		c.every = checkpointEvery
	}
	i := sort.Search(len(c.states), func(i int) bool { return c.states[i].Index >= s.Index })
	if i > 0 && c.states[i-1].Index/c.every == s.Index/c.every {
		return
	}
	if i < len(c.states) && c.states[i].Index/c.every == s.Index/c.every {
		return
	}
	c.states = append(c.states, nil)
	copy(c.states[i+1:], c.states[i:])
	c.states[i] = s
	if len(c.states) > maxCheckpoints {
		c.every *= 2
		kept := c.states[:0]
		for j, st := range c.states {
			if j == len(c.states)-1 || j%2 == 0 {
				kept = append(kept, st)
			}
		}
		c.states = kept
	}
}

// before returns the latest checkpoint at or before index, or nil.
func (c *checkpoints) before(index uint64) *State {
	c.mu.Lock()
	defer c.mu.Unlock()
	i := sort.Search(len(c.states), func(i int) bool { return c.states[i].Index > index })
	if i == 0 {
		return nil
	}
	return c.states[i-1]
}

func (c *checkpoints) reset(s *State) {
	c.mu.Lock()
	c.states = nil
	c.gen++
	c.mu.Unlock()
	c.add(s)
}

// StateAt returns the configuration as it was right after log index upto.
// The live state is untouched.
func (m *Machine) StateAt(upto uint64) (*State, error) {
	if cur := m.State(); upto >= cur.Index {
		return cur, nil
	}
	s := m.cps.before(upto)
	if s == nil {
		// Older than every checkpoint: a warm-up may be filling that
		// stretch right now.
		m.warm.Lock()
		s = m.cps.before(upto)
		m.warm.Unlock()
	}
	if s == nil {
		s = Empty()
	}
	if s.Index == upto {
		return s, nil
	}
	s, err := m.replay(s, upto)
	if err != nil {
		return nil, err
	}
	if s.Index < upto {
		s = withIndex(s, upto)
	}
	return s, nil
}

// replay folds the history after s.Index up to upto into s, leaving
// checkpoints behind for the next query.
func (m *Machine) replay(s *State, upto uint64) (*State, error) {
	gen := m.cps.generation()
	err := m.history.RangeEvents(s.Index+1, upto, func(ev *log.Event) bool {
		prev := s.Index
		_, _, s, _ = m.applyDecoded(s, ev, false)
		if prev/checkpointEvery != s.Index/checkpointEvery {
			m.cps.addIf(s, gen)
		}
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("replay history: %w", err)
	}
	return s, nil
}

// WarmTimeTravel replays the history older than the first checkpoint (a
// node that started from a snapshot has none before it), so the first
// time-travel query after a restart or a snapshot install is as quick as
// the others. Queries for older points wait for it rather than replaying
// the same events a second time.
func (m *Machine) WarmTimeTravel() error {
	m.warm.Lock()
	defer m.warm.Unlock()
	first := m.cps.first()
	if first == nil || first.Index <= 1 {
		return nil
	}
	gen := m.cps.generation()
	if _, err := m.replay(Empty(), first.Index); err != nil {
		return err
	}
	m.cps.addIf(Empty(), gen) // the start is covered now
	return nil
}

// IndexAt returns the last log index whose event time is at or before t
// (unix nanoseconds), 0 if none.
func (m *Machine) IndexAt(t int64) (uint64, error) { return m.history.IndexAt(t) }

// Difference is one entity that differs between two states. Before is nil
// when the entity did not exist at the first point, After nil when it no
// longer exists at the second.
type Difference struct {
	Kind, ID      string
	Before, After *Entity
}

// Op names the difference: created, updated or deleted.
func (d Difference) Op() string {
	switch {
	case d.Before == nil:
		return "created"
	case d.After == nil:
		return "deleted"
	}
	return "updated"
}

// Diff lists the entities of the given kinds that differ between a and b,
// kind by kind in the order given, by id within a kind. Timestamps alone
// do not make a difference. Entities that a and b share (the common case
// between a state and its past) are skipped by pointer.
func Diff(a, b *State, kinds []string) []Difference {
	var out []Difference
	for _, kind := range kinds {
		var before []*Entity
		a.Walk(kind, "", func(e *Entity) bool { before = append(before, e); return true })
		i := 0
		b.Walk(kind, "", func(e *Entity) bool {
			for i < len(before) && before[i].ID < e.ID {
				out = append(out, Difference{Kind: kind, ID: before[i].ID, Before: before[i]})
				i++
			}
			if i < len(before) && before[i].ID == e.ID {
				if before[i] != e && len(ChangedFields(before[i].Data, e.Data)) > 0 {
					out = append(out, Difference{Kind: kind, ID: e.ID, Before: before[i], After: e})
				}
				i++
				return true
			}
			out = append(out, Difference{Kind: kind, ID: e.ID, After: e})
			return true
		})
		for ; i < len(before); i++ {
			out = append(out, Difference{Kind: kind, ID: before[i].ID, Before: before[i]})
		}
	}
	return out
}

// ChangedFields lists the top-level fields whose values differ, ignoring
// the timestamps, sorted.
func ChangedFields(a, b map[string]any) []string {
	var out []string
	for k, v := range b {
		if k == "created_at" || k == "updated_at" {
			continue
		}
		if av, ok := a[k]; !ok || !reflect.DeepEqual(av, v) {
			out = append(out, k)
		}
	}
	for k := range a {
		if _, ok := b[k]; !ok && k != "created_at" && k != "updated_at" {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// Salt returns the cluster's audit HMAC key (nil until the first leader
// has chosen one).
func (s *State) Salt() []byte { return s.salt }

// Redact returns a copy of an entity's data for audit views, with secret
// fields replaced by "hmac-sha256:<hex>" of their value under the
// cluster's salt. Without a salt they read "redacted".
func Redact(kind string, data map[string]any, salt []byte) map[string]any {
	sc := Schemas[kind]
	out := make(map[string]any, len(data))
	for k, v := range data {
		out[k] = v
	}
	if sc == nil {
		return out
	}
	for _, f := range sc.Fields {
		if !f.Secret {
			continue
		}
		if v, ok := out[f.Name].(string); ok {
			out[f.Name] = HMAC(salt, v)
		}
	}
	return out
}

// HMAC is how a secret appears in audit views.
func HMAC(salt []byte, v string) string {
	if len(salt) == 0 {
		return "redacted"
	}
	h := hmac.New(sha256.New, salt)
	h.Write([]byte(v))
	return "hmac-sha256:" + hex.EncodeToString(h.Sum(nil))
}

// auditChanges is what the history records of an event's changes: whole
// entities for creations and deletions, changed fields for updates, all
// redacted. A batch touching an entity twice records each step.
func auditChanges(changes []Change, salt []byte) []log.Change {
	if len(changes) == 0 {
		return nil
	}
	out := make([]log.Change, 0, len(changes))
	for _, c := range changes {
		lc := log.Change{EntityType: c.Kind, EntityID: c.ID}
		switch {
		case c.Before == nil:
			lc.Op = "created"
			lc.After = Redact(c.Kind, c.After.Data, salt)
		case c.After == nil:
			lc.Op = "deleted"
			lc.Before = Redact(c.Kind, c.Before.Data, salt)
		default:
			lc.Op = "updated"
			fields := ChangedFields(c.Before.Data, c.After.Data)
			b, a := Redact(c.Kind, c.Before.Data, salt), Redact(c.Kind, c.After.Data, salt)
			lc.Before, lc.After = make(map[string]any, len(fields)), make(map[string]any, len(fields))
			for _, f := range fields {
				lc.Before[f], lc.After[f] = b[f], a[f]
			}
		}
		out = append(out, lc)
	}
	return out
}

// Cut rewrites a snapshot stream (a backup) as it was at an earlier point:
// the state then, and the history up to then. at is a log index, or with
// index 0 a time (unix nanoseconds). The work happens in a scratch
// history under dir, which the caller removes.
func Cut(snapshot io.Reader, plugins PluginRegistry, dir string, index uint64, at int64, w io.Writer) (uint64, error) {
	h, err := log.OpenHistory(filepath.Join(dir, "cut-history.db"))
	if err != nil {
		return 0, err
	}
	defer h.Close()
	m := New(h, plugins)
	if err := m.Restore(snapshot); err != nil {
		return 0, fmt.Errorf("read backup: %w", err)
	}
	if index == 0 {
		if index, err = m.IndexAt(at); err != nil {
			return 0, err
		}
	}
	if index > m.State().Index {
		return 0, fmt.Errorf("the backup ends at index %d, before %d", m.State().Index, index)
	}
	s, err := m.StateAt(index)
	if err != nil {
		return 0, err
	}
	return index, m.Persist(s, w)
}
