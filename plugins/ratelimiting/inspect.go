package ratelimiting

import (
	"errors"
	"time"

	"github.com/gatehouse-gw/gatehouse/fsm"
)

// ErrNotRateLimit is returned by Inspect for a plugin that counts nothing.
var ErrNotRateLimit = errors.New("not a rate-limiting plugin")

// WindowReport is one window of a key: the limit, the cluster-wide count
// and each node's share as this node last heard it.
type WindowReport struct {
	Counts
	Limit int64 `json:"limit"`
	// Previous is the previous window, which a sliding window still
	// weighs; Estimate is the weighted count the next request meets.
	Previous *Counts `json:"previous,omitempty"`
	Estimate float64 `json:"estimate"`
}

// KeyReport is what GET /rate-limits/{plugin}/{key} shows.
type KeyReport struct {
	Plugin  string         `json:"plugin"`
	Name    string         `json:"name"`
	Key     string         `json:"key"`
	Policy  string         `json:"policy"`
	Node    string         `json:"node"`
	Windows []WindowReport `json:"windows"`
}

// Inspect reports the counters plugin p keeps for identifier key (a
// consumer id, an IP address, a header value: what the plugin counts by),
// as node self sees them now.
func Inspect(p *fsm.Plugin, key, self string, now time.Time) (*KeyReport, error) {
	var (
		store   *Store
		counter string
		ws      []Window
		pol     Policy
	)
	switch h := p.Compiled.(type) {
	case *handler:
		store, counter, pol = h.store, h.counterKey(p, key), h.policy
		ws = make([]Window, len(h.periods))
		h.windows(now, ws)
	case *advanced:
		store, counter, pol = h.store, h.counterKey(p, key), h.policy
		ws = make([]Window, len(h.windows))
		h.fill(now, ws)
	default:
		return nil, ErrNotRateLimit
	}
	out := &KeyReport{Plugin: p.ID, Name: p.Name, Key: key, Policy: "local", Node: self}
	if pol.SyncEvery > 0 {
		out.Policy = "cluster"
	}
	for _, w := range ws {
		cur := store.Counts(counter, self, w.Size, w.Start)
		r := WindowReport{Counts: cur, Limit: store.effective(w.Limit, pol), Estimate: float64(cur.Total)}
		if w.Sliding {
			prev := store.Counts(counter, self, w.Size, w.Start-w.Size)
			r.Previous = &prev
			r.Estimate += float64(prev.Total) * float64(w.End*1e9-now.UnixNano()) / float64(w.Size*1e9)
		}
		out.Windows = append(out.Windows, r)
	}
	return out, nil
}
