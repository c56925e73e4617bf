package admin

import (
	"net/http"
	"strconv"

	"github.com/gatehouse-gw/gatehouse/fsm"
	"github.com/gatehouse-gw/gatehouse/fsm/declarative"
)

// configDump serves GET /config[?at=INDEX|TIME]: the whole gateway
// configuration, now or as it was then, in Kong's declarative shape.
// Credentials are in clear only for callers allowed to read them; others
// see their HMAC, as in the audit views.
func (s *Server) configDump(w http.ResponseWriter, r *http.Request) {
	st, ok := s.readState(w, r)
	if !ok {
		return
	}
	var redact func(kind string, d map[string]any) map[string]any
	if !s.mayRead(r, "credentials") {
		salt := s.cfg.Store.State().Salt()
		redact = func(kind string, d map[string]any) map[string]any { return fsm.Redact(kind, d, salt) }
	}
	w.Header().Set("X-Gatehouse-Config-Index", strconv.FormatUint(st.Index, 10))
	b, err := declarative.RenderJSON(st, redact)
	if err != nil {
		message(w, 500, "An unexpected error occurred")
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(200)
	w.Write(b)
}

// mayRead reports whether the caller may read entity (always, without
// admin authentication).
func (s *Server) mayRead(r *http.Request, entity string) bool {
	if !s.cfg.Auth.Enabled {
		return true
	}
	p, ok := r.Context().Value(principalKey{}).(*principal)
	if !ok {
		return false
	}
	allowed, scoped := decide(s.cfg.Store.State(), p.roles, perm{entity, "read"}, nil)
	return allowed && !scoped
}

// auditDiff serves GET /audit/diff?from=..&to=..: the entities that differ
// between two points of the log (indexes or RFC 3339 times; to defaults to
// now), with the fields that changed, before and after. Secrets appear as
// their HMAC.
func (s *Server) auditDiff(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("from") == "" {
		message(w, 400, "from is required: a log index or an RFC 3339 time")
		return
	}
	from, ok := s.resolvePoint(w, "from", q.Get("from"))
	if !ok {
		return
	}
	to := s.cfg.Store.State().Index
	if v := q.Get("to"); v != "" {
		if to, ok = s.resolvePoint(w, "to", v); !ok {
			return
		}
	}
	a, err := s.cfg.Store.StateAt(from)
	if err != nil {
		message(w, 500, "An unexpected error occurred")
		return
	}
	b, err := s.cfg.Store.StateAt(to)
	if err != nil {
		message(w, 500, "An unexpected error occurred")
		return
	}
	salt := s.cfg.Store.State().Salt()
	changes := []any{}
	for _, d := range fsm.Diff(a, b, fsm.Kinds) {
		c := map[string]any{"entity_type": d.Kind, "entity_id": d.ID, "op": d.Op()}
		if e := d.After; e != nil || d.Before != nil {
			if e == nil {
				e = d.Before
			}
			// The entity's endpoint key (name, username, target), so a
			// reader knows which one changed; never a credential.
			if f := fsm.EndpointKey(d.Kind); f != "" {
				if v, ok := fsm.Redact(d.Kind, e.Data(), nil)[f].(string); ok && v != "redacted" {
					c["name"] = v
				}
			}
		}
		switch {
		case d.Before == nil:
			c["after"] = fsm.Redact(d.Kind, d.After.Data(), salt)
		case d.After == nil:
			c["before"] = fsm.Redact(d.Kind, d.Before.Data(), salt)
		default:
			fields := fsm.ChangedFields(d.Before.Data(), d.After.Data())
			before, after := fsm.Redact(d.Kind, d.Before.Data(), salt), fsm.Redact(d.Kind, d.After.Data(), salt)
			bf, af := map[string]any{}, map[string]any{}
			for _, f := range fields {
				bf[f], af[f] = before[f], after[f]
			}
			c["fields"], c["before"], c["after"] = fields, bf, af
		}
		changes = append(changes, c)
	}
	writeJSON(w, 200, map[string]any{"from": from, "to": to, "changes": changes})
}

// resolvePoint turns an index or RFC 3339 time into a log index no later
// than the current one; ok is false after an error response.
func (s *Server) resolvePoint(w http.ResponseWriter, name, v string) (uint64, bool) {
	idx, t, err := parsePoint(v)
	if err != nil {
		message(w, 400, name+" must be a log index or an RFC 3339 time")
		return 0, false
	}
	if idx == 0 {
		if idx, err = s.cfg.Store.IndexAt(t); err != nil {
			message(w, 500, "An unexpected error occurred")
			return 0, false
		}
	}
	if cur := s.cfg.Store.State().Index; idx > cur {
		message(w, 400, name+" is beyond the current log index "+strconv.FormatUint(cur, 10))
		return 0, false
	}
	return idx, true
}
