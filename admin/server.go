// Package admin is Kong's Admin API on gorilla/mux. Reads are answered from
// the local configuration snapshot; writes become events appended through
// the cluster, after being checked against the current state so that bad
// input never reaches the log.
package admin

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/gorilla/mux"

	"github.com/gatehouse-gw/gatehouse/fsm"
	"github.com/gatehouse-gw/gatehouse/log"
	"github.com/gatehouse-gw/gatehouse/plugins"
)

// KongVersion is the Kong release whose Admin API Gatehouse speaks. Clients
// parse it (decK, go-kong), so it must look like an open-source Kong.
const KongVersion = "3.9.1"

// GatehouseVersion is this program's own version.
var GatehouseVersion = "0.1.0"

// Store is the local view of the configuration.
type Store interface {
	State() *fsm.State
	Fold() *fsm.Fold
	WaitIndex(ctx context.Context, index uint64) error
	History() *log.History
	StateAt(index uint64) (*fsm.State, error)
	IndexAt(unixNano int64) (uint64, error)
	Parts(s *fsm.State) fsm.Parts
	PlanRestore(cur, past *fsm.State) ([]byte, int, error)
	PlanBatch(base *fsm.State, now int64, payload []byte) (changes []fsm.Change, at int, err *fsm.Error, release func())
}

// Appender appends an encoded event and returns the fold's result once it
// is applied locally.
type Appender interface {
	Apply(ctx context.Context, data []byte) (*fsm.Result, error)
}

// Cache is the proxy-cache storage the admin endpoints manage.
type Cache interface {
	Lookup(key string) (map[string]any, bool)
	Delete(key string) bool
	Purge()
}

// Config wires the Admin API.
type Config struct {
	NodeID     string // the operator-facing node name
	NodeUUID   string // Kong's node_id (a UUID)
	Store      Store
	Appender   Appender
	Plugins    *plugins.Registry
	Cache      Cache
	ServerInfo func() map[string]any // proxy counters for /status
	Settings   map[string]any        // non-sensitive configuration for GET /
	MaxBody    int64
	Cluster    Cluster
	// LeaderWait bounds how long a write on a follower waits for a
	// leader, and a min_index read for its index.
	LeaderWait time.Duration
	Auth       Auth
	// SigningKey signs audit rows this node serves (its public key is in
	// the node's member record, served as JWKS).
	SigningKey ed25519.PrivateKey
	// RateLimits serves /rate-limits; Gossip reports the counter gossip
	// in /status (both optional).
	RateLimits RateLimits
	Gossip     func() any
	// Metrics serves /metrics (the prometheus plugin's) on the Admin
	// and Status APIs; optional.
	Metrics http.Handler
	// WriteTimeout is the server's write timeout, which a bulk write's
	// answer gets afresh once its work is done (default 60 s).
	WriteTimeout time.Duration
}

// Server is the Admin API handler.
type Server struct {
	cfg      Config
	router   *mux.Router
	hostname string
	denied   deniedBudget
	replays  replays
}

// New builds the Admin API.
func New(cfg Config) *Server {
	if cfg.MaxBody == 0 {
		cfg.MaxBody = 8 << 20
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = 60 * time.Second
	}
	s := &Server{cfg: cfg, router: mux.NewRouter()}
	s.hostname, _ = osHostname()
	s.routes()
	return s
}

// ServeHTTP adds the headers every Admin API response carries.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	h := w.Header()
	h.Set("Server", "kong/"+KongVersion)
	h.Set("Access-Control-Allow-Origin", "*")
	lw := &latencyWriter{ResponseWriter: w, start: start, store: s.cfg.Store}
	if r.Method == "POST" && commitBound(r.URL.Path) == bulkCommitTimeout {
		// The server's write deadline counts from the request's headers.
		// A bulk write's work grows with its body and is bounded on its
		// own (bulkCommitTimeout), so on a busy node a large document
		// was cut off after it had applied, and the client saw the
		// connection close instead of the answer. The deadline is lifted
		// for the work and set again, for the answer, when it starts.
		lw.rc, lw.answer = http.NewResponseController(w), s.cfg.WriteTimeout
		_ = lw.rc.SetWriteDeadline(time.Time{})
	}
	defer func() {
		if v := recover(); v != nil {
			slog.Error("admin handler panic", "panic", v, "path", r.URL.Path)
			writeJSON(lw, 500, map[string]any{"message": "An unexpected error occurred"})
		}
	}()
	r, ok := s.authenticate(lw, r)
	if !ok {
		return
	}
	if s.forward(lw, r) {
		return
	}
	r, cancel, ok := s.forwardedDeadline(lw, r)
	defer cancel()
	if !ok {
		return
	}
	if (r.Method == "GET" || r.Method == "HEAD") && !s.waitMinIndex(lw, r) {
		return
	}
	s.router.ServeHTTP(lw, r)
}

// latencyWriter stamps X-Kong-Admin-Latency and, unless a write handler
// already set it, X-Gatehouse-Config-Index just before the header is sent.
type latencyWriter struct {
	http.ResponseWriter
	start   time.Time
	store   Store
	written bool
	// rc, when set, re-arms the write deadline, answer from now, once
	// the answer starts.
	rc     *http.ResponseController
	answer time.Duration
}

func (w *latencyWriter) WriteHeader(code int) {
	if w.written {
		return
	}
	w.written = true
	if w.rc != nil {
		_ = w.rc.SetWriteDeadline(time.Now().Add(w.answer))
	}
	h := w.Header()
	if h.Get("X-Kong-Admin-Latency") == "" {
		h.Set("X-Kong-Admin-Latency", strconv.FormatInt(time.Since(w.start).Milliseconds(), 10))
	}
	if h.Get("X-Gatehouse-Config-Index") == "" {
		h.Set("X-Gatehouse-Config-Index", strconv.FormatUint(w.store.State().Index, 10))
	}
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap lets handlers reach the connection through
// http.ResponseController (a backup lifts its write deadline).
func (w *latencyWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *latencyWriter) Write(b []byte) (int, error) {
	if !w.written {
		w.WriteHeader(200)
	}
	return w.ResponseWriter.Write(b)
}

func writeJSON(w http.ResponseWriter, status int, v any) { writeJSONSized(w, status, v, 0) }

// writeJSONSized is writeJSON for a large answer, encoded into a buffer of
// the hinted size instead of one grown by doubling.
func writeJSONSized(w http.ResponseWriter, status int, v any, hint int) {
	b, err := log.AppendJSON(make([]byte, 0, hint), v)
	if err != nil {
		status = 500
		b = []byte(`{"message":"An unexpected error occurred"}`)
	}
	writeJSONBytes(w, status, b)
}

// writeJSONBytes answers with b, a JSON document.
func writeJSONBytes(w http.ResponseWriter, status int, b []byte) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	w.Write(b)
}

func writeError(w http.ResponseWriter, e *fsm.Error) { writeJSON(w, e.Status, e.Body()) }

func message(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]any{"message": msg})
}

func notFound(w http.ResponseWriter) { message(w, 404, "Not found") }

// NewUUID returns a random (v4) UUID.
func NewUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// randomKey returns a 32-character alphanumeric key, as Kong generates for
// key-auth credentials created without one.
func randomKey() string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	var b [32]byte
	rand.Read(b[:])
	for i := range b {
		// 256 % 62 bias is irrelevant for a 190-bit key.
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b[:])
}

func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// appendError answers a write whose event could not be appended.
func appendError(w http.ResponseWriter, err error) {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		message(w, 503, "timed out waiting for the cluster to commit the change")
		return
	}
	slog.Warn("admin write failed", "err", err)
	message(w, 503, "cluster unavailable: "+err.Error())
}
