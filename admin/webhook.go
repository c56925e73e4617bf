package admin

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/gatehouse-gw/gatehouse/fsm"
	"github.com/gatehouse-gw/gatehouse/log"
)

// The audit webhook sink: the leader posts every committed event to one
// destination, in order, in batches, at least once. How far it got (the
// cursor) is itself a replicated event, so a restarted node or a new
// leader resumes from there: nothing is skipped, and a batch whose
// acknowledgement was lost is sent again.

// webhookSettings serves GET, PUT and DELETE /audit/webhook.
func (s *Server) webhookSettings(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case "GET", "HEAD":
		writeJSON(w, 200, s.cfg.Store.State().Webhook())
		return
	case "DELETE":
		s.appendWebhook(w, r, log.TypeWebhook, fsm.Webhook{}, 204)
		return
	}
	var req fsm.Webhook
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
		message(w, 400, `expected {"url": "...", "batch_size": N}`)
		return
	}
	if u, err := url.Parse(req.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		message(w, 400, "url must be an http or https URL")
		return
	}
	if req.BatchSize <= 0 {
		req.BatchSize = 100
	}
	if req.BatchSize > 1000 {
		message(w, 400, "batch_size must be between 1 and 1000")
		return
	}
	s.appendWebhook(w, r, log.TypeWebhook, req, 200)
}

func (s *Server) appendWebhook(w http.ResponseWriter, r *http.Request, t log.Type, wh fsm.Webhook, status int) {
	payload, _ := fsm.EncodeWebhook(wh)
	if _, ok := s.appendRequestEvent(w, r, &log.Event{Type: t, Op: "update", Entity: "audit_webhook", Payload: payload}); !ok {
		return
	}
	if status == 204 {
		w.WriteHeader(204)
		return
	}
	writeJSON(w, status, s.cfg.Store.State().Webhook())
}

// DeliverWebhook runs the sink until ctx ends. Only the leader delivers;
// on other nodes the loop idles. Failed posts back off exponentially up to
// 30 s.
func (s *Server) DeliverWebhook(ctx context.Context) {
	client := &http.Client{Timeout: 10 * time.Second}
	backoff := time.Duration(0)
	for {
		wait := 200 * time.Millisecond
		if backoff > 0 {
			wait = backoff
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		if s.cfg.Cluster == nil || !s.cfg.Cluster.IsLeader() {
			continue
		}
		wh := s.cfg.Store.State().Webhook()
		if wh.URL == "" {
			continue
		}
		rows, last, err := s.rows(wh.Cursor+1, 0, wh.BatchSize, true)
		if err != nil || len(rows) == 0 {
			continue
		}
		if err := postEvents(ctx, client, wh.URL, map[string]any{"events": rows}); err != nil {
			backoff = min(max(2*backoff, 250*time.Millisecond), 30*time.Second)
			slog.Warn("audit webhook delivery failed", "url", wh.URL, "err", err)
			continue
		}
		backoff = 0
		if err := s.advanceCursor(ctx, last); err != nil {
			slog.Warn("audit webhook cursor not recorded; the batch will be sent again", "err", err)
		}
	}
}

func (s *Server) advanceCursor(ctx context.Context, last uint64) error {
	payload, _ := fsm.EncodeWebhook(fsm.Webhook{Cursor: last})
	data, err := log.Encode(&log.Event{Type: log.TypeCursor, Time: time.Now().UnixNano(), Actor: "webhook",
		Node: s.cfg.NodeID, Op: "deliver", Entity: "audit_webhook", EntityID: strconv.FormatUint(last, 10), Payload: payload})
	if err != nil {
		return err
	}
	actx, cancel := context.WithTimeout(ctx, commitTimeout)
	defer cancel()
	_, err = s.cfg.Appender.Apply(actx, data)
	return err
}
