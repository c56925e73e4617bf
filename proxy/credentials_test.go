package proxy

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/gatehouse-gw/gatehouse/fsm"
	"github.com/gatehouse-gw/gatehouse/plugins"
)

// The proxy's credential index must answer exactly as the state does,
// through random creates, key changes, deletes (a consumer's delete
// cascades to its keys) and batches that hand a key from one credential
// to another, and a fresh build must agree with the incremental one.
func TestCredentialIndexFollowsState(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	fold := &fsm.Fold{Plugins: plugins.NewRegistry()}
	s := fsm.Empty()
	rt := NewRuntime(plugins.NewRegistry(), s)
	consumer := func(i int) string { return fmt.Sprintf("00000000-0000-4000-8000-%012d", i) }
	cred := func(i int) string { return fmt.Sprintf("00000000-0000-4000-9000-%012d", i) }
	key := func() string { return fmt.Sprintf("key-%d", rng.IntN(60)) }
	applied, handed := 0, 0
	for round := range 300 {
		var cmds []*fsm.Command
		for range 1 + rng.IntN(4) {
			switch op := rng.IntN(8); {
			case op < 2:
				i := rng.IntN(10)
				if s.Get(fsm.Consumers, consumer(i)) == nil {
					cmds = append(cmds, &fsm.Command{Op: "create", Kind: fsm.Consumers, NewID: consumer(i),
						Body: map[string]any{"username": fmt.Sprintf("c%d", i)}})
				}
			case op == 2:
				cmds = append(cmds, &fsm.Command{Op: "delete", Kind: fsm.Consumers, Key: consumer(rng.IntN(10))})
			case op < 5:
				i := rng.IntN(20)
				if s.Get(fsm.KeyAuths, cred(i)) == nil {
					cmds = append(cmds, &fsm.Command{Op: "create", Kind: fsm.KeyAuths, NewID: cred(i),
						Body: map[string]any{"key": key(), "consumer": map[string]any{"id": consumer(rng.IntN(10))}}})
				}
			case op == 5:
				cmds = append(cmds, &fsm.Command{Op: "update", Kind: fsm.KeyAuths, Key: cred(rng.IntN(20)),
					Body: map[string]any{"key": key()}})
			default:
				// Hand a key over: delete one credential, give its key
				// to another, in one batch.
				a, b := rng.IntN(20), rng.IntN(20)
				if e := s.Get(fsm.KeyAuths, cred(a)); e != nil && a != b && s.Get(fsm.KeyAuths, cred(b)) != nil {
					cmds = append(cmds, &fsm.Command{Op: "delete", Kind: fsm.KeyAuths, Key: cred(a)},
						&fsm.Command{Op: "update", Kind: fsm.KeyAuths, Key: cred(b), Body: map[string]any{"key": e.View.(*fsm.KeyAuth).Key}})
				}
			}
		}
		next, changes, err := fold.ApplyAll(s, s.Index+1, 1_700_000_000_000_000_000, cmds)
		if err != nil {
			continue // a conflicting batch: nothing changes
		}
		applied++
		if len(cmds) > 1 && cmds[0].Op == "delete" && cmds[0].Kind == fsm.KeyAuths {
			handed++
		}
		rt.Update(fsm.Update{Prev: s, Next: next, Changes: changes})
		s = next
		for _, c := range []*credentials{rt.load().creds, buildCredentials(s)} {
			for i := range 60 {
				k := fmt.Sprintf("key-%d", i)
				if got, want := c.KeyAuth(k), s.FindUnique(fsm.KeyAuths, "key", k); got != want {
					t.Fatalf("round %d: key %s: index %v, state %v", round, k, got, want)
				}
			}
			for i := range 10 {
				if got, want := c.Consumer(consumer(i)), s.Get(fsm.Consumers, consumer(i)); got != want {
					t.Fatalf("round %d: consumer %d: index %v, state %v", round, i, got, want)
				}
			}
		}
	}
	if applied < 100 || handed == 0 || s.Count(fsm.KeyAuths) == 0 {
		t.Fatalf("the sequence exercised too little: %d batches applied, %d key hand-overs, %d keys at the end",
			applied, handed, s.Count(fsm.KeyAuths))
	}
}
