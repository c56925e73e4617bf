// Package echo is an httpbin-like upstream for proxy tests. It listens on
// 127.0.0.1 and answers:
//
//   - /anything, /anything/*, /request and every path not listed below:
//     200 with a JSON description of the request (see Request);
//   - /status/{code}: that status, with a small JSON body (none for 1xx,
//     204 and 304);
//   - /delay/{ms}: sleeps ms milliseconds (at most 30 s, or until the
//     client goes away), then echoes;
//   - /cache/{n}: Content-Type application/json and a body with a counter
//     that grows with every /cache request, to tell cache hits (which do
//     not reach the upstream) from misses. ?cc=<value> sets Cache-Control,
//     ?ct=<value> overrides Content-Type;
//   - /response-headers?Name=value&…: sets each query pair as a response
//     header, then echoes.
//
// Every response carries X-Upstream-Name: <name>.
package echo

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Server is a running echo upstream.
type Server struct {
	Name string
	Host string // "127.0.0.1"
	Port int
	Addr string // "127.0.0.1:port"
	URL  string // "http://127.0.0.1:port"

	srv      *httptest.Server
	requests atomic.Int64
	cacheCnt atomic.Int64
}

// Request is the JSON the echo endpoints return.
type Request struct {
	// Upstream is the server's name.
	Upstream string `json:"upstream"`
	Method   string `json:"method"`
	// URL is the request-target exactly as received (path and query).
	URL string `json:"url"`
	// Path is the decoded path; RawPath the escaped path as received.
	Path    string `json:"path"`
	RawPath string `json:"raw_path"`
	// RawQuery is the query string as received, without "?".
	RawQuery string `json:"raw_query"`
	// Query maps each argument to its first value; QueryAll keeps all.
	Query    map[string]string   `json:"query"`
	QueryAll map[string][]string `json:"query_all"`
	// Headers maps the lowercased header name to its values joined with
	// ", "; it includes "host". HeadersAll keeps each value.
	Headers    map[string]string   `json:"headers"`
	HeadersAll map[string][]string `json:"headers_all"`
	Host       string              `json:"host"`
	Proto      string              `json:"proto"`
	RemoteAddr string              `json:"remote_addr"`
	Body       string              `json:"body"`
	// JSON is the parsed body when it is valid JSON.
	JSON any `json:"json"`
	// Counter is set by /cache/{n}: the number of /cache requests so far.
	Counter int64 `json:"counter,omitempty"`
}

// Header returns the value of a request header (case-insensitive), "" if
// absent.
func (r *Request) Header(name string) string { return r.Headers[strings.ToLower(name)] }

// HasHeader reports whether the upstream received the header.
func (r *Request) HasHeader(name string) bool {
	_, ok := r.Headers[strings.ToLower(name)]
	return ok
}

// Start starts an echo server named name on a free 127.0.0.1 port.
func Start(name string) (*Server, error) {
	s := &Server{Name: name}
	ts := httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	ts.Listener.Close()
	ts.Listener = l
	ts.Config.ReadHeaderTimeout = 10 * time.Second
	ts.Start()
	s.srv = ts
	addr := l.Addr().(*net.TCPAddr)
	s.Host = "127.0.0.1"
	s.Port = addr.Port
	s.Addr = net.JoinHostPort(s.Host, strconv.Itoa(s.Port))
	s.URL = "http://" + s.Addr
	return s, nil
}

// StartT starts an echo server and closes it when the test ends.
func StartT(t testing.TB, name string) *Server {
	t.Helper()
	s, err := Start(name)
	if err != nil {
		t.Fatalf("starting echo server %q: %v", name, err)
	}
	t.Cleanup(s.Close)
	return s
}

// Close stops the server and closes all connections.
func (s *Server) Close() {
	if s.srv != nil {
		s.srv.CloseClientConnections()
		s.srv.Close()
	}
}

// Requests is the number of requests the server has received.
func (s *Server) Requests() int64 { return s.requests.Load() }

// CacheCounter is the number of /cache/{n} requests so far.
func (s *Server) CacheCounter() int64 { return s.cacheCnt.Load() }

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	w.Header().Set("X-Upstream-Name", s.Name)
	path := r.URL.Path
	switch {
	case strings.HasPrefix(path, "/status/"):
		code, err := strconv.Atoi(strings.TrimPrefix(path, "/status/"))
		if err != nil || code < 100 || code > 999 {
			http.Error(w, "bad status", http.StatusBadRequest)
			return
		}
		if code < 200 || code == 204 || code == 304 {
			w.WriteHeader(code)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(map[string]any{"status": code, "upstream": s.Name})
		return
	case strings.HasPrefix(path, "/delay/"):
		ms, err := strconv.Atoi(strings.TrimPrefix(path, "/delay/"))
		if err != nil || ms < 0 {
			http.Error(w, "bad delay", http.StatusBadRequest)
			return
		}
		if ms > 30000 {
			ms = 30000
		}
		select {
		case <-time.After(time.Duration(ms) * time.Millisecond):
		case <-r.Context().Done():
			return
		}
	case strings.HasPrefix(path, "/cache/"):
		req := s.describe(r)
		req.Counter = s.cacheCnt.Add(1)
		ct := "application/json"
		if v := r.URL.Query().Get("ct"); v != "" {
			ct = v
		}
		if v := r.URL.Query().Get("cc"); v != "" {
			w.Header().Set("Cache-Control", v)
		}
		writeJSON(w, ct, req)
		return
	case path == "/response-headers":
		for k, vs := range r.URL.Query() {
			for _, v := range vs {
				w.Header().Add(k, v)
			}
		}
		ct := w.Header().Get("Content-Type")
		if ct == "" {
			ct = "application/json"
		}
		writeJSON(w, ct, s.describe(r))
		return
	}
	writeJSON(w, "application/json", s.describe(r))
}

func writeJSON(w http.ResponseWriter, contentType string, v any) {
	b, _ := json.Marshal(v)
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	w.Write(b)
}

func (s *Server) describe(r *http.Request) *Request {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 8<<20))
	req := &Request{
		Upstream:   s.Name,
		Method:     r.Method,
		URL:        r.RequestURI,
		Path:       r.URL.Path,
		RawPath:    r.URL.EscapedPath(),
		RawQuery:   r.URL.RawQuery,
		Query:      map[string]string{},
		QueryAll:   map[string][]string{},
		Headers:    map[string]string{},
		HeadersAll: map[string][]string{},
		Host:       r.Host,
		Proto:      r.Proto,
		RemoteAddr: r.RemoteAddr,
		Body:       string(body),
	}
	for k, vs := range r.URL.Query() {
		req.QueryAll[k] = vs
		if len(vs) > 0 {
			req.Query[k] = vs[0]
		}
	}
	names := make([]string, 0, len(r.Header))
	for k := range r.Header {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		lk := strings.ToLower(k)
		req.HeadersAll[lk] = append(req.HeadersAll[lk], r.Header[k]...)
		req.Headers[lk] = strings.Join(req.HeadersAll[lk], ", ")
	}
	req.Headers["host"] = r.Host
	req.HeadersAll["host"] = []string{r.Host}
	// Go moves these out of r.Header; put them back so tests can see them.
	if len(r.TransferEncoding) > 0 {
		req.Headers["transfer-encoding"] = strings.Join(r.TransferEncoding, ", ")
	}
	if len(body) > 0 {
		var j any
		if json.Unmarshal(body, &j) == nil {
			req.JSON = j
		}
	}
	return req
}

// Parse decodes an echo body; the test fails if it is not one (for
// example, when the gateway answered instead of the upstream).
func Parse(t testing.TB, body []byte) *Request {
	t.Helper()
	var r Request
	if err := json.Unmarshal(body, &r); err != nil || r.Upstream == "" {
		t.Fatalf("not an echo response (err %v): %.2000s", err, body)
	}
	return &r
}
