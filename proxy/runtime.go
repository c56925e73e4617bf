package proxy

import (
	"log/slog"
	"net"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/gatehouse-gw/gatehouse/fsm"
	"github.com/gatehouse-gw/gatehouse/plugins"
	"github.com/gatehouse-gw/gatehouse/proxy/router"
)

// snapshot is everything the data path reads for one configuration state.
// Requests load it with one atomic load and never lock.
type snapshot struct {
	state  *fsm.State
	router *router.Router
	// routes caches per-route resolution (service, upstream, plugin
	// chain), filled lazily. It is carried over to the next snapshot
	// when an event cannot affect it (consumers, credentials, targets).
	routes *sync.Map // route id → *routeInfo
	// consumerPlugins is true when some plugin is scoped to a consumer,
	// so plugins must be re-resolved once a consumer is known.
	consumerPlugins bool
	// creds finds key-auth credentials and consumers by hash.
	creds *credentials
}

// routeInfo is the resolved configuration for requests matching a route.
type routeInfo struct {
	route    *fsm.Route
	service  *fsm.Service // nil when the route has none
	upstream *fsm.Upstream
	chain    []link
	// addr and hostHeader are derived from the service once, not per
	// request: the upstream address when not balanced, and the Host sent
	// upstream unless preserve_host.
	addr, hostHeader string
}

// link is one plugin name in priority order, with the instance that
// applies before any consumer is known (nil if only consumer-scoped ones
// exist).
type link struct {
	def    *plugins.Definition
	plugin *fsm.Plugin
}

// Runtime keeps the proxy's derived structures in step with the fsm.
type Runtime struct {
	plugins *plugins.Registry
	cur     atomic.Pointer[snapshot]
	bal     *balancers
}

// NewRuntime builds the proxy's view of s and returns a runtime ready to
// subscribe to updates.
func NewRuntime(reg *plugins.Registry, s *fsm.State) *Runtime {
	rt := &Runtime{plugins: reg, bal: newBalancers()}
	rt.cur.Store(rt.rebuildAll(s))
	return rt
}

// rebuildAll is rebuild with the credential index, built alongside the
// router: both are seconds of a restart at 100,000 routes and 1,000,000
// consumers, and neither reads the other.
func (rt *Runtime) rebuildAll(s *fsm.State) *snapshot {
	var creds *credentials
	done := make(chan struct{})
	go func() {
		defer close(done)
		creds = buildCredentials(s)
	}()
	sn := rt.rebuild(s)
	<-done
	sn.creds = creds
	return sn
}

func (rt *Runtime) load() *snapshot { return rt.cur.Load() }

// rebuild constructs the router from a whole state (not the credential
// index: rebuildAll adds it): at startup and after a snapshot restore,
// never per event.
func (rt *Runtime) rebuild(s *fsm.State) *snapshot {
	var routes []*router.Route
	s.Walk(fsm.Routes, "", func(e *fsm.Entity) bool {
		if r := routerRoute(s, e.View.(*fsm.Route)); r != nil {
			routes = append(routes, r)
		}
		return true
	})
	rtr, err := router.New(routes...)
	if err != nil {
		// Paths were validated when applied; a failure here is a bug.
		slog.Error("router rebuild failed", "err", err)
		rtr, _ = router.New()
	}
	return &snapshot{state: s, router: rtr, routes: &sync.Map{}, consumerPlugins: s.HasConsumerPlugins()}
}

// routerRoute converts a route for the router, or nil when it must not be
// matched (its service is disabled: Kong falls through to other routes).
func routerRoute(s *fsm.State, r *fsm.Route) *router.Route {
	if r.ServiceID != "" {
		if se := s.Get(fsm.Services, r.ServiceID); se != nil && !se.View.(*fsm.Service).Enabled {
			return nil
		}
	}
	hasHTTP := false
	for _, p := range r.Protocols {
		if p == "http" || p == "https" {
			hasHTTP = true
		}
	}
	if !hasHTTP {
		return nil
	}
	return &router.Route{
		ID: r.ID, Methods: r.Methods, Hosts: r.Hosts, Paths: r.Paths, Headers: r.Headers, SNIs: r.SNIs,
		RegexPriority: r.RegexPriority, StripPath: r.StripPath, PathHandling: r.PathHandling, Payload: r,
	}
}

// rebuildAbove is how many touched routes make Update rebuild the router
// instead of upserting each.
const rebuildAbove = 2048

// Update applies one fsm update incrementally: only the routes an event
// touched are recompiled, so one change costs the same with 10 or 100,000
// routes.
func (rt *Runtime) Update(u fsm.Update) {
	old := rt.load()
	if u.Reset {
		rt.bal.reset(u.Next.Index)
	}
	if u.Reset || u.Rebuilt {
		rt.cur.Store(rt.rebuildAll(u.Next))
		return
	}
	next := &snapshot{state: u.Next, router: old.router, routes: old.routes, consumerPlugins: old.consumerPlugins,
		creds: old.creds.update(u.Changes)}
	touched := map[string]bool{} // route ids to re-place in the router
	dropCache := false
	for _, c := range u.Changes {
		switch c.Kind {
		case fsm.Routes:
			touched[c.ID] = true
			dropCache = true
		case fsm.Services:
			dropCache = true
			u.Next.Children(fsm.Services, c.ID, fsm.Routes, func(e *fsm.Entity) bool {
				touched[e.ID] = true
				return true
			})
		case fsm.Plugins, fsm.Upstreams:
			dropCache = true
			if c.Kind == fsm.Plugins {
				next.consumerPlugins = u.Next.HasConsumerPlugins()
			}
		case fsm.Targets:
			if c.After != nil {
				rt.bal.invalidate(c.After.View.(*fsm.Target).UpstreamID, u.Next.Index)
			}
			if c.Before != nil {
				rt.bal.invalidate(c.Before.View.(*fsm.Target).UpstreamID, u.Next.Index)
			}
		}
	}
	if len(touched) > rebuildAbove {
		// A restore or a declarative config touches most routes: one
		// build from scratch instead of tens of thousands of
		// copy-on-write upserts, each of which copies part of the index.
		rebuilt := rt.rebuild(u.Next)
		rebuilt.routes = next.routes
		if dropCache {
			rebuilt.routes = &sync.Map{}
		}
		rebuilt.consumerPlugins = next.consumerPlugins
		rebuilt.creds = next.creds
		rt.cur.Store(rebuilt)
		return
	}
	for id := range touched {
		var r *router.Route
		if e := u.Next.Get(fsm.Routes, id); e != nil {
			r = routerRoute(u.Next, e.View.(*fsm.Route))
		}
		if r == nil {
			next.router = next.router.Delete(id)
			continue
		}
		nr, err := next.router.Upsert(r)
		if err != nil {
			slog.Error("router update failed", "route", id, "err", err)
			continue
		}
		next.router = nr
	}
	if dropCache {
		next.routes = &sync.Map{}
	}
	rt.cur.Store(next)
}

// info returns the cached resolution for a route, building it on first
// use in this snapshot.
func (sn *snapshot) info(reg *plugins.Registry, r *fsm.Route) *routeInfo {
	if v, ok := sn.routes.Load(r.ID); ok {
		return v.(*routeInfo)
	}
	ri := &routeInfo{route: r}
	if r.ServiceID != "" {
		if e := sn.state.Get(fsm.Services, r.ServiceID); e != nil {
			ri.service = e.View.(*fsm.Service)
			svc := ri.service
			if ue := sn.state.FindUnique(fsm.Upstreams, "name", svc.Host); ue != nil {
				ri.upstream = ue.View.(*fsm.Upstream)
			}
			ri.addr = net.JoinHostPort(svc.Host, strconv.Itoa(svc.Port))
			ri.hostHeader = hostWithPort(svc.Host, svc.Port, svc.Protocol == "https")
			if ri.upstream != nil && ri.upstream.HostHeader != "" {
				ri.hostHeader = ri.upstream.HostHeader
			}
		}
	}
	ri.chain = sn.chain(reg, r.ID, r.ServiceID)
	sn.routes.Store(r.ID, ri)
	return ri
}

// chain lists the plugins that may run for a route, in Kong's priority
// order (higher first; ties by name for determinism).
func (sn *snapshot) chain(reg *plugins.Registry, routeID, serviceID string) []link {
	var out []link
	for _, name := range sn.state.PluginNames() {
		def, ok := reg.Get(name)
		if !ok {
			continue
		}
		p := resolve(sn.state, name, routeID, serviceID, "")
		if p == nil && !sn.consumerPlugins {
			continue
		}
		out = append(out, link{def: def, plugin: p})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].def.Priority != out[j].def.Priority {
			return out[i].def.Priority > out[j].def.Priority
		}
		return out[i].def.Name < out[j].def.Name
	})
	return out
}

// resolve applies Kong's scope precedence for one plugin name, most
// specific first; disabled instances do not shadow broader ones.
func resolve(s *fsm.State, name, route, service, consumer string) *fsm.Plugin {
	try := func(r, sv, c string) *fsm.Plugin {
		if p := s.PluginFor(name, r, sv, c); p != nil && p.Enabled {
			return p
		}
		return nil
	}
	if consumer != "" {
		if p := try(route, service, consumer); p != nil {
			return p
		}
		if p := try(route, "", consumer); p != nil {
			return p
		}
		if p := try("", service, consumer); p != nil {
			return p
		}
	}
	if p := try(route, service, ""); p != nil {
		return p
	}
	if consumer != "" {
		if p := try("", "", consumer); p != nil {
			return p
		}
	}
	if p := try(route, "", ""); p != nil {
		return p
	}
	if p := try("", service, ""); p != nil {
		return p
	}
	return try("", "", "")
}
