package admin

import (
	"net/http"

	"github.com/gorilla/mux"

	"github.com/gatehouse-gw/gatehouse/fsm"
)

// RateLimits reports the counters a rate-limiting plugin keeps for one
// identifier, as this node sees them (its own count and its peers').
type RateLimits interface {
	Inspect(p *fsm.Plugin, key string) (any, error)
}

// rateLimit serves GET /rate-limits/{plugin}/{key}: the cluster-wide and
// per-node counts of one key (a consumer id, an address, a header value)
// in each of the plugin's windows.
func (s *Server) rateLimit(w http.ResponseWriter, r *http.Request) {
	v := mux.Vars(r)
	var p *fsm.Plugin
	if e := s.cfg.Store.State().Get(fsm.Plugins, v["plugin"]); e != nil {
		p, _ = e.View.(*fsm.Plugin)
	}
	if p == nil || s.cfg.RateLimits == nil {
		notFound(w)
		return
	}
	rep, err := s.cfg.RateLimits.Inspect(p, v["key"])
	if err != nil {
		message(w, 400, "plugin '"+p.ID+"' ("+p.Name+") keeps no rate-limit counters")
		return
	}
	writeJSON(w, 200, rep)
}
