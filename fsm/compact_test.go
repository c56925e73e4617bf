package fsm

import (
	"bytes"
	"fmt"
	"reflect"
	"testing"

	"github.com/gatehouse-gw/gatehouse/log"
)

// A rebuilt state is the same configuration in new memory: every entity
// equal but not the same object, the same indexes, hash, counts and
// metadata; the fold goes on from it. A rebuild that finds the state
// moved on publishes nothing.
func TestCompactionRebuildsTheSameState(t *testing.T) {
	defer func(n int) { compactAbove = n }(compactAbove)
	compactAbove = 10
	m := testMachine(t)
	var updates []Update
	m.Subscribe(func(u Update) { updates = append(updates, u) })
	cmds := []*Command{
		{Op: "create", Kind: Services, NewID: id1, Body: map[string]any{"name": "svc", "url": "http://up.test"}},
		{Op: "create", Kind: Routes, NewID: id2, Body: map[string]any{"name": "r", "paths": []any{"/r"}, "service": map[string]any{"id": id1}}},
	}
	for i := range 40 {
		cid := fmt.Sprintf("%08d-1111-4111-8111-111111111111", i)
		body := map[string]any{"username": fmt.Sprint("user", i)}
		if i%3 == 0 {
			body["custom_id"], body["tags"] = fmt.Sprint("c", i), []any{"bulk", fmt.Sprint("t", i%2)}
		}
		cmds = append(cmds, &Command{Op: "create", Kind: Consumers, NewID: cid, Body: body})
		ka := map[string]any{"key": fmt.Sprint("key", i), "consumer": map[string]any{"id": cid}}
		if i%4 == 0 {
			ka["ttl"] = 3600.0
		}
		cmds = append(cmds, &Command{Op: "create", Kind: KeyAuths, NewID: fmt.Sprintf("%08d-2222-4222-8222-222222222222", i), Body: ka})
	}
	cmds = append(cmds, &Command{Op: "create", Kind: Plugins, NewID: id3, Body: map[string]any{"name": "demo",
		"consumer": map[string]any{"id": "00000001-1111-4111-8111-111111111111"}, "config": map[string]any{"minute": 5.0}}})
	payload, err := EncodeBatch(cmds)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := log.Encode(&log.Event{Type: log.TypeBatch, Time: 1, Op: "config", Entity: "config", Payload: payload})
	if res := m.Apply(1, data); res.Err != nil {
		t.Fatalf("batch: %v", res.Err)
	}
	old := m.State()

	if again := m.compactAfter(old.entities.Len()/4 - 1); !again || m.State() != old {
		t.Fatalf("after changes to less than a quarter of the state: rebuilt %v, changes kept %v", m.State() != old, again)
	}
	m.compacting.Lock() // another rebuild running
	if again := m.compactAfter(len(cmds)); !again || m.State() != old {
		t.Fatalf("while another rebuild ran: rebuilt %v, changes kept %v", m.State() != old, again)
	}
	m.compacting.Unlock()
	updates = nil
	if again := m.compactAfter(len(cmds)); again {
		t.Fatal("a rebuild that went through kept its changes for the next")
	}
	s := m.State()
	if s == old {
		t.Fatal("not rebuilt")
	}
	if len(updates) != 1 || !updates[0].Rebuilt || updates[0].Reset || updates[0].Prev != old || updates[0].Next != s {
		t.Fatalf("subscribers were told %+v", updates)
	}
	if s.Index != old.Index || s.Hash() != old.Hash() || !reflect.DeepEqual(s.meta, old.meta) ||
		!reflect.DeepEqual(s.pluginNames, old.pluginNames) || s.consumerPlugins != old.consumerPlugins {
		t.Fatalf("rebuilt state differs: index %d/%d, hash %s/%s", s.Index, old.Index, s.Hash(), old.Hash())
	}
	n := 0
	for _, kind := range Kinds {
		if s.Count(kind) != old.Count(kind) {
			t.Errorf("%s: %d rebuilt, %d before", kind, s.Count(kind), old.Count(kind))
		}
		old.Walk(kind, "", func(e *Entity) bool {
			n++
			r := s.Get(kind, e.ID)
			switch {
			case r == nil:
				t.Errorf("%s %s missing", kind, e.ID)
			case r == e:
				t.Errorf("%s %s is the same object", kind, e.ID)
			case r.ID != e.ID || entityHash(r) != entityHash(e) || !bytes.Equal(r.enc, e.enc) || !reflect.DeepEqual(r.tags, e.tags) ||
				!reflect.DeepEqual(r.View, e.View):
				t.Errorf("%s %s differs:\nrebuilt %+v\nbefore  %+v", kind, e.ID, *r, *e)
			}
			return true
		})
	}
	if n != len(cmds) {
		t.Fatalf("walked %d entities, wrote %d", n, len(cmds))
	}
	for i := range 40 {
		cid := fmt.Sprintf("%08d-1111-4111-8111-111111111111", i)
		if c := s.FindUnique(Consumers, "username", fmt.Sprint("user", i)); c == nil || c.ID != cid {
			t.Fatalf("username user%d: %v", i, c)
		}
		if ka := s.FindUnique(KeyAuths, "key", fmt.Sprint("key", i)); ka == nil || ka.View.(*KeyAuth).ConsumerID != cid {
			t.Fatalf("key key%d: %v", i, ka)
		}
		if !s.HasChildren(Consumers, cid, KeyAuths) {
			t.Fatalf("consumer %d lost its credential", i)
		}
		if (i%3 == 0) != s.Tagged("bulk", Consumers, cid) {
			t.Fatalf("consumer %d: tag bulk", i)
		}
	}
	if p := s.PluginFor("demo", "", "", "00000001-1111-4111-8111-111111111111"); p == nil || p.Compiled == nil {
		t.Fatalf("consumer plugin after the rebuild: %+v", p)
	}

	// The fold goes on from the copy: a unique value still collides.
	clash := applyCmd(m, 2, 2, &Command{Op: "create", Kind: Consumers, NewID: "99999999-1111-4111-8111-111111111111", Body: map[string]any{"username": "user7"}})
	if clash.Err == nil || clash.Err.Status != 409 {
		t.Fatalf("duplicate username after the rebuild: %+v", clash.Err)
	}
	if res := applyCmd(m, 3, 3, &Command{Op: "delete", Kind: Consumers, Key: "user7"}); res.Err != nil {
		t.Fatalf("delete after the rebuild: %v", res.Err)
	}
	if m.State().HasChildren(Consumers, "00000007-1111-4111-8111-111111111111", KeyAuths) {
		t.Fatal("deleting a rebuilt consumer left its credential")
	}

	// A rebuild of a state that is no longer the live one is dropped.
	live := m.State()
	if ok, err := m.compact(s); ok || err != nil || m.State() != live {
		t.Fatalf("a stale rebuild: published %v, err %v", ok, err)
	}
}
