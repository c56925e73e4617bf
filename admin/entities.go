package admin

import (
	"context"
	"encoding/base64"
	"errors"
	"math"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/gatehouse-gw/gatehouse/admin/decode"
	"github.com/gatehouse-gw/gatehouse/fsm"
	"github.com/gatehouse-gw/gatehouse/log"
)

// collection describes one endpoint family: an entity kind, optionally
// nested under a parent (/services/{service}/routes).
type collection struct {
	kind   string
	path   string // URL path as Kong spells it ("/key-auths", "/services/{parent}/routes")
	parent *parentRef
}

type parentRef struct {
	kind, field string
}

func (s *Server) entityRoutes() {
	top := []struct{ kind, path string }{
		{fsm.Services, "/services"}, {fsm.Routes, "/routes"}, {fsm.Consumers, "/consumers"},
		{fsm.Plugins, "/plugins"}, {fsm.Upstreams, "/upstreams"}, {fsm.KeyAuths, "/key-auths"},
		{fsm.BasicAuths, "/basic-auths"}, {fsm.JWTSecrets, "/jwts"}, {fsm.Certificates, "/certificates"}, {fsm.SNIs, "/snis"},
		{fsm.CACertificates, "/ca_certificates"},
	}
	nested := []struct {
		parentPath, parentKind, field, kind, sub string
	}{
		{"/services", fsm.Services, "service", fsm.Routes, "routes"},
		{"/services", fsm.Services, "service", fsm.Plugins, "plugins"},
		{"/routes", fsm.Routes, "route", fsm.Plugins, "plugins"},
		{"/consumers", fsm.Consumers, "consumer", fsm.Plugins, "plugins"},
		{"/consumers", fsm.Consumers, "consumer", fsm.KeyAuths, "key-auth"},
		{"/consumers", fsm.Consumers, "consumer", fsm.BasicAuths, "basic-auth"},
		{"/consumers", fsm.Consumers, "consumer", fsm.JWTSecrets, "jwt"},
		{"/upstreams", fsm.Upstreams, "upstream", fsm.Targets, "targets"},
		{"/certificates", fsm.Certificates, "certificate", fsm.SNIs, "snis"},
	}
	r := s.router
	for _, n := range nested {
		c := &collection{kind: n.kind, path: n.parentPath + "/{parent}/" + n.sub,
			parent: &parentRef{kind: n.parentKind, field: n.field}}
		s.register(r, c)
	}
	for _, t := range top {
		s.register(r, &collection{kind: t.kind, path: t.path})
	}
	s.register(r, &collection{kind: fsm.Teams, path: "/rbac/teams"})
	s.register(r, &collection{kind: fsm.RBACRoles, path: "/rbac/roles"})
	admins := &collection{kind: fsm.Admins, path: "/rbac/admins"}
	r.HandleFunc("/rbac/admins/{key}/token", func(w http.ResponseWriter, req *http.Request) {
		s.rotateToken(w, req, admins)
	}).Methods("POST")
	s.register(r, admins)
	// Foreign-key shortcuts: /routes/{r}/service, /key-auths/{k}/consumer,
	// /plugins/{p}/{route,service,consumer}.
	s.foreignEndpoint("/routes/{id}/service", fsm.Routes, "service", fsm.Services)
	s.foreignEndpoint("/key-auths/{id}/consumer", fsm.KeyAuths, "consumer", fsm.Consumers)
	s.foreignEndpoint("/basic-auths/{id}/consumer", fsm.BasicAuths, "consumer", fsm.Consumers)
	s.foreignEndpoint("/jwts/{id}/consumer", fsm.JWTSecrets, "consumer", fsm.Consumers)
	for _, f := range []struct{ field, kind string }{{"route", fsm.Routes}, {"service", fsm.Services}, {"consumer", fsm.Consumers}} {
		s.foreignEndpoint("/plugins/{id}/"+f.field, fsm.Plugins, f.field, f.kind)
	}
}

func (s *Server) register(r *mux.Router, c *collection) {
	r.HandleFunc(c.path, func(w http.ResponseWriter, req *http.Request) { s.list(w, req, c) }).Methods("GET", "HEAD")
	r.HandleFunc(c.path, func(w http.ResponseWriter, req *http.Request) { s.write(w, req, c, log.OpCreate) }).Methods("POST")
	r.HandleFunc(c.path, options("GET, HEAD, OPTIONS, POST")).Methods("OPTIONS")
	r.HandleFunc(c.path, methodNotAllowed)
	item := c.path + "/{key}"
	r.HandleFunc(item, func(w http.ResponseWriter, req *http.Request) { s.get(w, req, c) }).Methods("GET", "HEAD")
	r.HandleFunc(item, func(w http.ResponseWriter, req *http.Request) { s.write(w, req, c, log.OpUpsert) }).Methods("PUT")
	r.HandleFunc(item, func(w http.ResponseWriter, req *http.Request) { s.write(w, req, c, log.OpUpdate) }).Methods("PATCH")
	r.HandleFunc(item, func(w http.ResponseWriter, req *http.Request) { s.write(w, req, c, log.OpDelete) }).Methods("DELETE")
	r.HandleFunc(item, options("DELETE, GET, HEAD, OPTIONS, PATCH, PUT")).Methods("OPTIONS")
	r.HandleFunc(item, methodNotAllowed)
}

func options(allow string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Allow", allow)
		h.Set("Access-Control-Allow-Methods", allow)
		h.Set("Access-Control-Allow-Headers", "Content-Type")
		w.WriteHeader(204)
	}
}

func methodNotAllowed(w http.ResponseWriter, r *http.Request) { message(w, 405, "Method not allowed") }

// resolveParent finds the parent named in the URL; ok is false after a 404
// has been written.
func (s *Server) resolveParent(w http.ResponseWriter, r *http.Request, st *fsm.State, c *collection) (*fsm.Entity, bool) {
	if c.parent == nil {
		return nil, true
	}
	p := st.Find(c.parent.kind, mux.Vars(r)["parent"])
	if p == nil {
		notFound(w)
		return nil, false
	}
	return p, true
}

func (s *Server) lookup(st *fsm.State, c *collection, parent *fsm.Entity, key string) *fsm.Entity {
	e := st.Find(c.kind, key)
	if e == nil && c.kind == fsm.Certificates && !fsm.IsUUID(key) {
		// GET /certificates/{sni name}: the certificate that SNI selects.
		if sni := st.FindUnique(fsm.SNIs, "name", key); sni != nil {
			e = st.Get(fsm.Certificates, refID(sni.Data(), "certificate"))
		}
	}
	if e == nil && c.kind == fsm.Targets && parent != nil {
		// Targets are unique per upstream, so their endpoint key only
		// makes sense within one.
		e = st.FindUnique(fsm.Targets, "target", parent.ID+"|"+key)
		if e == nil {
			e = st.FindUnique(fsm.Targets, "target", parent.ID+"|"+key+":8000")
		}
	}
	if e == nil || !visible(e) || parent != nil && refID(e.Data(), c.parent.field) != parent.ID {
		return nil
	}
	return e
}

// visible hides credentials whose TTL has run out: Kong deletes them, and
// the fold frees their keys at the next write that needs one.
func visible(e *fsm.Entity) bool {
	if ka, ok := e.View.(*fsm.KeyAuth); ok {
		return !ka.Expired(time.Now().Unix())
	}
	return true
}

// render returns the JSON shape of e; a credential's ttl is shown as the
// seconds it has left, as Kong does.
func render(st *fsm.State, e *fsm.Entity) map[string]any {
	if shownAsStored(e) {
		return e.Data()
	}
	copyData := func() map[string]any {
		d := e.Data()
		out := make(map[string]any, len(d))
		for k, v := range d {
			out[k] = v
		}
		return out
	}
	switch v := e.View.(type) {
	case *fsm.KeyAuth:
		out := copyData()
		// Whole seconds left, rounded down as Kong's databases do: a
		// credential read right after it was created with ttl 10 has 9
		// left.
		left := float64(v.ExpiresAt) - float64(time.Now().UnixNano())/1e9
		out["ttl"] = max(int64(math.Floor(left)), 0)
		return out
	case *fsm.Admin:
		out := copyData()
		delete(out, "token_hash") // never shown, even hashed
		return out
	case *fsm.Certificate:
		// Kong shows a certificate's SNIs as a list of names on it.
		out := copyData()
		out["snis"] = st.SNINames(e.ID)
		return out
	}
	return e.Data()
}

// shownAsStored reports whether render shows e's Data as it is: all but
// expiring keys (their ttl left), admins (no token hash) and
// certificates (their SNIs).
func shownAsStored(e *fsm.Entity) bool {
	switch v := e.View.(type) {
	case *fsm.KeyAuth:
		return v.ExpiresAt == 0
	case *fsm.Admin, *fsm.Certificate:
		return false
	}
	return true
}

// appendRendered appends render(st, e)'s JSON, for most entities written
// from the entity's encoding without a map.
func appendRendered(b []byte, st *fsm.State, e *fsm.Entity) ([]byte, error) {
	if shownAsStored(e) {
		return e.AppendJSON(b)
	}
	return log.AppendJSON(b, render(st, e))
}

func refID(d map[string]any, f string) string {
	m, _ := d[f].(map[string]any)
	id, _ := m["id"].(string)
	return id
}

func (s *Server) get(w http.ResponseWriter, r *http.Request, c *collection) {
	st, ok := s.readState(w, r)
	if !ok {
		return
	}
	parent, ok := s.resolveParent(w, r, st, c)
	if !ok {
		return
	}
	key := mux.Vars(r)["key"]
	if c.kind == fsm.Targets && key == "all" {
		s.list(w, r, c)
		return
	}
	e := s.lookup(st, c, parent, key)
	if e == nil {
		notFound(w)
		return
	}
	if !entityAllowed(st, r, e.Data()) {
		s.forbidden(w, r)
		return
	}
	writeJSON(w, 200, render(st, e))
}

// list serves a collection with Kong's pagination and tag filtering.
func (s *Server) list(w http.ResponseWriter, r *http.Request, c *collection) {
	st, ok := s.readState(w, r)
	if !ok {
		return
	}
	parent, ok := s.resolveParent(w, r, st, c)
	if !ok {
		return
	}
	q := r.URL.Query()
	size := 100
	if v, ok := q["size"]; ok {
		n, err := strconv.Atoi(v[0])
		if err != nil {
			if _, ferr := strconv.ParseFloat(v[0], 64); ferr != nil {
				writeError(w, &fsm.Error{Status: 400, Code: 9, Name: "invalid size", Message: "size must be a number"})
				return
			}
			n = -1
		}
		if n < 1 || n > 1000 {
			writeError(w, &fsm.Error{Status: 400, Code: 9, Name: "invalid size", Message: "size must be an integer between 1 and 1000"})
			return
		}
		size = n
	}
	after := ""
	if v := q.Get("offset"); v != "" {
		b, err := base64.StdEncoding.DecodeString(v)
		if err != nil {
			writeError(w, &fsm.Error{Status: 400, Code: 7, Name: "invalid offset",
				Message: "'" + v + "' is not a valid offset: bad base64 encoding"})
			return
		}
		after = string(b)
	}
	var filter func(*fsm.Entity) bool
	tags := q["tags"]
	if len(tags) > 0 && c.parent == nil {
		f, ferr := tagFilter(tags[0])
		if ferr != nil {
			writeError(w, ferr)
			return
		}
		filter = f
	}
	if c.kind == fsm.Consumers {
		if v, ok := q["custom_id"]; ok {
			if v[0] == "" {
				message(w, 400, "custom_id must be an unempty string")
				return
			}
			var data []any
			if e := st.FindUnique(fsm.Consumers, "custom_id", v[0]); e != nil {
				data = append(data, e.Data())
			}
			writeJSON(w, 200, map[string]any{"data": nonNil(data), "next": nil})
			return
		}
	}

	data := make([]any, 0, min(size, 64))
	last, more := "", false
	visit := func(e *fsm.Entity) bool {
		if e.ID <= after {
			return true
		}
		if filter != nil && !filter(e) || !visible(e) || !entityAllowed(st, r, e.Data()) {
			return true
		}
		if len(data) == size {
			more = true
			return false
		}
		data = append(data, render(st, e))
		last = e.ID
		return true
	}
	if parent != nil {
		st.Children(c.parent.kind, parent.ID, c.kind, visit)
	} else {
		st.Walk(c.kind, after, visit)
	}
	resp := map[string]any{"data": data, "next": nil}
	if more {
		off := base64.StdEncoding.EncodeToString([]byte(last))
		resp["offset"] = off
		next := r.URL.Path + "?offset=" + url.QueryEscape(off)
		if c.parent == nil {
			if _, ok := q["size"]; ok {
				next += "&size=" + strconv.Itoa(size)
			}
			if len(tags) > 0 {
				next += "&tags=" + url.QueryEscape(tags[0])
			}
		}
		resp["next"] = next
	}
	writeJSON(w, 200, resp)
}

func nonNil(l []any) []any {
	if l == nil {
		return []any{}
	}
	return l
}

// tagFilter parses Kong's tag expression: "a,b" means all, "a/b" any.
func tagFilter(expr string) (func(*fsm.Entity) bool, *fsm.Error) {
	invalid := func(msg string) *fsm.Error {
		return &fsm.Error{Status: 400, Code: 11, Name: "invalid options",
			Message: "invalid option (tags: " + msg + ")", Fields: map[string]any{"tags": msg}}
	}
	if expr == "" {
		return nil, invalid("cannot be null")
	}
	and, or := strings.Contains(expr, ","), strings.Contains(expr, "/")
	if and && or {
		return nil, invalid("invalid filter syntax")
	}
	sep, all := ",", true
	if or {
		sep, all = "/", false
	}
	list := strings.Split(expr, sep)
	if len(list) > 5 {
		return nil, invalid("cannot query more than 5 tags")
	}
	for _, t := range list {
		if t == "" {
			return nil, invalid("invalid filter syntax")
		}
	}
	return func(e *fsm.Entity) bool {
		for _, t := range list {
			has := e.HasTag(t)
			if all && !has {
				return false
			}
			if !all && has {
				return true
			}
		}
		return all
	}, nil
}

// readBody decodes the request body into a JSON-shaped map; form and
// multipart values are type-inferred against the schema of kind. ok is
// false after an error response has been written.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, kind string, existing *fsm.Entity) (map[string]any, bool) {
	ct := r.Header.Get("Content-Type")
	body, err := decode.Body(ct, http.MaxBytesReader(w, r.Body, s.cfg.MaxBody), s.cfg.MaxBody)
	if err != nil {
		var mbe *http.MaxBytesError
		switch {
		case errors.Is(err, decode.ErrTooLarge) || errors.As(err, &mbe):
			message(w, 413, "request body too large")
		case errors.Is(err, decode.ErrUnsupported):
			message(w, 415, "Unsupported Content-Type")
		case errors.Is(err, decode.ErrTooManyArgs):
			message(w, 400, "Too many arguments")
		case errors.Is(err, decode.ErrBadJSON):
			message(w, 400, "Cannot parse JSON body")
		default:
			message(w, 400, err.Error())
		}
		return nil, false
	}
	mt, _, _ := mime.ParseMediaType(ct)
	if mt == "application/x-www-form-urlencoded" || mt == "multipart/form-data" {
		body = s.infer(kind, body, existing)
	}
	return body, true
}

// infer applies form type inference, including a plugin's config schema
// (found from the body's name or, for PATCH, the stored plugin).
func (s *Server) infer(kind string, body map[string]any, existing *fsm.Entity) map[string]any {
	body = fsm.Schemas[kind].Infer(body)
	if kind != fsm.Plugins {
		return body
	}
	name, _ := body["name"].(string)
	if name == "" && existing != nil {
		name, _ = existing.Data()["name"].(string)
	}
	cfg, ok := body["config"].(map[string]any)
	if !ok || s.cfg.Plugins == nil {
		return body
	}
	if d, found := s.cfg.Plugins.Get(name); found {
		body["config"] = d.Config.Infer(cfg)
	}
	return body
}

// write turns a POST, PUT, PATCH or DELETE into a command, checks it
// against the current state, appends it, and answers with the result.
func (s *Server) write(w http.ResponseWriter, r *http.Request, c *collection, op string) {
	st := s.cfg.Store.State()
	parent, ok := s.resolveParent(w, r, st, c)
	if !ok {
		return
	}
	key := mux.Vars(r)["key"]
	urlKey := key
	var existing *fsm.Entity
	if op != log.OpCreate {
		existing = s.lookup(st, c, parent, key)
		if existing != nil {
			key = existing.ID
		}
	}
	if op == log.OpDelete {
		if existing == nil {
			w.WriteHeader(204) // Kong: deleting what is not there succeeds
			return
		}
	} else if op == log.OpUpdate && existing == nil {
		notFound(w)
		return
	}
	if existing != nil && !entityAllowed(st, r, existing.Data()) {
		s.forbidden(w, r)
		return
	}
	var body map[string]any
	if op != log.OpDelete {
		if body, ok = s.readBody(w, r, c.kind, existing); !ok {
			return
		}
		// A tag-scoped admin may only leave entities carrying its tags:
		// the tags after the write must qualify too.
		after := body
		if _, has := body["tags"]; !has && existing != nil {
			after = existing.Data()
		}
		if !entityAllowed(st, r, after) {
			s.forbidden(w, r)
			return
		}
		// Kong generates a key for a credential created without one (but a
		// PUT to /key-auth/{key} names it in the URL).
		if c.kind == fsm.KeyAuths && (op == log.OpCreate || op == log.OpUpsert && fsm.IsUUID(urlKey)) {
			if _, has := body["key"]; !has {
				body["key"] = randomKey()
			}
		}
		// And a jwt credential gets a key and a secret (chosen here, so
		// every node folds the same ones).
		if c.kind == fsm.JWTSecrets && (op == log.OpCreate || op == log.OpUpsert && existing == nil) {
			for _, f := range []string{"key", "secret"} {
				if v, has := body[f]; !has || v == nil {
					body[f] = randomKey()
				}
			}
		}
	}
	cmd := &fsm.Command{Op: op, Kind: c.kind, Key: key, NewID: NewUUID(), Body: body}
	if op == log.OpUpsert && !fsm.IsUUID(urlKey) {
		cmd.Named = urlKey
	}
	if c.parent != nil {
		cmd.Parent = &fsm.Parent{Kind: c.parent.kind, Key: parent.ID, Field: c.parent.field}
	}
	status := 200
	if op == log.OpCreate {
		status = 201
	}
	if c.kind == fsm.Admins && op != log.OpDelete {
		// Clients never set token hashes; a new admin gets a new token,
		// shown in this response only.
		delete(body, "token_hash")
		switch {
		case op == log.OpCreate || op == log.OpUpsert && existing == nil:
			token := randomKey()
			body["token_hash"] = HashToken(token)
			s.commitReveal(w, r, st, cmd, status, token)
			return
		case op == log.OpUpsert:
			body["token_hash"] = existing.Data()["token_hash"]
		}
	}
	s.commit(w, r, st, cmd, status)
}

// appendRequestEvent stamps ev with the request's actor and origin,
// appends it and waits for it to apply. Failures, including the fold's
// rejection, are answered here; ok is false when a response was written.
func (s *Server) appendRequestEvent(w http.ResponseWriter, r *http.Request, ev *log.Event) (*fsm.Result, bool) {
	source, reqID, node := s.origin(r)
	ev.Actor, ev.Source, ev.RequestID, ev.Node = actorOf(r), source, reqID, node
	if ev.Time == 0 {
		ev.Time = time.Now().UnixNano()
	}
	w.Header().Set(hdrRequestID, reqID)
	data, err := log.Encode(ev)
	if err != nil {
		message(w, 500, "An unexpected error occurred")
		return nil, false
	}
	ctx, cancel := context.WithTimeout(r.Context(), commitBound(r.URL.Path))
	defer cancel()
	res, err := s.cfg.Appender.Apply(ctx, data)
	if err != nil {
		appendError(w, err)
		return nil, false
	}
	w.Header().Set("X-Gatehouse-Config-Index", strconv.FormatUint(res.Index, 10))
	if res.Err != nil {
		writeError(w, res.Err)
		return nil, false
	}
	return res, true
}

// commitTimeout bounds how long a write waits for its event to commit.
const commitTimeout = 8 * time.Second

// bulkCommitTimeout is commitTimeout for the writes that replace much of
// the configuration at once (a declarative document, a point-in-time
// restore): applying 50,000 entities on every node takes seconds, and a
// 503 for a change that then applies anyway is the worst answer.
const bulkCommitTimeout = 60 * time.Second

func commitBound(path string) time.Duration {
	switch path {
	case "/config", "/audit/restore", "/cluster/restore":
		return bulkCommitTimeout
	}
	return commitTimeout
}

// commit validates cmd against st, appends it as one event and writes the
// response.
func (s *Server) commit(w http.ResponseWriter, r *http.Request, st *fsm.State, cmd *fsm.Command, status int) {
	s.commitReveal(w, r, st, cmd, status, "")
}

// commitReveal is commit for a write that creates an admin token: the
// plaintext token goes to this one response and nowhere else.
func (s *Server) commitReveal(w http.ResponseWriter, r *http.Request, st *fsm.State, cmd *fsm.Command, status int, token string) {
	now := time.Now().UnixNano()
	if ferr := s.cfg.Store.Fold().Check(st, now, cmd); ferr != nil {
		writeError(w, ferr)
		return
	}
	payload, err := fsm.EncodeCommand(cmd)
	if err != nil {
		message(w, 500, "An unexpected error occurred")
		return
	}
	ev := &log.Event{Type: log.TypeEntity, Time: now, Op: cmd.Op, Entity: cmd.Kind, EntityID: cmd.Key, Payload: payload}
	if cmd.Op == log.OpCreate || !fsm.IsUUID(cmd.Key) {
		// A non-UUID key in the URL may be a secret (PUT
		// /consumers/c/key-auth/{key}); the event names the entity by the
		// id the fold gives it instead.
		ev.EntityID = cmd.NewID
	}
	res, ok := s.appendRequestEvent(w, r, ev)
	if !ok {
		return
	}
	if cmd.Op == log.OpDelete || res.Entity == nil {
		w.WriteHeader(204)
		return
	}
	out := render(s.cfg.Store.State(), res.Entity)
	if token != "" {
		out["token"] = token
	}
	writeJSON(w, status, out)
}

// foreignEndpoint serves /child/{id}/field: the entity a foreign key points
// at. Kong allows GET, PUT and PATCH on it; DELETE is 405.
func (s *Server) foreignEndpoint(path, kind, field, target string) {
	s.router.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
		st := s.cfg.Store.State()
		e := st.Find(kind, mux.Vars(r)["id"])
		if e == nil {
			notFound(w)
			return
		}
		id := refID(e.Data(), field)
		t := st.Get(target, id)
		if t == nil {
			notFound(w)
			return
		}
		if !entityAllowed(st, r, t.Data()) {
			s.forbidden(w, r)
			return
		}
		switch r.Method {
		case "GET", "HEAD":
			writeJSON(w, 200, t.Data())
		case "PATCH", "PUT":
			op := log.OpUpdate
			if r.Method == "PUT" {
				op = log.OpUpsert
			}
			body, ok := s.readBody(w, r, target, t)
			if !ok {
				return
			}
			s.commit(w, r, st, &fsm.Command{Op: op, Kind: target, Key: t.ID, NewID: NewUUID(), Body: body}, 200)
		default:
			methodNotAllowed(w, r)
		}
	})
}

// validate serves POST /schemas/{entity}/validate: the checks a create
// would run, without appending anything.
func (s *Server) validate(w http.ResponseWriter, r *http.Request, kind string) {
	body, ok := s.readBody(w, r, kind, nil)
	if !ok {
		return
	}
	if kind == fsm.KeyAuths {
		if _, has := body["key"]; !has {
			body["key"] = randomKey()
		}
	}
	cmd := &fsm.Command{Op: log.OpCreate, Kind: kind, NewID: NewUUID(), Body: body}
	st := s.cfg.Store.State()
	if ferr := s.cfg.Store.Fold().Check(st, time.Now().UnixNano(), cmd); ferr != nil {
		// References to entities that do not exist yet are fine for a
		// schema validation (decK validates files before syncing).
		if ferr.Code != 4 && ferr.Code != 13 {
			writeError(w, ferr)
			return
		}
	}
	writeJSON(w, 200, map[string]any{"message": "schema validation successful"})
}

// rotateToken issues a new token for an admin; the old one stops working
// as soon as the event is applied.
func (s *Server) rotateToken(w http.ResponseWriter, r *http.Request, c *collection) {
	st := s.cfg.Store.State()
	e := s.lookup(st, c, nil, mux.Vars(r)["key"])
	if e == nil {
		notFound(w)
		return
	}
	token := randomKey()
	cmd := &fsm.Command{Op: log.OpUpdate, Kind: fsm.Admins, Key: e.ID, NewID: NewUUID(),
		Body: map[string]any{"token_hash": HashToken(token)}}
	s.commitReveal(w, r, st, cmd, 200, token)
}
