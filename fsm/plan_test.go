package fsm

import (
	"testing"

	"github.com/gatehouse-gw/gatehouse/log"
)

// A planned batch is applied as planned when its event reaches the state
// it was planned on, at its time, and folded afresh otherwise; either way
// every node ends in the state of a node that never planned.
func TestPlannedBatchesApplyAsFolded(t *testing.T) {
	const t0 = 1_700_000_000_000_000_000
	cmds := []*Command{
		{Op: "upsert", Kind: Consumers, Key: id1, NewID: id1, Body: map[string]any{"username": "alice", "tags": []any{"t"}}},
		{Op: "upsert", Kind: KeyAuths, Key: id2, NewID: id2, Body: map[string]any{"key": "k1", "consumer": map[string]any{"id": id1}}},
	}
	payload, err := EncodeBatch(cmds)
	if err != nil {
		t.Fatal(err)
	}
	batch := func(ts int64) []byte {
		data, _ := log.Encode(&log.Event{Type: log.TypeBatch, Time: ts, Op: "config", Entity: "config", Payload: payload})
		return data
	}
	other := &Command{Op: "create", Kind: Consumers, NewID: id3, Body: map[string]any{"username": "carol"}}

	// The reference: no plans, the other write first or not at all.
	plain, plainAfterOther := testMachine(t), testMachine(t)
	if res := plain.Apply(1, batch(t0)); res.Err != nil {
		t.Fatal(res.Err)
	}
	applyCmd(plainAfterOther, 1, t0, other)
	if res := plainAfterOther.Apply(2, batch(t0)); res.Err != nil {
		t.Fatal(res.Err)
	}

	cases := []struct {
		name       string
		otherFirst bool  // another event lands between plan and apply
		at         int64 // the event's time, against the plan's t0
		used       bool
		want       *Machine
	}{
		{"same base, same time", false, t0, true, plain},
		{"another event first", true, t0, false, plainAfterOther},
		{"another time", false, t0 + 1, false, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := testMachine(t)
			changes, at, ferr, release := m.PlanBatch(m.State(), t0, payload)
			defer release()
			if ferr != nil || at != -1 || len(changes) != 2 {
				t.Fatalf("plan: %d changes, at %d, %v", len(changes), at, ferr)
			}
			index := uint64(1)
			if c.otherFirst {
				applyCmd(m, 1, t0, other)
				index = 2
			}
			res := m.Apply(index, batch(c.at))
			if res.Err != nil {
				t.Fatal(res.Err)
			}
			if used := res.Entity == changes[1].After; used != c.used {
				t.Fatalf("plan used: %v, want %v", used, c.used)
			}
			s := m.State()
			if s.Index != index || s.Find(KeyAuths, "k1") == nil || s.Find(Consumers, "alice") == nil {
				t.Fatalf("state at %d lacks the batch", s.Index)
			}
			if c.want != nil && s.Hash() != c.want.State().Hash() {
				t.Fatal("the state differs from a node that did not plan")
			}
			rec, err := m.History().Get(index)
			if err != nil || rec.Outcome != "applied" || len(rec.Changes) != 2 {
				t.Fatalf("history of the batch: %+v, %v", rec, err)
			}
		})
	}

	// A released plan is not used.
	m := testMachine(t)
	changes, _, _, release := m.PlanBatch(m.State(), t0, payload)
	release()
	if res := m.Apply(1, batch(t0)); res.Err != nil || res.Entity == changes[1].After {
		t.Fatalf("a released plan was used (%v)", res.Err)
	}
	if m.State().Hash() != plain.State().Hash() {
		t.Fatal("the state differs from a node that did not plan")
	}
}
