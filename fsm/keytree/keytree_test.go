package keytree

import (
	"fmt"
	"math/rand"
	"slices"
	"strings"
	"testing"
)

// testOrder knows some groups of one zero; keys of others (and keys with
// no zero at all) are unknown to it.
func testOrder() *Order {
	return NewOrder(1, []string{"consumers\x00", "keyauth_credentials\x00", "routes\x00", "b\x00", "\x00"})
}

// randKey draws keys that share long prefixes, fall in known and unknown
// groups, are prefixes of one another, or hold zero and 0xff bytes.
func randKey(rng *rand.Rand) string {
	groups := []string{"consumers\x00", "keyauth_credentials\x00", "routes\x00", "b\x00", "\x00", "a\x00", "consumers", "c\x00", "zz\x00", ""}
	g := groups[rng.Intn(len(groups))]
	var b strings.Builder
	b.WriteString(g)
	switch rng.Intn(4) {
	case 0: // a UUID-like tail
		fmt.Fprintf(&b, "%08x-%04x", rng.Uint32(), rng.Intn(1<<16))
	case 1: // a short tail from few letters: many ties in the summary
		for range rng.Intn(10) {
			b.WriteByte("ab\x00\xff"[rng.Intn(4)])
		}
	case 2: // the same 6 bytes, then a difference
		fmt.Fprintf(&b, "abcdef%d", rng.Intn(50))
	default: // a nested path (children keys)
		fmt.Fprintf(&b, "%04x\x00routes\x00%x", rng.Intn(64), rng.Intn(64))
	}
	return b.String()
}

type model map[string]int

func (m model) sorted() []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// check verifies t's shape (node sizes, leaf depth, order, summaries)
// and that it holds exactly m.
func check(t *testing.T, tr *Tree[int], m model) {
	t.Helper()
	var keys []string
	leafDepth := -1
	var walk func(n *node[int], depth int, root bool)
	walk = func(n *node[int], depth int, root bool) {
		if n.n > maxItems || (!root && n.n < minItems) {
			t.Fatalf("a node holds %d entries (root %v)", n.n, root)
		}
		for i := 0; i < n.n; i++ {
			if s := tr.ord.summary(n.keys[i]); s != n.sum[i] {
				t.Fatalf("entry %q has summary %x, want %x", n.keys[i], n.sum[i], s)
			}
		}
		if n.kids == nil {
			if leafDepth == -1 {
				leafDepth = depth
			} else if leafDepth != depth {
				t.Fatalf("leaves at depths %d and %d", leafDepth, depth)
			}
			for i := 0; i < n.n; i++ {
				keys = append(keys, n.keys[i])
			}
			return
		}
		for i := 0; i <= n.n; i++ {
			if n.kids[i] == nil {
				t.Fatalf("inner node with %d entries lacks kid %d", n.n, i)
			}
			walk(n.kids[i], depth+1, false)
			if i < n.n {
				keys = append(keys, n.keys[i])
			}
		}
		for i := n.n + 1; i <= maxItems; i++ {
			if n.kids[i] != nil {
				t.Fatalf("inner node with %d entries keeps kid %d", n.n, i)
			}
		}
	}
	if tr.root != nil {
		walk(tr.root, 0, true)
	}
	want := m.sorted()
	if !slices.Equal(keys, want) {
		t.Fatalf("tree holds %d keys in order %q..., want %d: %q...", len(keys), head(keys), len(want), head(want))
	}
	if tr.Len() != len(m) {
		t.Fatalf("Len %d, want %d", tr.Len(), len(m))
	}
	for k, v := range m {
		if got, ok := tr.Get(k); !ok || got != v {
			t.Fatalf("Get(%q) = %d, %v; want %d", k, got, ok, v)
		}
	}
}

func head(xs []string) []string { return xs[:min(len(xs), 5)] }

// The tree agrees with a map and a sorted list under random writes,
// reads, ordered walks from random pivots and copies; a copy never sees
// what is written to the tree after it (or the tree what is written to
// the copy).
func TestTreeMatchesAModel(t *testing.T) {
	for seed := int64(1); seed <= 12; seed++ {
		rng := rand.New(rand.NewSource(seed))
		tr := New[int](testOrder())
		m := model{}
		type frozen struct {
			tr *Tree[int]
			m  model
		}
		var copies []frozen
		ops := 6000
		for op := range ops {
			k := randKey(rng)
			switch p := rng.Intn(100); {
			case p < 55:
				prev, replaced := tr.Set(k, op)
				if old, ok := m[k]; ok != replaced || (ok && old != prev) {
					t.Fatalf("seed %d: Set(%q) replaced %d, %v; model has %d, %v", seed, k, prev, replaced, old, ok)
				}
				m[k] = op
			case p < 85:
				if rng.Intn(2) == 0 && len(m) > 0 {
					keys := m.sorted()
					k = keys[rng.Intn(len(keys))]
				}
				prev, deleted := tr.Delete(k)
				if old, ok := m[k]; ok != deleted || (ok && old != prev) {
					t.Fatalf("seed %d: Delete(%q) = %d, %v; model has %d, %v", seed, k, prev, deleted, old, ok)
				}
				delete(m, k)
			case p < 97:
				limit := rng.Intn(40)
				var got []string
				tr.Ascend(k, func(key string, v int) bool {
					if v != m[key] {
						t.Fatalf("seed %d: Ascend gave %q = %d, model %d", seed, key, v, m[key])
					}
					got = append(got, key)
					return len(got) < limit
				})
				var want []string
				for _, key := range m.sorted() {
					if key >= k && len(want) < max(limit, 1) {
						want = append(want, key)
					}
				}
				if limit == 0 && len(want) > 0 {
					want = want[:1] // fn is called once before it can stop
				}
				if !slices.Equal(got, want) {
					t.Fatalf("seed %d: Ascend(%q) limit %d = %q, want %q", seed, k, limit, got, want)
				}
			default:
				switch rng.Intn(3) {
				case 0: // keep writing the tree; the copy is frozen
					copies = append(copies, frozen{tr.Copy(), maps(m)})
				case 1: // write the copy; the tree is frozen
					c := tr.Copy()
					copies = append(copies, frozen{tr, maps(m)})
					tr = c
				default: // the state's fork: a copy of a shared tree's header
					dup := *tr
					copies = append(copies, frozen{tr, maps(m)})
					tr = dup.Copy()
				}
			}
			if op%500 == 0 {
				check(t, tr, m)
			}
		}
		check(t, tr, m)
		for _, f := range copies {
			check(t, f.tr, f.m)
		}
	}
}

func maps(m model) model {
	c := make(model, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// A tree built from sorted entries holds them, in nodes filled evenly,
// and takes writes and deletes as any other.
func TestFromSorted(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	for _, n := range []int{0, 1, 30, 31, 32, 33, 63, 64, 500, 1023, 1024, 1025, 5000, 33000} {
		m := model{}
		for len(m) < n {
			m[randKey(rng)+fmt.Sprint(len(m))] = len(m)
		}
		keys := m.sorted()
		tr := FromSorted(testOrder(), len(keys), func(i int) (string, int) { return keys[i], m[keys[i]] })
		check(t, tr, m)
		for range 300 {
			k := randKey(rng)
			if rng.Intn(2) == 0 && len(keys) > 0 {
				k = keys[rng.Intn(len(keys))]
				tr.Delete(k)
				delete(m, k)
			} else {
				tr.Set(k, -1)
				m[k] = -1
			}
		}
		check(t, tr, m)
	}
}

// Summaries order keys as strings do: across known and unknown groups,
// keys without a zero, and ties in the six bytes kept.
func TestSummariesOrderAsStrings(t *testing.T) {
	o := testOrder()
	rng := rand.New(rand.NewSource(3))
	keys := []string{"", "\x00", "consumers", "consumers\x00", "consumers\x00\x00", "consumers\x00abcdef", "consumers\x00abcdefg", "b", "b\x00", "a\x00zzzz", "c\x00", "\xff\x00"}
	for range 3000 {
		keys = append(keys, randKey(rng))
	}
	for _, a := range keys {
		for _, b := range keys[:200] {
			sa, sb := o.summary(a), o.summary(b)
			if (sa < sb && a >= b) || (sa > sb && a <= b) {
				t.Fatalf("summaries %x of %q and %x of %q disagree with the strings", sa, a, sb, b)
			}
		}
	}
}

func BenchmarkGet(b *testing.B) {
	const n = 2_000_000
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("consumers\x00%08x-0000-4000-8000-%012d", rand.Uint32(), i)
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)
	tr := FromSorted(NewOrder(1, []string{"consumers\x00"}), len(keys), func(i int) (string, int) { return keys[i], i })
	probes := slices.Clone(keys)
	rand.Shuffle(len(probes), func(i, j int) { probes[i], probes[j] = probes[j], probes[i] })
	b.ResetTimer()
	for i := range b.N {
		if _, ok := tr.Get(probes[i%len(probes)]); !ok {
			b.Fatal("missing key")
		}
	}
}
