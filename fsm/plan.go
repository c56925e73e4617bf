package fsm

import (
	"bytes"
	"sync"

	"github.com/gatehouse-gw/gatehouse/log"
)

// plannedBatch is a batch the admin API folded to check it, kept for the
// apply of its event. The fold is a function of the base state, the event
// time and the payload, so when the event reaches the same base at the
// same time its result is this one: on the leader, where the admin ran,
// a bulk load is folded once instead of twice.
type plannedBatch struct {
	base     *State
	time     int64
	payload  []byte
	next     *State
	changes  []Change
	lastKind string // the kind of the batch's last command
}

type batchPlans struct {
	mu   sync.Mutex
	plan *plannedBatch // the last one planned and not yet applied or released
}

// PlanBatch folds the batch payload into base as applying a batch event
// with this payload at time now would, and returns the changes, the index
// of the command that failed (-1 when none did) and the error. The result
// is kept for that apply until release is called (it must be, once the
// event is appended or given up); a plan applied to anything else, or
// replaced by a newer one, is not used, and the apply folds.
func (m *Machine) PlanBatch(base *State, now int64, payload []byte) (changes []Change, at int, ferr *Error, release func()) {
	release = func() {}
	cmds, err := decodeCommands(&log.Event{Type: log.TypeBatch, Payload: payload})
	if err != nil {
		return nil, -1, &Error{Status: 400, Message: err.Error()}, release
	}
	next, changes, at, ferr := m.fold.ApplyAllAt(base, base.Index, now, cmds)
	if ferr != nil {
		return nil, at, ferr, release
	}
	p := &plannedBatch{base: base, time: now, payload: payload, next: next, changes: changes}
	if len(cmds) > 0 {
		p.lastKind = cmds[len(cmds)-1].Kind
	}
	m.plans.mu.Lock()
	m.plans.plan = p
	m.plans.mu.Unlock()
	return changes, -1, nil, func() {
		m.plans.mu.Lock()
		if m.plans.plan == p {
			m.plans.plan = nil
		}
		m.plans.mu.Unlock()
	}
}

// PlanApplied reports whether the batch event whose apply gave res took
// the plan that gave changes: its changes' entities are then the ones
// published, and the caller may read them instead of looking them up.
// An apply that takes a plan answers with one of the plan's entities
// (lastWritten); one that folds again makes entities of its own.
func PlanApplied(changes []Change, res *Result) bool {
	if res == nil || res.Entity == nil {
		return false
	}
	for i := len(changes) - 1; i >= 0; i-- {
		if changes[i].After == res.Entity {
			return true
		}
	}
	return false
}

// takePlan returns the plan for folding the batch ev into s, if one was
// made for exactly that, and forgets it.
func (m *Machine) takePlan(s *State, ev *log.Event) *plannedBatch {
	m.plans.mu.Lock()
	defer m.plans.mu.Unlock()
	p := m.plans.plan
	if p == nil || p.base != s || p.time != ev.Time || !bytes.Equal(p.payload, ev.Payload) {
		return nil
	}
	m.plans.plan = nil
	return p
}
