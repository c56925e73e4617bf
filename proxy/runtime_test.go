package proxy

import (
	"fmt"
	"testing"

	"github.com/gatehouse-gw/gatehouse/fsm"
	"github.com/gatehouse-gw/gatehouse/plugins"
	"github.com/gatehouse-gw/gatehouse/proxy/router"
)

func uuid(i int) string { return fmt.Sprintf("00000000-0000-4000-8000-%012d", i) }

// config builds a state with one service and n routes through the real
// fold, and a runtime subscribed the way cmd wires it.
func config(tb testing.TB, n int) (*fsm.Fold, *fsm.State, *Runtime) {
	tb.Helper()
	f := &fsm.Fold{Plugins: plugins.NewRegistry()}
	s := fsm.Empty()
	s, _, err := f.Apply(s, 1, 0, &fsm.Command{Op: "create", Kind: fsm.Services, NewID: uuid(0),
		Body: map[string]any{"host": "up.test", "name": "svc"}})
	if err != nil {
		tb.Fatal(err)
	}
	cmds := make([]*fsm.Command, n)
	for i := range cmds {
		cmds[i] = &fsm.Command{Op: "create", Kind: fsm.Routes, NewID: uuid(i + 1),
			Body: map[string]any{"paths": []any{fmt.Sprintf("/r%d", i)}, "service": map[string]any{"id": uuid(0)}}}
	}
	s, _, err = f.ApplyAll(s, 2, 0, cmds)
	if err != nil {
		tb.Fatal(err)
	}
	return f, s, NewRuntime(plugins.NewRegistry(), s)
}

func match(rt *Runtime, path string) (*fsm.Route, bool) {
	m, ok := rt.load().router.Match(&router.Request{Method: "GET", Host: "x", Path: path})
	if !ok {
		return nil, false
	}
	return m.Route.Payload.(*fsm.Route), true
}

func TestRuntimeAppliesChangesIncrementally(t *testing.T) {
	f, s, rt := config(t, 100)
	if _, ok := match(rt, "/r42"); !ok {
		t.Fatal("initial route not routable")
	}
	apply := func(cmd *fsm.Command) {
		t.Helper()
		next, changes, err := f.Apply(s, s.Index+1, 0, cmd)
		if err != nil {
			t.Fatal(err)
		}
		rt.Update(fsm.Update{Prev: s, Next: next, Changes: changes})
		s = next
	}
	apply(&fsm.Command{Op: "create", Kind: fsm.Routes, NewID: uuid(5000),
		Body: map[string]any{"paths": []any{"/new"}, "service": map[string]any{"id": uuid(0)}}})
	if r, ok := match(rt, "/new"); !ok || r.ID != uuid(5000) {
		t.Fatal("added route not routable")
	}
	// Disabling the service removes its routes from matching (Kong skips
	// them); enabling brings them back.
	apply(&fsm.Command{Op: "update", Kind: fsm.Services, Key: uuid(0), Body: map[string]any{"enabled": false}})
	if _, ok := match(rt, "/r1"); ok {
		t.Fatal("route of a disabled service still matched")
	}
	apply(&fsm.Command{Op: "update", Kind: fsm.Services, Key: uuid(0), Body: map[string]any{"enabled": true}})
	if _, ok := match(rt, "/r1"); !ok {
		t.Fatal("route not back after enabling its service")
	}
	apply(&fsm.Command{Op: "delete", Kind: fsm.Routes, Key: uuid(5000)})
	if r, ok := match(rt, "/new"); ok {
		t.Fatalf("deleted route still matched (%s)", r.ID)
	}
}

func TestBalancerAlternatesByWeight(t *testing.T) {
	b := &balancer{peers: []peer{{addr: "a", weight: 100}, {addr: "b", weight: 100}}}
	got := ""
	for i := 0; i < 4; i++ {
		got += b.next(nil)
	}
	if got != "abab" {
		t.Fatalf("equal weights picked %q, want abab", got)
	}
	b = &balancer{peers: []peer{{addr: "a", weight: 3}, {addr: "b", weight: 1}}}
	counts := map[string]int{}
	for i := 0; i < 400; i++ {
		counts[b.next(nil)]++
	}
	if counts["a"] != 300 || counts["b"] != 100 {
		t.Fatalf("3:1 weights gave %v", counts)
	}
	if got := b.next([]string{"a"}); got != "b" {
		t.Fatalf("excluding a failed peer picked %q", got)
	}
	if got := b.next([]string{"a", "b"}); got != "" {
		t.Fatalf("no peer left should give \"\", got %q", got)
	}
}

// BenchmarkRouteAddAt10k is the cost of one route event reaching the
// router when 10,000 routes exist, next to a full rebuild of the same
// router: the first must be a small fraction of the second.
func BenchmarkRouteAddAt10k(b *testing.B) {
	f, s, rt := config(b, 10000)
	b.Run("incremental", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			next, changes, err := f.Apply(s, s.Index+1, 0, &fsm.Command{Op: "upsert", Kind: fsm.Routes, Key: uuid(90000),
				Body: map[string]any{"paths": []any{fmt.Sprintf("/n%d", i)}, "service": map[string]any{"id": uuid(0)}}})
			if err != nil {
				b.Fatal(err)
			}
			rt.Update(fsm.Update{Prev: s, Next: next, Changes: changes})
		}
	})
	b.Run("full-rebuild", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			rt.rebuild(s)
		}
	})
}

func TestRuntimeRebuildsForLargeUpdates(t *testing.T) {
	f, s, rt := config(t, 10)
	// One batch touching more routes than rebuildAbove: moved paths, new
	// routes and a deletion must all be served as one incremental update
	// would.
	var cmds []*fsm.Command
	for i := 0; i < rebuildAbove+100; i++ {
		cmds = append(cmds, &fsm.Command{Op: "create", Kind: fsm.Routes, NewID: uuid(10000 + i),
			Body: map[string]any{"paths": []any{fmt.Sprintf("/big%d", i)}, "service": map[string]any{"id": uuid(0)}}})
	}
	cmds = append(cmds, &fsm.Command{Op: "update", Kind: fsm.Routes, Key: uuid(1), Body: map[string]any{"paths": []any{"/moved"}}},
		&fsm.Command{Op: "delete", Kind: fsm.Routes, Key: uuid(2)})
	next, changes, err := f.ApplyAll(s, s.Index+1, 0, cmds)
	if err != nil {
		t.Fatal(err)
	}
	rt.Update(fsm.Update{Prev: s, Next: next, Changes: changes})
	if r, ok := match(rt, fmt.Sprintf("/big%d", rebuildAbove+99)); !ok || r.ID != uuid(10000+rebuildAbove+99) {
		t.Errorf("new route not served after a large update")
	}
	if r, ok := match(rt, "/moved"); !ok || r.ID != uuid(1) {
		t.Errorf("moved route not served at its new path")
	}
	if _, ok := match(rt, "/r0"); ok {
		t.Errorf("the moved route's old path still matches")
	}
	if _, ok := match(rt, "/r1"); ok {
		t.Errorf("deleted route still matches")
	}
	if r, ok := match(rt, "/r5"); !ok || r.ID != uuid(6) {
		t.Errorf("untouched route lost in the rebuild")
	}
}

// A rebuilt state (fsm's compaction) carries no changes: the runtime
// builds everything from it, so nothing keeps the old state's entities,
// but keeps the balancers' rotation, which a reset would start over.
func TestRuntimeRebuildsFromARebuiltState(t *testing.T) {
	f, s, rt := config(t, 10)
	b := rt.bal.get(s, uuid(0))
	// Next differs from Prev here only so that the test can see which
	// state the router was built from.
	next, _, err := f.Apply(s, s.Index, 0, &fsm.Command{Op: "create", Kind: fsm.Routes, NewID: uuid(900),
		Body: map[string]any{"paths": []any{"/only-in-next"}, "service": map[string]any{"id": uuid(0)}}})
	if err != nil {
		t.Fatal(err)
	}
	rt.Update(fsm.Update{Prev: s, Next: next, Rebuilt: true})
	if r, ok := match(rt, "/only-in-next"); !ok || r.ID != uuid(900) {
		t.Fatal("the runtime was not rebuilt from the new state")
	}
	if rt.load().state != next {
		t.Fatal("the runtime still serves the old state")
	}
	if rt.bal.get(next, uuid(0)) != b {
		t.Fatal("a rebuilt state reset the balancers")
	}
	rt.Update(fsm.Update{Prev: next, Next: next, Reset: true})
	if rt.bal.get(next, uuid(0)) == b {
		t.Fatal("a reset kept the balancers")
	}
}
