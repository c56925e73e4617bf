package admin

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

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
		RequestID: reqID, Node: node, Op: p.perm.op, Entity: p.perm.entity, EntityID: r.URL.Path,
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

// auditEvents serves GET /audit/events: the node's permanent history from
// ?since=INDEX (default 1), ?size=N records (default 100, max 1000), with
// Kong-style pagination. Every node holds the same history.
func (s *Server) auditEvents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	since, size := uint64(1), 100
	if v := q.Get("since"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			message(w, 400, "since must be a log index")
			return
		}
		since = n
	}
	if v := q.Get("size"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			message(w, 400, "size must be an integer between 1 and 1000")
			return
		}
		size = n
	}
	h := s.cfg.Store.History()
	data := make([]any, 0, size)
	var next uint64
	err := h.Range(since, 0, func(rec *log.Record) bool {
		if len(data) == size {
			next = rec.Event.Index
			return false
		}
		e := rec.Event
		data = append(data, map[string]any{
			"index": e.Index, "time": time.Unix(0, e.Time).UTC().Format(time.RFC3339Nano), "actor": e.Actor,
			"source": e.Source, "request_id": e.RequestID, "node": e.Node, "op": e.Op,
			"entity_type": e.Entity, "entity_id": e.EntityID, "outcome": rec.Outcome, "error": nullable(rec.Error),
		})
		return true
	})
	if err != nil {
		message(w, 500, "An unexpected error occurred")
		return
	}
	resp := map[string]any{"data": data, "next": nil}
	if next != 0 {
		resp["offset"] = strconv.FormatUint(next, 10)
		resp["next"] = "/audit/events?since=" + strconv.FormatUint(next, 10) + "&size=" + strconv.Itoa(size)
	}
	writeJSON(w, 200, resp)
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}
