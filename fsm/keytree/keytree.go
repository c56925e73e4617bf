// Package keytree is an ordered map from string keys, persistent by
// copy-on-write, for the configuration state's indexes. It is a B-tree
// whose nodes keep, beside each key, an 8-byte summary of it that orders
// as the key does (see Order): a search compares the summaries, which lie
// side by side in the node, and reads a key only when two summaries are
// equal. The state's keys share long prefixes ("consumers\x00" and a
// UUID), so a search in a general B-tree read a key from a different
// place in memory at every step: at 2,000,000 entries, about 21 cache
// misses a lookup, and most of a bulk load's fold.
package keytree

import (
	"encoding/binary"
	"slices"
)

// Order summarizes keys for the tree. A key's group is the key up to and
// including its zeros-th zero byte (the whole key when it has fewer); the
// groups the order is told of are ranked in their own order. A summary
// is a code for the group in its top 16 bits, then the 6 bytes after the
// group (zero-padded). Known groups get odd codes; a key of an unknown
// group gets the even code of the place its group would take among the
// known ones, and no bytes, so that it compares with other such keys as
// a string. Keys in one group share its prefix, and groups (zero-ended,
// with the same count of zeros) are never prefixes of one another, so
// comparing summaries, then keys when they tie, orders keys as strings.
type Order struct {
	zeros  int
	groups map[string]uint64 // group → code
	sorted []string
}

// NewOrder returns the order for keys grouped by their first zeros zero
// bytes, with the given groups known (each must end in its zeros-th zero
// byte; others are ignored). Unknown groups are correct, only slower.
func NewOrder(zeros int, groups []string) *Order {
	o := &Order{zeros: zeros, groups: map[string]uint64{}}
	for _, g := range groups {
		if o.cut(g) == len(g) && len(g) > 0 && g[len(g)-1] == 0 {
			o.groups[g] = 0
		}
	}
	for g := range o.groups {
		o.sorted = append(o.sorted, g)
	}
	if len(o.sorted) >= 1<<15 {
		// Codes are 16 bits: with this many, every group is unknown.
		o.sorted = nil
		clear(o.groups)
	}
	slices.Sort(o.sorted)
	for i, g := range o.sorted {
		o.groups[g] = uint64(2*i+1) << 48
	}
	return o
}

// cut returns where key's group ends.
func (o *Order) cut(key string) int { return GroupEnd(key, o.zeros) }

// GroupEnd returns where key's group ends: just after its zeros-th zero
// byte, or at its end when it has fewer.
func GroupEnd(key string, zeros int) int {
	n := 0
	for i := 0; i < len(key); i++ {
		if key[i] == 0 {
			if n++; n == zeros {
				return i + 1
			}
		}
	}
	return len(key)
}

// summary returns key's 8-byte summary.
func (o *Order) summary(key string) uint64 {
	end := o.cut(key)
	code, ok := o.groups[key[:end]]
	if !ok {
		// The place among the known groups, by binary search.
		lo, hi := 0, len(o.sorted)
		for lo < hi {
			h := int(uint(lo+hi) >> 1)
			if o.sorted[h] < key[:end] {
				lo = h + 1
			} else {
				hi = h
			}
		}
		return uint64(2*lo) << 48
	}
	var b [8]byte
	copy(b[2:], key[end:])
	return code | binary.BigEndian.Uint64(b[:])
}

// Degree 16: a node holds 15 to 31 entries, and a write after Copy
// copies one node (about a kilobyte) per level.
const (
	maxItems = 31
	minItems = maxItems / 2
)

// owner marks the nodes a tree may write in place; Copy gives both
// trees new owners, so neither writes a node they share.
type owner struct{ _ byte }

type node[V any] struct {
	own  *owner
	n    int
	sum  [maxItems]uint64
	keys [maxItems]string
	vals [maxItems]V
	kids *[maxItems + 1]*node[V] // nil for a leaf
}

// Tree is an ordered map from strings to V. A tree is written by one
// goroutine at a time; Copy returns a tree that shares every node until
// either writes it, so a published tree can be read by any number of
// goroutines while a copy of it is written.
type Tree[V any] struct {
	ord   *Order
	root  *node[V]
	count int
	own   *owner
}

// New returns an empty tree ordered by ord.
func New[V any](ord *Order) *Tree[V] { return &Tree[V]{ord: ord, own: new(owner)} }

// Order returns the order t's keys are summarized by.
func (t *Tree[V]) Order() *Order { return t.ord }

// Len returns the number of keys.
func (t *Tree[V]) Len() int { return t.count }

// Copy returns a copy of t. It writes t (both get new owners): call it on
// a tree no one else reads, or on a duplicate of a shared one's header.
func (t *Tree[V]) Copy() *Tree[V] {
	t.own = new(owner)
	return &Tree[V]{ord: t.ord, root: t.root, count: t.count, own: new(owner)}
}

// find returns the first index in n whose entry is not below (s, key),
// and whether it is key.
func (n *node[V]) find(s uint64, key string) (int, bool) {
	lo, hi := 0, n.n
	for lo < hi {
		h := int(uint(lo+hi) >> 1)
		if n.sum[h] < s || (n.sum[h] == s && n.keys[h] < key) {
			lo = h + 1
		} else {
			hi = h
		}
	}
	return lo, lo < n.n && n.sum[lo] == s && n.keys[lo] == key
}

// Get returns the value of key.
func (t *Tree[V]) Get(key string) (V, bool) {
	s := t.ord.summary(key)
	for n := t.root; n != nil; {
		i, ok := n.find(s, key)
		if ok {
			return n.vals[i], true
		}
		if n.kids == nil {
			break
		}
		n = n.kids[i]
	}
	var zero V
	return zero, false
}

// mut returns *p writable by t, copying it if t does not own it.
func (t *Tree[V]) mut(p **node[V]) *node[V] {
	n := *p
	if n.own == t.own {
		return n
	}
	c := new(node[V])
	*c = *n
	c.own = t.own
	if n.kids != nil {
		k := *n.kids
		c.kids = &k
	}
	*p = c
	return c
}

// Set sets key to v, returning the value it replaced.
func (t *Tree[V]) Set(key string, v V) (V, bool) {
	s := t.ord.summary(key)
	if t.root == nil {
		t.root = &node[V]{own: t.own}
	}
	if t.root.n == maxItems {
		// Split the full root first: the tree grows at the top.
		old := t.mut(&t.root)
		r := &node[V]{own: t.own, kids: new([maxItems + 1]*node[V])}
		r.kids[0] = old
		t.root = r
		t.split(r, 0)
	}
	n := t.mut(&t.root)
	for {
		i, ok := n.find(s, key)
		if ok {
			prev := n.vals[i]
			n.vals[i] = v
			return prev, true
		}
		if n.kids == nil {
			n.insertAt(i, s, key, v)
			t.count++
			var zero V
			return zero, false
		}
		if n.kids[i].n == maxItems {
			t.split(n, i)
			if n.sum[i] == s && n.keys[i] == key {
				prev := n.vals[i]
				n.vals[i] = v
				return prev, true
			}
			if n.sum[i] < s || (n.sum[i] == s && n.keys[i] < key) {
				i++
			}
		}
		n = t.mut(&n.kids[i])
	}
}

// split splits n's full child i around its middle entry, which moves up
// into n (writable, not full).
func (t *Tree[V]) split(n *node[V], i int) {
	c := t.mut(&n.kids[i])
	const mid = maxItems / 2
	r := &node[V]{own: t.own, n: maxItems - mid - 1}
	copy(r.sum[:], c.sum[mid+1:c.n])
	copy(r.keys[:], c.keys[mid+1:c.n])
	copy(r.vals[:], c.vals[mid+1:c.n])
	if c.kids != nil {
		r.kids = new([maxItems + 1]*node[V])
		copy(r.kids[:], c.kids[mid+1:c.n+1])
	}
	s, k, v := c.sum[mid], c.keys[mid], c.vals[mid]
	c.clearFrom(mid)
	n.insertAt(i, s, k, v)
	copy(n.kids[i+2:n.n+1], n.kids[i+1:n.n])
	n.kids[i+1] = r
}

// clearFrom drops n's entries from i on, and their kids after i, so that
// the node keeps no references to them.
func (n *node[V]) clearFrom(i int) {
	var zero V
	for j := i; j < n.n; j++ {
		n.keys[j], n.vals[j] = "", zero
		if n.kids != nil {
			n.kids[j+1] = nil
		}
	}
	n.n = i
}

// insertAt inserts an entry at i, shifting the ones after it (and, in an
// inner node, nothing of its kids: the caller places them).
func (n *node[V]) insertAt(i int, s uint64, key string, v V) {
	copy(n.sum[i+1:n.n+1], n.sum[i:n.n])
	copy(n.keys[i+1:n.n+1], n.keys[i:n.n])
	copy(n.vals[i+1:n.n+1], n.vals[i:n.n])
	n.sum[i], n.keys[i], n.vals[i] = s, key, v
	n.n++
}

// removeAt removes entry i and, in an inner node, kid i+1.
func (n *node[V]) removeAt(i int) {
	copy(n.sum[i:], n.sum[i+1:n.n])
	copy(n.keys[i:], n.keys[i+1:n.n])
	copy(n.vals[i:], n.vals[i+1:n.n])
	if n.kids != nil {
		copy(n.kids[i+1:], n.kids[i+2:n.n+1])
		n.kids[n.n] = nil
	}
	n.n--
	var zero V
	n.keys[n.n], n.vals[n.n] = "", zero
}

// Delete removes key, returning its value.
func (t *Tree[V]) Delete(key string) (V, bool) {
	var zero V
	if t.root == nil {
		return zero, false
	}
	if _, ok := t.Get(key); !ok {
		return zero, false // nothing to copy on the way down
	}
	v := t.delete(t.mut(&t.root), t.ord.summary(key), key)
	if t.root.n == 0 {
		if t.root.kids != nil {
			t.root = t.root.kids[0]
		} else {
			t.root = nil
		}
	}
	t.count--
	return v, true
}

// delete removes key, which is in the subtree of n (writable, with more
// than minItems entries unless it is the root).
func (t *Tree[V]) delete(n *node[V], s uint64, key string) V {
	for {
		i, ok := n.find(s, key)
		if n.kids == nil {
			v := n.vals[i] // ok: the key is in the tree
			n.removeAt(i)
			return v
		}
		if ok {
			v := n.vals[i]
			switch {
			case n.kids[i].n > minItems:
				// Replace it with its predecessor, then delete that.
				p := n.kids[i]
				for p.kids != nil {
					p = p.kids[p.n]
				}
				ps, pk, pv := p.sum[p.n-1], p.keys[p.n-1], p.vals[p.n-1]
				n.sum[i], n.keys[i], n.vals[i] = ps, pk, pv
				t.delete(t.mut(&n.kids[i]), ps, pk)
				return v
			case n.kids[i+1].n > minItems:
				sc := n.kids[i+1]
				for sc.kids != nil {
					sc = sc.kids[0]
				}
				ss, sk, sv := sc.sum[0], sc.keys[0], sc.vals[0]
				n.sum[i], n.keys[i], n.vals[i] = ss, sk, sv
				t.delete(t.mut(&n.kids[i+1]), ss, sk)
				return v
			}
			// Both neighbours are minimal: merge them around the key
			// and delete it from the merged node.
			t.merge(n, i)
			n = n.kids[i]
			continue
		}
		n = t.fill(n, i)
	}
}

// fill returns n's kid i, or the node it was merged into, writable and
// with more than minItems entries.
func (t *Tree[V]) fill(n *node[V], i int) *node[V] {
	c := t.mut(&n.kids[i])
	if c.n > minItems {
		return c
	}
	switch {
	case i > 0 && n.kids[i-1].n > minItems:
		// Rotate right: the separator comes down, the left kid's last
		// entry goes up.
		l := t.mut(&n.kids[i-1])
		c.insertAt(0, n.sum[i-1], n.keys[i-1], n.vals[i-1])
		if c.kids != nil {
			copy(c.kids[1:c.n+1], c.kids[0:c.n])
			c.kids[0] = l.kids[l.n]
		}
		n.sum[i-1], n.keys[i-1], n.vals[i-1] = l.sum[l.n-1], l.keys[l.n-1], l.vals[l.n-1]
		l.clearFrom(l.n - 1)
		return c
	case i < n.n && n.kids[i+1].n > minItems:
		// Rotate left: the separator comes down, the right kid's first
		// entry goes up.
		r := t.mut(&n.kids[i+1])
		c.insertAt(c.n, n.sum[i], n.keys[i], n.vals[i])
		if c.kids != nil {
			c.kids[c.n] = r.kids[0]
			copy(r.kids[0:], r.kids[1:r.n+1])
			r.kids[r.n] = nil
		}
		n.sum[i], n.keys[i], n.vals[i] = r.sum[0], r.keys[0], r.vals[0]
		r.removeFirst()
		return c
	case i < n.n:
		t.merge(n, i)
		return n.kids[i]
	default:
		t.merge(n, i-1)
		return n.kids[i-1]
	}
}

// removeFirst removes entry 0 of n (its kids are the caller's).
func (n *node[V]) removeFirst() {
	copy(n.sum[0:], n.sum[1:n.n])
	copy(n.keys[0:], n.keys[1:n.n])
	copy(n.vals[0:], n.vals[1:n.n])
	n.n--
	var zero V
	n.keys[n.n], n.vals[n.n] = "", zero
}

// merge joins n's kids i and i+1 (both minimal) around entry i, which
// leaves n.
func (t *Tree[V]) merge(n *node[V], i int) {
	l := t.mut(&n.kids[i])
	r := n.kids[i+1]
	l.sum[l.n], l.keys[l.n], l.vals[l.n] = n.sum[i], n.keys[i], n.vals[i]
	copy(l.sum[l.n+1:], r.sum[:r.n])
	copy(l.keys[l.n+1:], r.keys[:r.n])
	copy(l.vals[l.n+1:], r.vals[:r.n])
	if l.kids != nil {
		copy(l.kids[l.n+1:], r.kids[:r.n+1])
	}
	l.n += r.n + 1
	n.removeAt(i)
}

// Ascend calls fn for each key not below pivot, in order, until fn
// returns false.
func (t *Tree[V]) Ascend(pivot string, fn func(key string, v V) bool) {
	if t.root != nil {
		t.root.ascend(t.ord.summary(pivot), pivot, fn)
	}
}

func (n *node[V]) ascend(s uint64, pivot string, fn func(string, V) bool) bool {
	i, _ := n.find(s, pivot)
	for ; i < n.n; i++ {
		if n.kids != nil && !n.kids[i].ascend(s, pivot, fn) {
			return false
		}
		if !fn(n.keys[i], n.vals[i]) {
			return false
		}
	}
	if n.kids != nil {
		return n.kids[n.n].ascend(s, pivot, fn)
	}
	return true
}

// FromSorted returns a tree of the n entries at(0) .. at(n-1), whose keys
// must be strictly increasing. Its nodes are filled evenly, nearly full;
// entries set one by one leave most nodes half full.
func FromSorted[V any](ord *Order, n int, at func(i int) (string, V)) *Tree[V] {
	t := New[V](ord)
	if n == 0 {
		return t
	}
	level := make([]*node[V], 0, n/maxItems+1)
	var seps []entry[V]
	// The leaves, with one entry between each two of them going up.
	pos := 0
	for _, size := range sizes(n) {
		l := &node[V]{own: t.own, n: size}
		for j := range size {
			k, v := at(pos + j)
			l.sum[j], l.keys[j], l.vals[j] = ord.summary(k), k, v
		}
		pos += size
		level = append(level, l)
		if pos < n {
			k, v := at(pos)
			seps = append(seps, entry[V]{ord.summary(k), k, v})
			pos++
		}
	}
	for len(level) > 1 {
		var up []*node[V]
		var upSeps []entry[V]
		e, kid := 0, 0
		for _, size := range sizes(len(seps)) {
			in := &node[V]{own: t.own, n: size, kids: new([maxItems + 1]*node[V])}
			for j := range size {
				in.sum[j], in.keys[j], in.vals[j] = seps[e+j].sum, seps[e+j].key, seps[e+j].val
			}
			copy(in.kids[:], level[kid:kid+size+1])
			e, kid = e+size, kid+size+1
			up = append(up, in)
			if e < len(seps) {
				upSeps = append(upSeps, seps[e])
				e++
			}
		}
		level, seps = up, upSeps
	}
	t.root, t.count = level[0], n
	return t
}

type entry[V any] struct {
	sum uint64
	key string
	val V
}

// sizes splits n entries into the fewest nodes of at most maxItems, with
// one entry between each two, as evenly as possible (so each holds at
// least minItems: the fewest nodes are at least half full).
func sizes(n int) []int {
	m := (n + 1 + maxItems) / (maxItems + 1) // ceil((n+1)/(maxItems+1))
	if m < 1 {
		m = 1
	}
	total := n - (m - 1)
	out := make([]int, m)
	for j := range out {
		out[j] = total / m
		if j < total%m {
			out[j]++
		}
	}
	return out
}
