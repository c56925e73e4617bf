package cluster

import (
	"bytes"
	"testing"

	"github.com/hashicorp/raft"
)

func entry(i uint64, size int) *raft.Log {
	return &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: bytes.Repeat([]byte{byte(i)}, size)}
}

// cached reports whether index is served from the cache: the store below
// has lost it.
func cached(t *testing.T, c *logCache, index uint64) bool {
	t.Helper()
	var l raft.Log
	if err := c.GetLog(index, &l); err != nil {
		return false
	}
	return l.Index == index
}

func TestLogCacheKeepsTheNewestEntryWithinItsBudget(t *testing.T) {
	store := raft.NewInmemStore()
	c := newLogCache(8, 1000, store)
	if err := c.StoreLogs([]*raft.Log{entry(1, 10), entry(2, 600), entry(3, 10)}); err != nil {
		t.Fatal(err)
	}
	if err := c.StoreLog(entry(4, 600)); err != nil {
		t.Fatal(err)
	}
	// Bypass the cache's store: what GetLog still finds is cached.
	if err := store.DeleteRange(1, 4); err != nil {
		t.Fatal(err)
	}
	for i, want := range map[uint64]bool{1: false, 2: false, 3: true, 4: true} {
		if got := cached(t, c, i); got != want {
			t.Errorf("entry %d cached = %v, want %v (cached bytes %d)", i, got, want, c.bytes)
		}
	}
	if c.bytes != 610 {
		t.Errorf("cached bytes %d, want 610", c.bytes)
	}
	// One entry over the whole budget is kept while it is the newest.
	if err := c.StoreLog(entry(5, 5000)); err != nil {
		t.Fatal(err)
	}
	store.DeleteRange(5, 5)
	if !cached(t, c, 5) || cached(t, c, 4) {
		t.Errorf("the newest entry must stay cached, older ones give way (bytes %d)", c.bytes)
	}
	// Wrapping around the ring replaces slots and their bytes.
	for i := uint64(6); i < 30; i++ {
		if err := c.StoreLog(entry(i, 1)); err != nil {
			t.Fatal(err)
		}
	}
	if c.bytes != 8 {
		t.Errorf("after wrapping, cached bytes %d, want 8", c.bytes)
	}
	if err := c.DeleteRange(20, 29); err != nil || c.bytes != 0 || cached(t, c, 29) {
		t.Errorf("DeleteRange must empty the cache: err %v, bytes %d", err, c.bytes)
	}
}
