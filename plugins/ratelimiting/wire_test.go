package ratelimiting

import (
	"fmt"
	"testing"
	"time"
)

// A flood of changed keys becomes packets that each fit the transport,
// no more than the budget per round, and the rest follow in later rounds
// without loss.
func TestPacketsFitAndCarryEverything(t *testing.T) {
	src, dst := NewStore(0), NewStore(0)
	p := Policy{SyncEvery: 100 * time.Millisecond}
	now := time.Date(2026, 1, 1, 0, 0, 30, 0, time.UTC)
	ws := fixed(now, map[string]int64{"minute": 10})
	u := make([]Usage, 1)
	const keys = 20_000
	for i := 0; i < keys; i++ {
		src.Take(fmt.Sprintf("rl|route|service|10.0.%d.%d", i>>8, i&255), now, ws, p, u)
	}
	long := string(make([]byte, 5000)) // a huge header value as identifier
	src.Take(long, now, ws, p, u)
	const max, budget = 1200, 50
	rounds := 0
	for ; rounds < 100; rounds++ {
		pkts := src.Packets(now.Add(time.Duration(rounds+1)*time.Second), max, budget)
		if len(pkts) == 0 {
			break
		}
		if len(pkts) > budget {
			t.Fatalf("round %d: %d packets, budget %d", rounds, len(pkts), budget)
		}
		for _, pk := range pkts {
			if len(pk) > max {
				t.Fatalf("packet of %d bytes, max %d", len(pk), max)
			}
			dst.Receive("node1", now, pk)
		}
	}
	if rounds < 2 {
		t.Fatalf("everything fit in %d round(s); the budget was not exercised", rounds)
	}
	if n := dst.Len(); n != keys+1 {
		t.Fatalf("peer holds %d counters, want %d", n, keys+1)
	}
	if c := dst.Counts(long, "node2", 60, ws[0].Start); c.Nodes["node1"] != 1 {
		t.Fatalf("long key not carried under its digest: %+v", c)
	}
}

func FuzzReceive(f *testing.F) {
	s := NewStore(0)
	now := time.Date(2026, 1, 1, 0, 0, 30, 0, time.UTC)
	ws := fixed(now, map[string]int64{"minute": 10})
	s.Take("k", now, ws, Policy{SyncEvery: time.Millisecond}, make([]Usage, 1))
	for _, p := range s.Packets(now.Add(time.Second), 1200, 1) {
		f.Add(p)
	}
	f.Add([]byte{0x91, 0x95, 0xa1, 'k', 60, 0, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		d := NewStore(64)
		d.Receive("peer", now, b)
		if d.Len() > 64+shardCount {
			t.Fatalf("%d counters from one packet", d.Len())
		}
		// Whatever was merged must be readable and countable.
		d.Take("k", now, ws, Policy{SyncEvery: time.Millisecond}, make([]Usage, 1))
	})
}
