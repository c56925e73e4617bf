package admin

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/mux"

	"github.com/gatehouse-gw/gatehouse/fsm"
	"github.com/gatehouse-gw/gatehouse/log"
)

// deniedLimit bounds how many refused requests one node records per
// second: denials enter the replicated history, and a client hammering a
// forbidden endpoint must not be able to flood the log.
const deniedLimit = 20

type deniedBudget struct {
	mu     sync.Mutex
	second int64
	used   int
}

func (b *deniedBudget) take() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now().Unix()
	if now != b.second {
		b.second, b.used = now, 0
	}
	if b.used >= deniedLimit {
		return false
	}
	b.used++
	return true
}

// recordDenied appends a refused request to the history (best effort, in
// the background: the client has its 403 already).
func (s *Server) recordDenied(r *http.Request, p *principal) {
	if s.cfg.Cluster == nil || !s.denied.take() {
		return
	}
	source, reqID, node := s.origin(r)
	ev := &log.Event{Type: log.TypeDenied, Time: time.Now().UnixNano(), Actor: p.actor, Source: source,
		// The path is kept only in the (never shown) payload: it may hold
		// a credential, e.g. GET /key-auths/{key}.
		RequestID: reqID, Node: node, Op: p.perm.op, Entity: p.perm.entity,
		Payload: []byte(r.Method + " " + r.URL.Path + ": missing permission '" + p.perm.String() + "'")}
	data, err := log.Encode(ev)
	if err != nil {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.cfg.Cluster.AppendAnywhere(ctx, data); err != nil {
			slog.Warn("could not record a denied request", "err", err)
		}
	}()
}

// appendEvent serves POST /cluster/events: a follower handing the leader a
// record for the history. Only denial records are accepted here; every
// configuration change goes through the entity endpoints and the fold's
// checks.
func (s *Server) appendEvent(w http.ResponseWriter, r *http.Request) {
	data, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		message(w, 400, "unreadable body")
		return
	}
	ev, err := log.Decode(data)
	if err != nil || ev.Type != log.TypeDenied {
		message(w, 400, "only denial records may be appended here")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), commitTimeout)
	defer cancel()
	if _, err := s.cfg.Appender.Apply(ctx, data); err != nil {
		appendError(w, err)
		return
	}
	w.WriteHeader(204)
}

// auditFilter selects history records: a range given as indexes or
// RFC 3339 times, and exact matches on actor, entity, op and outcome.
type auditFilter struct {
	fromIndex, toIndex uint64
	fromTime, toTime   int64 // unix nanoseconds; 0 = open
	match              map[string]string
}

// parsePoint reads a point in the log: an index or an RFC 3339 time.
func parsePoint(v string) (index uint64, t int64, err error) {
	if n, err := strconv.ParseUint(v, 10, 64); err == nil {
		return n, 0, nil
	}
	tm, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return 0, 0, err
	}
	return 0, tm.UnixNano(), nil
}

func parseAuditFilter(q url.Values) (*auditFilter, error) {
	f := &auditFilter{fromIndex: 1, match: map[string]string{}}
	if v := q.Get("since"); v != "" {
		i, t, err := parsePoint(v)
		if err != nil {
			return nil, fmt.Errorf("since must be a log index or an RFC 3339 time")
		}
		if i > 0 {
			f.fromIndex = i
		}
		f.fromTime = t
	}
	if v := q.Get("until"); v != "" {
		i, t, err := parsePoint(v)
		if err != nil {
			return nil, fmt.Errorf("until must be a log index or an RFC 3339 time")
		}
		f.toIndex, f.toTime = i, t
	}
	for _, k := range []string{"actor", "entity_type", "entity_id", "op", "outcome"} {
		if v := q.Get(k); v != "" {
			f.match[k] = v
		}
	}
	return f, nil
}

func (f *auditFilter) keep(row *log.Row, t int64) bool {
	if f.fromTime != 0 && t < f.fromTime || f.toTime != 0 && t > f.toTime {
		return false
	}
	for k, v := range f.match {
		var got string
		switch k {
		case "actor":
			got = row.Actor
		case "entity_type":
			got = row.EntityType
		case "entity_id":
			got = row.EntityID
		case "op":
			got = row.Op
		case "outcome":
			got = row.Outcome
		}
		if got != v {
			return false
		}
	}
	return true
}

// signedRow is an audit row with this node's Ed25519 signature over its
// chain hash; the public keys are served at /audit/jwks.json.
type signedRow struct {
	log.Row
	Signature string `json:"signature,omitempty"`
	KeyID     string `json:"kid,omitempty"`
}

func (s *Server) sign(row log.Row) signedRow {
	out := signedRow{Row: row}
	if s.cfg.SigningKey != nil && row.Hash != "" {
		out.Signature = base64.RawURLEncoding.EncodeToString(ed25519.Sign(s.cfg.SigningKey, []byte(row.Hash)))
		out.KeyID = s.cfg.NodeID
	}
	return out
}

// jwks serves the cluster's audit signing keys: every member's public key,
// as registered in the replicated state.
func (s *Server) jwks(w http.ResponseWriter, r *http.Request) {
	keys := []any{}
	members := s.cfg.Store.State().Members()
	ids := make([]string, 0, len(members))
	for id := range members {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		if pk := members[id].PublicKey; pk != "" {
			keys = append(keys, map[string]any{"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig",
				"kid": id, "x": pk})
		}
	}
	writeJSON(w, 200, map[string]any{"keys": keys})
}

// auditEvents serves GET /audit/events: the node's permanent history
// (identical on every node), filtered by since/until (index or RFC 3339
// time), actor, entity_type, entity_id, op and outcome, size records a
// page (default 100, max 1000), with Kong-style offset/next.
func (s *Server) auditEvents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f, err := parseAuditFilter(q)
	if err != nil {
		message(w, 400, err.Error())
		return
	}
	size := 100
	if v := q.Get("size"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			message(w, 400, "size must be an integer between 1 and 1000")
			return
		}
		size = n
	}
	from := f.fromIndex
	if v := q.Get("offset"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			message(w, 400, "'"+v+"' is not a valid offset")
			return
		}
		from = n
	}
	data := make([]any, 0, min(size, 128))
	var next uint64
	err = s.cfg.Store.History().Range(from, f.toIndex, func(rec *log.Record) bool {
		row := log.RowOf(rec)
		if !f.keep(&row, rec.Event.Time) {
			return true
		}
		if len(data) == size {
			next = rec.Event.Index
			return false
		}
		data = append(data, s.sign(row))
		return true
	})
	if err != nil {
		message(w, 500, "An unexpected error occurred")
		return
	}
	resp := map[string]any{"data": data, "next": nil}
	if next != 0 {
		off := strconv.FormatUint(next, 10)
		resp["offset"] = off
		nq := url.Values{}
		for k, v := range q {
			if k != "offset" {
				nq[k] = v
			}
		}
		nq.Set("offset", off)
		resp["next"] = "/audit/events?" + nq.Encode()
	}
	writeJSON(w, 200, resp)
}

// auditEvent serves GET /audit/events/{index}.
func (s *Server) auditEvent(w http.ResponseWriter, r *http.Request) {
	i, err := strconv.ParseUint(mux.Vars(r)["index"], 10, 64)
	if err != nil {
		notFound(w)
		return
	}
	rec, err := s.cfg.Store.History().Get(i)
	if err != nil || rec == nil {
		notFound(w)
		return
	}
	writeJSON(w, 200, s.sign(log.RowOf(rec)))
}

// readState returns the state a read should see: the current one, or with
// ?at=INDEX|RFC3339 the configuration as it was then (time travel), in
// which case X-Gatehouse-Config-Index names that point. ok is false after
// an error response.
func (s *Server) readState(w http.ResponseWriter, r *http.Request) (*fsm.State, bool) {
	at := r.URL.Query().Get("at")
	if at == "" || r.Method != "GET" && r.Method != "HEAD" {
		return s.cfg.Store.State(), true
	}
	idx, ok := s.resolvePoint(w, "at", at)
	if !ok {
		return nil, false
	}
	st, err := s.cfg.Store.StateAt(idx)
	if err != nil {
		message(w, 500, "An unexpected error occurred")
		return nil, false
	}
	w.Header().Set("X-Gatehouse-Config-Index", strconv.FormatUint(idx, 10))
	return st, true
}

// restore serves POST /audit/restore {"at": INDEX|TIME}: the configuration
// goes back to what it was at that point, as ONE new event (a batch that
// deletes, re-creates and rewrites, with their ids, the entities that
// differ),
// so history stays linear, the restore is audited, and undoing it is a
// restore to the index just before it.
func (s *Server) restore(w http.ResponseWriter, r *http.Request) {
	var req struct {
		At json.RawMessage `json:"at"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil || len(req.At) == 0 {
		message(w, 400, `expected {"at": <log index or RFC 3339 time>}`)
		return
	}
	idx, ok := s.resolvePoint(w, "at", strings.Trim(string(req.At), `"`))
	if !ok {
		return
	}
	t0 := time.Now()
	cur := s.cfg.Store.State()
	past, err := s.cfg.Store.StateAt(idx)
	if err != nil {
		message(w, 500, "An unexpected error occurred")
		return
	}
	tPast := time.Since(t0)
	payload, n, err := s.cfg.Store.PlanRestore(cur, past)
	slog.Info("restore planned", "to", idx, "entities", n, "bytes", len(payload),
		"past_state", tPast.Round(time.Millisecond), "plan", (time.Since(t0) - tPast).Round(time.Millisecond))
	if err != nil {
		message(w, 500, "An unexpected error occurred")
		return
	}
	res, ok := s.appendRequestEvent(w, r, &log.Event{Type: log.TypeRestore, Op: "restore",
		Entity: "config", EntityID: strconv.FormatUint(idx, 10), Payload: payload})
	if !ok {
		return
	}
	slog.Info("restore applied", "to", idx, "index", res.Index, "took", time.Since(t0).Round(time.Millisecond))
	writeJSON(w, 200, map[string]any{"restored_to": idx, "index": res.Index, "entities": n})
}
