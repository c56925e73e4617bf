package admin

import (
	"fmt"
	"net/http"
	"os"
	"runtime"
	"sort"
	"strings"

	"github.com/gorilla/mux"

	"github.com/gatehouse-gw/gatehouse/fsm"
	"github.com/gatehouse-gw/gatehouse/fsm/schema"
)

func osHostname() (string, error) { return os.Hostname() }

func (s *Server) routes() {
	r := s.router
	r.HandleFunc("/", s.root).Methods("GET", "HEAD")
	r.HandleFunc("/", options("GET, HEAD, OPTIONS")).Methods("OPTIONS")
	r.HandleFunc("/status", s.status).Methods("GET", "HEAD")
	r.HandleFunc("/endpoints", s.endpoints).Methods("GET")
	r.HandleFunc("/plugins/enabled", s.enabledPlugins).Methods("GET")
	r.HandleFunc("/plugins/schema/{name}", s.pluginSchema).Methods("GET")
	r.HandleFunc("/schemas/plugins/validate", func(w http.ResponseWriter, r *http.Request) {
		s.validate(w, r, fsm.Plugins)
	}).Methods("POST")
	r.HandleFunc("/schemas/plugins/{name}", s.pluginSchema).Methods("GET")
	r.HandleFunc("/schemas/{entity}/validate", func(w http.ResponseWriter, r *http.Request) {
		kind := entityName(mux.Vars(r)["entity"])
		if fsm.Schemas[kind] == nil {
			notFound(w)
			return
		}
		s.validate(w, r, kind)
	}).Methods("POST")
	r.HandleFunc("/schemas/{entity}", s.entitySchema).Methods("GET")
	r.HandleFunc("/audit/events", s.auditEvents).Methods("GET")
	r.HandleFunc("/audit/events/{index}", s.auditEvent).Methods("GET")
	r.HandleFunc("/audit/jwks.json", s.jwks).Methods("GET")
	r.HandleFunc("/audit/restore", s.restore).Methods("POST")
	r.HandleFunc("/audit/diff", s.auditDiff).Methods("GET")
	r.HandleFunc("/audit/replay", s.replayCreate).Methods("POST")
	r.HandleFunc("/audit/replay", s.replayList).Methods("GET")
	r.HandleFunc("/audit/replay/{id}", s.replayGet).Methods("GET", "DELETE")
	r.HandleFunc("/config", s.configDump).Methods("GET")
	r.HandleFunc("/config", s.configApply).Methods("POST")
	r.HandleFunc("/audit/webhook", s.webhookSettings).Methods("GET", "HEAD", "PUT", "POST", "DELETE")
	r.HandleFunc("/tags", s.tagsList).Methods("GET")
	r.HandleFunc("/tags/{tag}", s.tagsList).Methods("GET")
	if s.cfg.Metrics != nil {
		r.Handle("/metrics", s.cfg.Metrics).Methods("GET")
	}
	r.HandleFunc("/upstreams/{upstream}/health", s.upstreamHealth).Methods("GET")
	// Kong disables the top-level target endpoints.
	r.HandleFunc("/targets", notFoundHandler)
	r.PathPrefix("/targets/").HandlerFunc(notFoundHandler)
	r.HandleFunc("/rate-limits/{plugin}/{key}", s.rateLimit).Methods("GET")
	r.HandleFunc("/proxy-cache", s.cachePurge).Methods("DELETE")
	r.HandleFunc("/proxy-cache/{key}", s.cacheGet).Methods("GET")
	r.HandleFunc("/proxy-cache/{key}", s.cacheDelete).Methods("DELETE")
	r.HandleFunc("/proxy-cache/{plugin}/caches/{key}", s.cacheGet).Methods("GET")
	r.HandleFunc("/proxy-cache/{plugin}/caches/{key}", s.cacheDelete).Methods("DELETE")
	if s.cfg.Cluster != nil {
		s.clusterRoutes()
	}
	s.entityRoutes()
	r.NotFoundHandler = http.HandlerFunc(notFoundHandler)
	r.MethodNotAllowedHandler = http.HandlerFunc(methodNotAllowed)
}

func notFoundHandler(w http.ResponseWriter, r *http.Request) { notFound(w) }

// entityName accepts both Kong's DAO names and the URL names.
func entityName(n string) string {
	switch n {
	case "key-auths", "key-auth", "keyauth_credentials":
		return fsm.KeyAuths
	case "basic-auths", "basic-auth", "basicauth_credentials":
		return fsm.BasicAuths
	case "jwts", "jwt", "jwt_secrets":
		return fsm.JWTSecrets
	}
	return n
}

func (s *Server) root(w http.ResponseWriter, r *http.Request) {
	st := s.cfg.Store.State()
	avail := map[string]any{}
	for _, n := range s.cfg.Plugins.Names() {
		d, _ := s.cfg.Plugins.Get(n)
		avail[n] = map[string]any{"version": d.Version, "priority": d.Priority}
	}
	enabled := st.PluginNames()
	sort.Strings(enabled)
	conf := map[string]any{
		// Kong's clients switch behaviour on this field: "off" would make
		// decK refuse to sync. Gatehouse accepts every write, as a
		// database-backed Kong does.
		"database":      "postgres",
		"portal":        false,
		"rbac":          "off",
		"role":          "traditional",
		"router_flavor": "traditional_compatible",
		"plugins":       append([]string{"bundled"}, s.cfg.Plugins.Names()...),
		"node_id":       s.cfg.NodeUUID,
	}
	for k, v := range s.cfg.Settings {
		conf[k] = v
	}
	writeJSON(w, 200, map[string]any{
		"tagline": "Welcome to kong", "version": KongVersion, "edition": "community",
		"hostname": s.hostname, "node_id": s.cfg.NodeUUID,
		"gatehouse": map[string]any{"version": GatehouseVersion, "node": s.cfg.NodeID},
		"timers":    map[string]any{"running": 0, "pending": 0},
		"plugins": map[string]any{
			"available_on_server": avail,
			"enabled_in_cluster":  nonNilStrings(enabled),
		},
		"lua_version":   "Go " + runtime.Version(),
		"configuration": conf,
		"pids":          map[string]any{"master": os.Getpid(), "workers": []int{os.Getpid()}},
	})
}

func nonNilStrings(l []string) []string {
	if l == nil {
		return []string{}
	}
	return l
}

var units = map[string]float64{"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	unit := r.URL.Query().Get("unit")
	if unit == "" {
		unit = "m"
	}
	div, ok := units[strings.ToLower(unit)]
	if !ok {
		message(w, 400, "invalid unit '"+unit+"' (expected 'k/K', 'm/M', or 'g/G')")
		return
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmtMem := func(b uint64) any {
		if div == 1 {
			return b
		}
		return formatUnit(float64(b)/div, strings.ToUpper(unit)[:1]+"iB")
	}
	server := map[string]any{}
	if s.cfg.ServerInfo != nil {
		server = s.cfg.ServerInfo()
	}
	var gossip any
	if s.cfg.Gossip != nil {
		gossip = s.cfg.Gossip()
	}
	writeJSON(w, 200, map[string]any{
		"gossip":   gossip,
		"database": map[string]any{"reachable": true},
		"server":   server,
		"memory": map[string]any{
			"lua_shared_dicts": map[string]any{},
			"workers_lua_vms":  []any{map[string]any{"http_allocated_gc": fmtMem(ms.HeapAlloc), "pid": os.Getpid()}},
		},
		"configuration_index": s.cfg.Store.State().Index,
		"cluster":             s.clusterInfo(),
	})
}

func (s *Server) clusterInfo() any {
	if s.cfg.Cluster == nil {
		return nil
	}
	return s.nodeStatus()
}

func formatUnit(v float64, suffix string) string { return fmt.Sprintf("%.2f %s", v, suffix) }

func (s *Server) endpoints(w http.ResponseWriter, r *http.Request) {
	var list []string
	s.router.Walk(func(rt *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		if t, err := rt.GetPathTemplate(); err == nil {
			list = append(list, t)
		}
		return nil
	})
	sort.Strings(list)
	uniq := list[:0]
	for i, p := range list {
		if i == 0 || p != list[i-1] {
			uniq = append(uniq, p)
		}
	}
	writeJSON(w, 200, map[string]any{"data": uniq})
}

func (s *Server) enabledPlugins(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, 200, map[string]any{"enabled_plugins": s.cfg.Plugins.Names()})
}

// tagRowSchema is Kong's tags entity: not stored, the rows /tags lists.
var tagRowSchema = &schema.Schema{Name: "tags", Fields: []*schema.Field{
	{Name: "tag", Type: schema.String, Required: true},
	{Name: "entity_name", Type: schema.String, Required: true},
	{Name: "entity_id", Type: schema.String, Required: true},
}}

func (s *Server) entitySchema(w http.ResponseWriter, r *http.Request) {
	sch := fsm.Schemas[entityName(mux.Vars(r)["entity"])]
	if mux.Vars(r)["entity"] == "tags" {
		sch = tagRowSchema
	}
	if sch == nil {
		message(w, 404, "No entity named '"+mux.Vars(r)["entity"]+"'")
		return
	}
	writeJSON(w, 200, sch.JSON())
}

// pluginSchema renders the plugin entity schema with the plugin's own
// config record in place of the generic one, as Kong does.
func (s *Server) pluginSchema(w http.ResponseWriter, r *http.Request) {
	name := mux.Vars(r)["name"]
	d, ok := s.cfg.Plugins.Get(name)
	if !ok {
		message(w, 404, "No plugin named '"+name+"'")
		return
	}
	var fields []*schema.Field
	for _, f := range fsm.Schemas[fsm.Plugins].Fields {
		switch f.Name {
		case "config":
			fields = append(fields, &schema.Field{Name: "config", Type: schema.Record, Required: true, Fields: d.Config.Fields})
		case "consumer":
			if d.NoConsumer {
				continue
			}
			fields = append(fields, f)
		case "id", "created_at", "updated_at", "name", "instance_name", "tags", "enabled", "ordering":
			continue
		default:
			fields = append(fields, f)
		}
	}
	writeJSON(w, 200, (&schema.Schema{Fields: fields}).JSON())
}

func (s *Server) tagsList(w http.ResponseWriter, r *http.Request) {
	st, ok := s.readState(w, r)
	if !ok {
		return
	}
	want := mux.Vars(r)["tag"]
	data := []any{}
	for _, kind := range fsm.Kinds {
		st.Walk(kind, "", func(e *fsm.Entity) bool {
			for _, ts := range e.Tags() {
				if want == "" || ts == want {
					data = append(data, map[string]any{"tag": ts, "entity_name": kind, "entity_id": e.ID})
				}
			}
			return true
		})
	}
	writeJSON(w, 200, map[string]any{"data": data, "next": nil})
}

func (s *Server) cachePurge(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Cache != nil {
		s.cfg.Cache.Purge()
	}
	w.WriteHeader(204)
}

func (s *Server) cacheGet(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Cache == nil {
		notFound(w)
		return
	}
	obj, ok := s.cfg.Cache.Lookup(mux.Vars(r)["key"])
	if !ok {
		notFound(w)
		return
	}
	writeJSON(w, 200, obj)
}

func (s *Server) cacheDelete(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Cache == nil || !s.cfg.Cache.Delete(mux.Vars(r)["key"]) {
		notFound(w)
		return
	}
	w.WriteHeader(204)
}

// upstreamHealth serves GET /upstreams/{u}/health. Gatehouse runs no
// health checks yet, so every target reads HEALTHCHECKS_OFF, which is
// what Kong reports for an upstream without checks: the balancer uses
// every target with a weight.
func (s *Server) upstreamHealth(w http.ResponseWriter, r *http.Request) {
	st := s.cfg.Store.State()
	u := st.Find(fsm.Upstreams, mux.Vars(r)["upstream"])
	if u == nil {
		message(w, 404, "Not found")
		return
	}
	data := []any{}
	st.Children(fsm.Upstreams, u.ID, fsm.Targets, func(e *fsm.Entity) bool {
		out := render(st, e)
		copied := make(map[string]any, len(out)+1)
		for k, v := range out {
			copied[k] = v
		}
		copied["health"] = "HEALTHCHECKS_OFF"
		data = append(data, copied)
		return true
	})
	writeJSON(w, 200, map[string]any{"data": data, "total": len(data), "node_id": s.cfg.NodeID, "next": nil})
}
