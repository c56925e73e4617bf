package fsm

import (
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// sortByKey orders exactly as a stable sort on the keys does, whatever
// the keys: shared prefixes, zero bytes in values, keys shorter than a
// group, empty ones, duplicates (kept in order), and more groups than
// its ranks hold.
func TestSortByKeyIsAStringSort(t *testing.T) {
	type pair struct {
		key string
		seq int
	}
	rng := rand.New(rand.NewPCG(1, 2))
	parts := []string{"", "a", "ab", "consumers", "keyauth_credentials", "username", "k", "\x00", "\x00\x00", "\xff", "c1234567", "c12345678"}
	gen := func() string {
		var b strings.Builder
		for range rng.IntN(5) {
			b.WriteString(parts[rng.IntN(len(parts))])
			if rng.IntN(2) == 0 {
				b.WriteByte(0)
			}
		}
		return b.String()
	}
	for round := range 200 {
		n := rng.IntN(3000)
		if round <= 1 {
			n = 70000 // past sortInHalves' threshold
		}
		xs := make([]pair, n)
		for i := range xs {
			xs[i] = pair{gen(), i}
		}
		if round == 1 {
			for i := range xs { // more groups than ranks
				xs[i].key = strconv.Itoa(i) + "\x00" + xs[i].key
			}
		}
		want := slices.Clone(xs)
		slices.SortStableFunc(want, func(a, b pair) int { return strings.Compare(a.key, b.key) })
		for zeros := 0; zeros <= 3; zeros++ {
			got := sortByKey(slices.Clone(xs), zeros, func(p *pair) string { return p.key }, func(a, b *pair) int { return a.seq - b.seq })
			if !slices.Equal(got, want) {
				t.Fatalf("round %d, %d zeros: order differs from a stable string sort", round, zeros)
			}
		}
	}
}
