// Package httplog is Kong's http-log plugin: every request, serialized as
// Kong's log serializer does, is sent as JSON to an HTTP endpoint, in
// batches, retried with backoff, off the request path.
package httplog

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse-gw/gatehouse/fsm"
	"github.com/gatehouse-gw/gatehouse/fsm/schema"
	"github.com/gatehouse-gw/gatehouse/plugins"
)

// Queues are shared by every instance with the same destination and queue
// settings (as Kong shares them), and outlive the recompiles each config
// change makes.
type Queues struct {
	mu     sync.Mutex
	queues map[string]*queue
}

// NewQueues returns an empty set of queues.
func NewQueues() *Queues { return &Queues{queues: map[string]*queue{}} }

// Definition returns the plugin definition delivering through qs.
func Definition(qs *Queues) *plugins.Definition {
	gt0 := 0.0
	return &plugins.Definition{
		Name: "http-log", Priority: 12, Version: "3.9.1",
		Config: &schema.Schema{Name: "http-log", Fields: []*schema.Field{
			{Name: "http_endpoint", Type: schema.String, Required: true, Check: checkEndpoint},
			plugins.Str("method", "POST", "POST", "PUT", "PATCH"),
			plugins.Str("content_type", "application/json", "application/json", "application/json; charset=utf-8"),
			{Name: "timeout", Type: schema.Number, Default: 10000.0},
			{Name: "keepalive", Type: schema.Number, Default: 60000.0},
			// Kong 2.x's queue settings, kept as Kong keeps them (unused
			// when queue is set, which it always is here).
			plugins.Int("retry_count", nil),
			plugins.Int("queue_size", nil),
			plugins.Num("flush_timeout", nil),
			{Name: "headers", Type: schema.Map, Keys: &schema.Field{Type: schema.String},
				Values: &schema.Field{Type: schema.String}},
			{Name: "queue", Type: schema.Record, Fields: []*schema.Field{
				{Name: "max_batch_size", Type: schema.Integer, Default: 1.0, Between: &[2]float64{1, 1000000}},
				{Name: "max_coalescing_delay", Type: schema.Number, Default: 1.0, Between: &[2]float64{0, 3600}},
				{Name: "max_entries", Type: schema.Integer, Default: 10000.0, Between: &[2]float64{1, 1000000}},
				plugins.Int("max_bytes", nil),
				{Name: "max_retry_time", Type: schema.Number, Default: 60.0},
				{Name: "initial_retry_delay", Type: schema.Number, Default: 0.01, Gt: &gt0},
				{Name: "max_retry_delay", Type: schema.Number, Default: 60.0, Gt: &gt0},
				plugins.Str("concurrency_limit", nil),
			}},
			{Name: "custom_fields_by_lua", Type: schema.Map, Keys: &schema.Field{Type: schema.String},
				Values: &schema.Field{Type: schema.String}},
		}},
		Compile: func(c map[string]any) (plugins.Handler, schema.Errors) { return compile(qs, c) },
	}
}

func checkEndpoint(v any) string {
	u, err := url.Parse(v.(string))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "missing host in url"
	}
	return ""
}

type settings struct {
	endpoint, method, contentType string
	headers                       [][2]string
	timeout                       time.Duration
	batch, maxEntries             int
	coalesce, maxRetry            time.Duration
	retryDelay, maxRetryDelay     time.Duration
}

func compile(qs *Queues, c map[string]any) (plugins.Handler, schema.Errors) {
	if m, _ := c["custom_fields_by_lua"].(map[string]any); len(m) > 0 {
		return nil, schema.Errors{"custom_fields_by_lua": "Lua code is not supported by Gatehouse"}
	}
	q, _ := c["queue"].(map[string]any)
	num := func(m map[string]any, k string) float64 { f, _ := m[k].(float64); return f }
	secs := func(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }
	s := settings{endpoint: plugins.String(c, "http_endpoint"), method: plugins.String(c, "method"),
		contentType: plugins.String(c, "content_type"), timeout: time.Duration(num(c, "timeout")) * time.Millisecond,
		batch: int(num(q, "max_batch_size")), maxEntries: int(num(q, "max_entries")),
		coalesce: secs(num(q, "max_coalescing_delay")), maxRetry: secs(num(q, "max_retry_time")),
		retryDelay: secs(num(q, "initial_retry_delay")), maxRetryDelay: secs(num(q, "max_retry_delay"))}
	if h, _ := c["headers"].(map[string]any); h != nil {
		for k, v := range h {
			s.headers = append(s.headers, [2]string{k, fmt.Sprint(v)})
		}
		sort.Slice(s.headers, func(i, j int) bool { return s.headers[i][0] < s.headers[j][0] })
	}
	return &handler{q: qs.get(s)}, nil
}

func (qs *Queues) get(s settings) *queue {
	key := fmt.Sprintf("%+v", s)
	qs.mu.Lock()
	defer qs.mu.Unlock()
	q := qs.queues[key]
	if q == nil {
		q = &queue{s: s, client: &http.Client{Timeout: s.timeout}, wake: make(chan struct{}, 1)}
		qs.queues[key] = q
	}
	return q
}

type handler struct{ q *queue }

var (
	_ plugins.Accessor = (*handler)(nil)
	_ plugins.Logger   = (*handler)(nil)
)

// request is what the serializer shows of the request as the client sent
// it, captured before the proxy rewrites it for the upstream.
type request struct {
	method, uri, url string
	size             int
	headers          map[string]any
	query            map[string]any
}

// Access captures the request as received.
func (h *handler) Access(ctx *plugins.Context) { ctx.Set(h, captureRequest(ctx)) }

func captureRequest(ctx *plugins.Context) *request {
	r := ctx.Req
	rq := &request{method: r.Method(), headers: map[string]any{}, query: map[string]any{}, size: len(r.Body())}
	r.VisitHeaders(func(k, v string) {
		k = strings.ToLower(k)
		if k == "authorization" || k == "proxy-authorization" {
			v = "REDACTED" // as Kong's serializer does
		}
		addValue(rq.headers, k, v)
		rq.size += len(k) + len(v) + 4
	})
	qs := url.Values{}
	r.VisitQuery(func(k, v string) { addValue(rq.query, k, v); qs.Add(k, v) })
	rq.uri = r.Path()
	if len(qs) > 0 {
		rq.uri += "?" + qs.Encode()
	}
	scheme := "http"
	if ctx.TLS {
		scheme = "https"
	}
	rq.url = scheme + "://" + r.Host() + rq.uri
	return rq
}

// addValue adds a header or query value, a repeated name becoming a list
// (Kong's shape).
func addValue(m map[string]any, k, v string) {
	switch old := m[k].(type) {
	case nil:
		m[k] = v
	case string:
		m[k] = []any{old, v}
	case []any:
		m[k] = append(old, v)
	}
}

// Log serializes the request and queues it.
func (h *handler) Log(ctx *plugins.Context) {
	rq, _ := ctx.Get(h).(*request)
	if rq == nil {
		rq = captureRequest(ctx) // a plugin before this one answered
	}
	entry, err := json.Marshal(serialize(ctx, rq))
	if err != nil {
		return
	}
	h.q.push(entry)
}

// serialize builds Kong's basic log entry.
func serialize(ctx *plugins.Context, rq *request) map[string]any {
	total := time.Since(ctx.Start)
	resp := map[string]any{"status": 0, "size": 0, "headers": map[string]any{}}
	if ctx.Resp != nil {
		headers := map[string]any{}
		size := len(ctx.Resp.Body())
		ctx.Resp.VisitHeaders(func(k, v string) {
			addValue(headers, strings.ToLower(k), v)
			size += len(k) + len(v) + 4
		})
		resp = map[string]any{"status": ctx.Resp.Status(), "size": size, "headers": headers}
	}
	source := "kong"
	if ctx.Source == "service" {
		source = "upstream"
	}
	e := map[string]any{
		"request": map[string]any{"method": rq.method, "uri": rq.uri, "url": rq.url, "size": rq.size,
			"headers": rq.headers, "querystring": rq.query},
		"response": resp,
		"latencies": map[string]any{"request": total.Milliseconds(), "proxy": ctx.Upstream.Milliseconds(),
			"kong": (total - ctx.Upstream).Milliseconds(), "receive": 0},
		"client_ip":      ctx.Req.ClientIP(),
		"started_at":     ctx.Start.UnixMilli(),
		"source":         source,
		"workspace_name": "default",
	}
	if ctx.State != nil {
		if ctx.Service != nil {
			if se := ctx.State.Get(fsm.Services, ctx.Service.ID); se != nil {
				e["service"] = se.Data()
			}
		}
		if ctx.Route != nil {
			if re := ctx.State.Get(fsm.Routes, ctx.Route.ID); re != nil {
				e["route"] = re.Data()
			}
		}
		if ctx.Consumer != nil {
			if ce := ctx.ConsumerEntity(ctx.Consumer.ID); ce != nil {
				e["consumer"] = ce.Data()
			}
		}
	}
	if ctx.CredentialID != "" {
		e["authenticated_entity"] = map[string]any{"id": ctx.CredentialID}
	}
	if ctx.Source == "service" && ctx.Resp != nil {
		e["upstream_status"] = fmt.Sprint(ctx.Resp.Status())
	}
	return e
}

// queue holds the entries for one destination and sends them from one
// goroutine, which runs while there is something to send.
type queue struct {
	s       settings
	client  *http.Client
	mu      sync.Mutex
	entries [][]byte
	running bool
	dropped int
	wake    chan struct{}
}

func (q *queue) push(entry []byte) {
	q.mu.Lock()
	if len(q.entries) >= q.s.maxEntries {
		// Full: the oldest entry goes, as in Kong's queue.
		q.entries = q.entries[1:]
		q.dropped++
		if q.dropped == 1 || q.dropped%1000 == 0 {
			slog.Warn("http-log queue full, dropping the oldest entries", "endpoint", q.s.endpoint, "dropped", q.dropped)
		}
	}
	q.entries = append(q.entries, entry)
	start := !q.running
	q.running = true
	q.mu.Unlock()
	if start {
		go q.run()
	}
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// run sends batches until the queue has been empty for a while.
func (q *queue) run() {
	idle := time.NewTimer(time.Minute)
	defer idle.Stop()
	for {
		q.mu.Lock()
		n := len(q.entries)
		q.mu.Unlock()
		if n == 0 {
			select {
			case <-q.wake:
				continue
			case <-idle.C:
				q.mu.Lock()
				if len(q.entries) == 0 {
					q.running = false
					q.mu.Unlock()
					return
				}
				q.mu.Unlock()
				continue
			}
		}
		if n < q.s.batch {
			// Wait up to the coalescing delay for a fuller batch.
			deadline := time.NewTimer(q.s.coalesce)
		wait:
			for {
				select {
				case <-q.wake:
					q.mu.Lock()
					full := len(q.entries) >= q.s.batch
					q.mu.Unlock()
					if full {
						break wait
					}
				case <-deadline.C:
					break wait
				}
			}
			deadline.Stop()
		}
		q.mu.Lock()
		k := min(len(q.entries), q.s.batch)
		batch := q.entries[:k:k]
		q.entries = q.entries[k:]
		q.mu.Unlock()
		q.deliver(batch)
		idle.Reset(time.Minute)
	}
}

// deliver sends one batch, retrying with exponential backoff until
// max_retry_time has passed.
func (q *queue) deliver(batch [][]byte) {
	var body []byte
	if q.s.batch == 1 {
		body = batch[0]
	} else {
		body = append([]byte{'['}, bytes.Join(batch, []byte{','})...)
		body = append(body, ']')
	}
	start, delay := time.Now(), q.s.retryDelay
	for attempt := 1; ; attempt++ {
		err := q.send(body)
		if err == nil {
			return
		}
		if time.Since(start)+delay > q.s.maxRetry {
			slog.Warn("http-log batch dropped", "endpoint", q.s.endpoint, "entries", len(batch), "attempts", attempt, "err", err)
			return
		}
		time.Sleep(delay)
		delay = min(2*delay, q.s.maxRetryDelay)
	}
}

func (q *queue) send(body []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), q.s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, q.s.method, q.s.endpoint, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", q.s.contentType)
	if u, _ := url.Parse(q.s.endpoint); u != nil && u.User != nil {
		pw, _ := u.User.Password()
		req.SetBasicAuth(u.User.Username(), pw)
	}
	for _, h := range q.s.headers {
		req.Header.Set(h[0], h[1])
	}
	resp, err := q.client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s answered %d", q.s.endpoint, resp.StatusCode)
	}
	return nil
}
