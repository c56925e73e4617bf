package proxy

import (
	"net"
	"strconv"
	"sync"

	"github.com/gatehouse-gw/gatehouse/fsm"
)

// balancer is a smooth weighted round-robin over an upstream's targets
// (nginx's algorithm): with equal weights it strictly alternates, and with
// unequal weights it spreads picks evenly instead of in bursts. Kong
// shuffles a weighted wheel to a similar effect.
type balancer struct {
	mu    sync.Mutex
	peers []peer
	total int
}

type peer struct {
	addr    string
	weight  int
	current int
}

func newBalancer(s *fsm.State, upstreamID string) *balancer {
	b := &balancer{}
	s.Children(fsm.Upstreams, upstreamID, fsm.Targets, func(e *fsm.Entity) bool {
		t := e.View.(*fsm.Target)
		if t.Weight > 0 {
			b.peers = append(b.peers, peer{addr: net.JoinHostPort(t.Host, strconv.Itoa(t.Port)), weight: t.Weight})
			b.total += t.Weight
		}
		return true
	})
	return b
}

// next returns the next peer address, skipping the ones in exclude (peers
// that already failed this request); "" when none is left.
func (b *balancer) next(exclude []string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	best := -1
	total := 0
	for i := range b.peers {
		p := &b.peers[i]
		if excluded(p.addr, exclude) {
			continue
		}
		p.current += p.weight
		total += p.weight
		if best < 0 || p.current > b.peers[best].current {
			best = i
		}
	}
	if best < 0 {
		return ""
	}
	b.peers[best].current -= total
	return b.peers[best].addr
}

func excluded(a string, l []string) bool {
	for _, x := range l {
		if x == a {
			return true
		}
	}
	return false
}

// balancers holds one balancer per upstream, built on first use and
// dropped when that upstream's targets change, so rotation state survives
// unrelated config events. A request still running on an older snapshot
// gets a throwaway balancer rather than caching stale targets.
type balancers struct {
	mu    sync.Mutex
	m     map[string]*balancer
	since map[string]uint64 // upstream id → index of its last target change
	floor uint64            // index of the last full reset
}

func newBalancers() *balancers {
	return &balancers{m: map[string]*balancer{}, since: map[string]uint64{}}
}

func (bs *balancers) get(s *fsm.State, upstreamID string) *balancer {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if b, ok := bs.m[upstreamID]; ok {
		return b
	}
	b := newBalancer(s, upstreamID)
	if s.Index >= bs.since[upstreamID] && s.Index >= bs.floor {
		bs.m[upstreamID] = b
	}
	return b
}

func (bs *balancers) invalidate(upstreamID string, index uint64) {
	bs.mu.Lock()
	delete(bs.m, upstreamID)
	bs.since[upstreamID] = index
	bs.mu.Unlock()
}

func (bs *balancers) reset(index uint64) {
	bs.mu.Lock()
	bs.m = map[string]*balancer{}
	bs.floor = index
	bs.mu.Unlock()
}
