package ratelimiting

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fixed returns the windows of the named calendar periods at now.
func fixed(now time.Time, limits map[string]int64) []Window {
	var out []Window
	for _, n := range periodNames {
		if l, ok := limits[n]; ok {
			start, end := windowStart(n, now)
			out = append(out, Window{Size: periodSize[n], Start: start, End: end, Limit: l})
		}
	}
	return out
}

func sliding(now time.Time, size, limit int64) []Window {
	start := now.Unix() / size * size
	return []Window{{Size: size, Start: start, End: start + size, Limit: limit, Sliding: true}}
}

// Kong's async increment lets bursts through; ours must admit exactly the
// limit however many requests race.
func TestTakeExactUnderConcurrency(t *testing.T) {
	s := NewStore(0)
	now := time.Date(2026, 1, 1, 0, 0, 30, 0, time.UTC)
	ws := fixed(now, map[string]int64{"minute": 10})
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var u [1]Usage
			if s.Take("k", now, ws, Policy{}, u[:]) {
				admitted.Add(1)
			}
		}()
	}
	wg.Wait()
	if got := admitted.Load(); got != 10 {
		t.Fatalf("admitted %d, want exactly 10", got)
	}
}

func TestTakeRemainingAndReset(t *testing.T) {
	s := NewStore(0)
	now := time.Date(2026, 1, 1, 0, 0, 45, 0, time.UTC)
	ws := fixed(now, map[string]int64{"second": 100, "minute": 6})
	want := []int64{5, 4, 3, 2, 1, 0, 0}
	for i, w := range want {
		u := make([]Usage, 2)
		ok := s.Take("k", now, ws, Policy{}, u)
		if ok != (i < 6) {
			t.Fatalf("request %d: allowed=%v", i+1, ok)
		}
		if u[1].Remaining != w {
			t.Fatalf("request %d: remaining %d, want %d", i+1, u[1].Remaining, w)
		}
		if u[1].Reset != 15 {
			t.Fatalf("reset %d, want 15", u[1].Reset)
		}
	}
	// A rejected request counts in no window.
	u := make([]Usage, 2)
	s.Take("k", now, ws, Policy{}, u)
	if u[0].Remaining != 100-6 {
		t.Fatalf("second window counted rejected requests: remaining %d", u[0].Remaining)
	}
	// The next minute starts afresh and the old windows are swept.
	later := now.Add(20 * time.Second)
	if !s.Take("k", later, fixed(later, map[string]int64{"second": 100, "minute": 6}), Policy{}, u) {
		t.Fatal("new window must admit")
	}
	if n := s.Len(); n != 2 {
		t.Fatalf("expired counters kept: %d live, want 2", n)
	}
}

func TestWindowStartCalendar(t *testing.T) {
	now := time.Date(2026, 2, 14, 13, 45, 10, 0, time.UTC)
	start, end := windowStart("month", now)
	if time.Unix(start, 0).UTC() != time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC) ||
		time.Unix(end, 0).UTC() != time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC) {
		t.Fatalf("month window %v..%v", time.Unix(start, 0).UTC(), time.Unix(end, 0).UTC())
	}
}

// admit sends n requests at now and returns how many were admitted.
func admit(s *Store, key string, now time.Time, ws []Window, p Policy, n int) int {
	got := 0
	u := make([]Usage, len(ws))
	for i := 0; i < n; i++ {
		if s.Take(key, now, ws, p, u) {
			got++
		}
	}
	return got
}

// After a burst exhausts a sliding window, the next window admits as the
// previous one's weight fades: 10/10s, 10 used, then 30% into the next
// window the estimate is 10×0.7 + c, so 3 more fit; at 70%, 10×0.3 + c
// lets the total reach 7.
func TestSlidingWindowDecay(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) // a multiple of 10 s
	for _, penalty := range []bool{false, true} {
		t.Run(fmt.Sprintf("penalty=%v", penalty), func(t *testing.T) {
			s := NewStore(0)
			p := Policy{Penalty: penalty}
			t1 := base.Add(time.Second)
			if got := admit(s, "k", t1, sliding(t1, 10, 10), p, 12); got != 10 {
				t.Fatalf("burst admitted %d, want 10", got)
			}
			// With Kong's penalty the rejected requests count too: the
			// burst left 12, so 12×0.7 + c admits 2 of 5 (and counts 5);
			// at 70%, 12×0.3 + 5 = 8.6 leaves room for two.
			want2, want3 := 3, 4 // 10×0.3 + 3 = 6: four more
			if penalty {
				want2, want3 = 2, 2
			}
			t2 := base.Add(13 * time.Second)
			if got := admit(s, "k", t2, sliding(t2, 10, 10), p, 5); got != want2 {
				t.Fatalf("30%% into the next window admitted %d, want %d", got, want2)
			}
			t3 := base.Add(17 * time.Second)
			if got := admit(s, "k", t3, sliding(t3, 10, 10), p, 10); got != want3 {
				t.Fatalf("70%% into the next window admitted %d, want %d", got, want3)
			}
		})
	}
}

func TestSlidingRetryAfter(t *testing.T) {
	s := NewStore(0)
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	t1 := base.Add(time.Second)
	admit(s, "k", t1, sliding(t1, 10, 10), Policy{}, 10)
	u := make([]Usage, 1)
	s.Take("k", t1, sliding(t1, 10, 10), Policy{}, u)
	// Full now: only the next window admits, once 10·(1−e/10) < 10, i.e.
	// just after it starts: 9 s to the window's end, then a moment.
	if u[0].Retry != 10 {
		t.Fatalf("retry %d, want 10", u[0].Retry)
	}
	// 2 s into the next window the estimate is 8 + 0: room now.
	t2 := base.Add(12 * time.Second)
	if !s.Take("k", t2, sliding(t2, 10, 10), Policy{}, u) {
		t.Fatal("sliding window must admit 20% into the next window")
	}
}

func TestPeersCountTowardsTheLimit(t *testing.T) {
	s := NewStore(0)
	p := Policy{SyncEvery: 100 * time.Millisecond}
	now := time.Date(2026, 1, 1, 0, 0, 30, 0, time.UTC)
	ws := fixed(now, map[string]int64{"minute": 10})
	admit(s, "k", now, ws, p, 1) // the counter exists with its interval
	r := Report{Key: "k", Size: 60, Start: ws[0].Start, Expires: ws[0].End, Count: 6}
	s.Merge("node2", now, []Report{r})
	// Long after the report, no extrapolation: 1 + 6 used, 3 left.
	later := now.Add(time.Second)
	if got := admit(s, "k", later, ws, p, 10); got != 3 {
		t.Fatalf("admitted %d with a peer at 6, want 3", got)
	}
	// An older report arriving late never lowers the count.
	s.Merge("node2", later, []Report{{Key: "k", Size: 60, Start: ws[0].Start, Expires: ws[0].End, Count: 2}})
	if c := s.Counts("k", "node1", 60, ws[0].Start); c.Total != 10 || c.Nodes["node2"] != 6 || c.Nodes["node1"] != 4 {
		t.Fatalf("counts after a reordered report: %+v", c)
	}
	// A dead peer's counts age out: the survivors count only themselves.
	s.Forget("node2")
	if got := admit(s, "k", later, ws, p, 10); got != 6 {
		t.Fatalf("admitted %d after forgetting the peer, want 6", got)
	}
}

// A peer that reported a steady rate is assumed to keep admitting at it
// until its next report is due, so two nodes sharing balanced load do not
// each spend the other's recent share.
func TestPeerRateExtrapolation(t *testing.T) {
	s := NewStore(0)
	p := Policy{SyncEvery: 100 * time.Millisecond}
	now := time.Date(2026, 1, 1, 0, 0, 30, 0, time.UTC)
	ws := fixed(now, map[string]int64{"minute": 100})
	admit(s, "k", now, ws, p, 1)
	rep := func(at time.Time, n int64) {
		s.Merge("node2", at, []Report{{Key: "k", Size: 60, Start: ws[0].Start, Expires: ws[0].End, Count: n}})
	}
	rep(now, 10)
	rep(now.Add(100*time.Millisecond), 20) // 10 per 100 ms
	at := now.Add(150 * time.Millisecond)  // 50 ms later: about 5 more
	c := s.shardOf("k").counts[counterKey{"k", 60, ws[0].Start}]
	if est := c.estimate(at.UnixNano()); est < 25.5 || est > 26.5 {
		t.Fatalf("estimate %.1f, want about 1 + 20 + 5", est)
	}
	// Silent for longer than 1.5 intervals: the peer stopped counting.
	if est := c.estimate(now.Add(time.Second).UnixNano()); est != 21 {
		t.Fatalf("estimate of a silent peer %.1f, want 21", est)
	}
}

func TestLocalShare(t *testing.T) {
	s := NewStore(0)
	p := Policy{SyncEvery: 100 * time.Millisecond, Share: true}
	now := time.Date(2026, 1, 1, 0, 0, 30, 0, time.UTC)
	ws := fixed(now, map[string]int64{"minute": 30})
	s.SetMembership(1, 3) // cut off from both peers
	if got := admit(s, "a", now, ws, p, 50); got != 10 {
		t.Fatalf("alone in a three-node cluster admitted %d, want its share 10", got)
	}
	s.SetMembership(3, 3)
	if got := admit(s, "a", now, ws, p, 50); got != 20 {
		t.Fatalf("healed: admitted %d more, want 20 (the whole limit)", got)
	}
	// full (the default) enforces the whole limit on what it sees.
	s.SetMembership(1, 3)
	if got := admit(s, "b", now, ws, Policy{SyncEvery: p.SyncEvery}, 50); got != 30 {
		t.Fatalf("partition_behavior full admitted %d, want 30", got)
	}
}

// A flood of distinct keys (random source addresses) must not grow the
// store past its bound.
func TestFloodStaysBounded(t *testing.T) {
	const bound = 4096
	s := NewStore(bound)
	now := time.Date(2026, 1, 1, 0, 0, 30, 0, time.UTC)
	ws := fixed(now, map[string]int64{"minute": 10})
	p := Policy{SyncEvery: 100 * time.Millisecond}
	u := make([]Usage, 1)
	for i := 0; i < 200_000; i++ {
		s.Take(fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), now, ws, p, u)
	}
	// Peers' reports are bounded by the same limit.
	var reps []Report
	for i := 0; i < 50_000; i++ {
		reps = append(reps, Report{Key: fmt.Sprintf("peer-%d", i), Size: 60, Start: ws[0].Start, Expires: ws[0].End, Count: 1})
	}
	s.Merge("node2", now, reps)
	if n := s.Len(); n > bound+shardCount {
		t.Fatalf("%d counters kept, bound %d", n, bound)
	}
	if s.Stats().Evicted == 0 {
		t.Fatal("no evictions counted")
	}
	// The dirty list follows the counters out even when nothing collects
	// reports (sweeps drop keys whose counter is gone).
	total := 0
	for i := range s.shards {
		total += len(s.shards[i].dirty)
	}
	if total > bound+shardCount {
		t.Fatalf("dirty list holds %d keys, bound %d", total, bound)
	}
}

func TestCollectInterval(t *testing.T) {
	s := NewStore(0)
	p := Policy{SyncEvery: 100 * time.Millisecond}
	now := time.Date(2026, 1, 1, 0, 0, 30, 0, time.UTC)
	ws := fixed(now, map[string]int64{"minute": 10})
	collect := func(at time.Time) []Report {
		var out []Report
		s.Collect(at, func(r Report) bool { out = append(out, r); return true })
		return out
	}
	admit(s, "k", now, ws, p, 2)
	if r := collect(now); len(r) != 1 || r[0].Count != 2 {
		t.Fatalf("first collect: %+v", r)
	}
	if r := collect(now.Add(50 * time.Millisecond)); len(r) != 0 {
		t.Fatalf("nothing changed, yet reported: %+v", r)
	}
	admit(s, "k", now, ws, p, 1)
	if r := collect(now.Add(50 * time.Millisecond)); len(r) != 0 {
		t.Fatalf("reported before the interval: %+v", r)
	}
	if r := collect(now.Add(120 * time.Millisecond)); len(r) != 1 || r[0].Count != 3 {
		t.Fatalf("after the interval: %+v", r)
	}
	// Local-policy counters are never reported.
	admit(s, "local", now, ws, Policy{}, 1)
	if r := collect(now.Add(time.Second)); len(r) != 0 {
		t.Fatalf("local counter reported: %+v", r)
	}
	// An emit that is full defers the rest to the next round.
	admit(s, "a", now, ws, p, 1)
	admit(s, "b", now, ws, p, 1)
	var got []Report
	s.Collect(now.Add(2*time.Second), func(r Report) bool {
		if len(got) == 1 {
			return false
		}
		got = append(got, r)
		return true
	})
	if r := collect(now.Add(2 * time.Second)); len(got) != 1 || len(r) != 1 {
		t.Fatalf("deferral: first round %d, second %d", len(got), len(r))
	}
}

// The request path's cost: local policy versus cluster (peers' reports to
// add, the counter to mark for the next report).
func BenchmarkTake(b *testing.B) {
	now := time.Date(2026, 1, 1, 0, 0, 30, 0, time.UTC)
	ws := fixed(now, map[string]int64{"minute": 1 << 40})
	for _, c := range []struct {
		name string
		p    Policy
	}{{"local", Policy{}}, {"cluster", Policy{SyncEvery: 100 * time.Millisecond}}} {
		b.Run(c.name, func(b *testing.B) {
			s := NewStore(0)
			if c.p.SyncEvery > 0 {
				for _, peer := range []string{"node2", "node3"} {
					s.Merge(peer, now, []Report{{Key: "k", Size: 60, Start: ws[0].Start, Expires: ws[0].End, Count: 5}})
				}
			}
			u := make([]Usage, 1)
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				s.Take("k", now, ws, c.p, u)
			}
		})
	}
}

// The handlers pass Take a key that views a buffer they reuse; the store
// must keep copies, in its counters and in what it reports to peers.
func TestTakeCopiesAKeyThatSharesABuffer(t *testing.T) {
	s := NewStore(0)
	p := Policy{SyncEvery: 100 * time.Millisecond}
	now := time.Date(2026, 1, 1, 0, 0, 30, 0, time.UTC)
	ws := fixed(now, map[string]int64{"minute": 10})
	buf := []byte("key-a")
	var u [1]Usage
	s.Take(view(buf), now, ws, p, u[:])
	copy(buf, "key-b")
	s.Take(view(buf), now, ws, p, u[:])
	s.Take(view(buf), now, ws, p, u[:])
	copy(buf, "zzzzz")
	if a, b := s.Counts("key-a", "node1", 60, ws[0].Start), s.Counts("key-b", "node1", 60, ws[0].Start); a.Total != 1 || b.Total != 2 {
		t.Fatalf("after reusing the key's buffer: key-a %+v, key-b %+v", a, b)
	}
	var keys []string
	s.Collect(now.Add(time.Second), func(r Report) bool { keys = append(keys, r.Key); return true })
	slices.Sort(keys)
	if !slices.Equal(keys, []string{"key-a", "key-b"}) {
		t.Fatalf("reported keys %q, want key-a and key-b", keys)
	}
}
