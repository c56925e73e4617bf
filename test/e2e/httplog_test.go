package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/test/echo"
	"github.com/gatehouse-gw/gatehouse/test/harness"
)

// logReceiver is a loopback HTTP log collector that can be told to fail.
type logReceiver struct {
	mu      sync.Mutex
	bodies  [][]byte
	headers []http.Header
	failing int // answer 500 to this many more posts
	srv     *httptest.Server
}

func newLogReceiver(t *testing.T) *logReceiver {
	lr := &logReceiver{}
	lr.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		lr.mu.Lock()
		defer lr.mu.Unlock()
		if lr.failing > 0 {
			lr.failing--
			w.WriteHeader(500)
			return
		}
		lr.bodies = append(lr.bodies, b)
		lr.headers = append(lr.headers, r.Header.Clone())
		w.WriteHeader(200)
	}))
	t.Cleanup(lr.srv.Close)
	return lr
}

func (lr *logReceiver) received() ([][]byte, []http.Header) {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	return append([][]byte(nil), lr.bodies...), append([]http.Header(nil), lr.headers...)
}

// TestHTTPLogPlugin: Kong's http-log sends each request as Kong's log
// entry (credentials redacted), batches with max_batch_size, retries a
// failing endpoint with backoff, and refuses Lua it cannot run.
func TestHTTPLogPlugin(t *testing.T) {
	n := harness.Start(t, harness.Options{NodeID: "http-log"})
	up := echo.StartT(t, "echo-log")
	a := admin{n}
	lr := newLogReceiver(t)
	a.create(t, "/services", map[string]any{"name": "svc", "url": up.URL})
	a.create(t, "/services/svc/routes", map[string]any{"name": "logged", "paths": []string{"/logged"}})

	r := a.json(t, http.MethodPost, "/plugins", map[string]any{"name": "http-log",
		"config": map[string]any{"http_endpoint": lr.srv.URL, "custom_fields_by_lua": map[string]any{"x": "return 1"}}})
	harness.ExpectStatus(t, r, http.StatusBadRequest)
	if !strings.Contains(r.String(), "custom_fields_by_lua") {
		t.Errorf("Lua refused without naming the field: %s", r)
	}
	harness.ExpectStatus(t, a.json(t, http.MethodPost, "/plugins", map[string]any{"name": "http-log",
		"config": map[string]any{"http_endpoint": "not a url"}}), http.StatusBadRequest)

	a.create(t, "/routes/logged/plugins", map[string]any{"name": "http-log", "config": map[string]any{
		"http_endpoint": lr.srv.URL + "/log", "headers": map[string]any{"X-Log-Token": "t0k"}}})
	waitProxy(t, n, "logged route", "/logged", func(r *harness.Response) bool { return r.Status == 200 })
	for i := 0; i < 2; i++ {
		harness.ExpectStatus(t, proxyGet(t, n, "/logged?page=2", "Authorization", "Bearer secret-token"), 200)
	}
	var bodies [][]byte
	var headers []http.Header
	harness.Eventually(t, 10*time.Second, 50*time.Millisecond, "three log entries", func() (bool, string) {
		bodies, headers = lr.received()
		return len(bodies) >= 3, ""
	})
	var entry map[string]any
	if err := json.Unmarshal(bodies[len(bodies)-1], &entry); err != nil {
		t.Fatalf("log entry is not a JSON object: %v: %s", err, bodies[len(bodies)-1])
	}
	for path, want := range map[string]any{
		"request.method": "GET", "request.uri": "/logged?page=2", "response.status": "200",
		"route.name": "logged", "service.name": "svc", "source": "upstream",
		"request.headers.authorization": "REDACTED", "request.querystring.page": "2",
	} {
		if v, _ := harness.Field(entry, path); fmt.Sprint(v) != want {
			got := fmt.Sprint(v)
			t.Errorf("log entry %s = %q, want %q", path, got, want)
		}
	}
	if v, ok := harness.Field(entry, "latencies.request"); !ok || v == nil || harness.Str(entry, "client_ip") != "127.0.0.1" {
		t.Errorf("log entry latencies/client_ip: %v %v", entry["latencies"], entry["client_ip"])
	}
	if got := headers[0].Get("X-Log-Token"); got != "t0k" {
		t.Errorf("configured header X-Log-Token = %q", got)
	}
	if strings.Contains(string(bodies[len(bodies)-1]), "secret-token") {
		t.Errorf("the Authorization value reached the log")
	}

	// Batches: three requests become one JSON array. The endpoint fails
	// twice first: the batch is retried, not lost.
	a.create(t, "/services/svc/routes", map[string]any{"name": "batched", "paths": []string{"/batched"}})
	a.create(t, "/routes/batched/plugins", map[string]any{"name": "http-log", "config": map[string]any{
		"http_endpoint": lr.srv.URL + "/batch", "queue": map[string]any{"max_batch_size": 3, "max_coalescing_delay": 2}}})
	waitProxy(t, n, "batched route", "/batched", func(r *harness.Response) bool { return r.Status == 200 })
	before, _ := lr.received()
	lr.mu.Lock()
	lr.failing = 2
	lr.mu.Unlock()
	for i := 0; i < 3; i++ {
		proxyGet(t, n, "/batched")
	}
	var batch []map[string]any
	harness.Eventually(t, 15*time.Second, 50*time.Millisecond, "a batch of three after two failures", func() (bool, string) {
		all, _ := lr.received()
		for _, b := range all[len(before):] {
			batch = nil
			if json.Unmarshal(b, &batch) == nil && len(batch) == 3 {
				return true, ""
			}
		}
		return false, ""
	})
	for _, e := range batch {
		if harness.Str(e, "route.name") != "batched" {
			t.Errorf("batched entry from route %q", harness.Str(e, "route.name"))
		}
	}
}
