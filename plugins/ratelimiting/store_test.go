package ratelimiting

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func periods(limits map[string]int64) []period {
	var out []period
	for _, n := range periodNames {
		if l, ok := limits[n]; ok {
			out = append(out, period{name: n, limit: l})
		}
	}
	return out
}

// Kong's async increment lets bursts through; ours must admit exactly the
// limit however many requests race.
func TestTakeExactUnderConcurrency(t *testing.T) {
	s := NewStore()
	ps := periods(map[string]int64{"minute": 10})
	now := time.Date(2026, 1, 1, 0, 0, 30, 0, time.UTC)
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var u [1]Usage
			if s.Take("k", now, ps, u[:]) {
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
	s := NewStore()
	ps := periods(map[string]int64{"second": 100, "minute": 6})
	now := time.Date(2026, 1, 1, 0, 0, 45, 0, time.UTC)
	want := []int64{5, 4, 3, 2, 1, 0, 0}
	for i, w := range want {
		u := make([]Usage, 2)
		ok := s.Take("k", now, ps, u)
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
	s.Take("k", now, ps, u)
	if u[0].Remaining != 100-6 {
		t.Fatalf("second window counted rejected requests: remaining %d", u[0].Remaining)
	}
	// The next minute starts afresh and the old windows are swept.
	if !s.Take("k", now.Add(20*time.Second), ps, u) {
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
