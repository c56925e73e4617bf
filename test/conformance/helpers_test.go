// Package conformance checks Gatehouse against the Kong behaviours listed in
// kong-reference.md §5 (1–45), over HTTP against a real gatehouse process.
// Subtests are named Bnn_… after the behaviour number; checks that are not
// in the numbered list but follow from §1–§3 are named X_….
package conformance

import (
	"crypto/rand"
	"fmt"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/test/echo"
	"github.com/gatehouse-gw/gatehouse/test/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

var uniqCounter atomic.Int64

// uniq returns prefix plus a number unique within the test binary.
func uniq(prefix string) string {
	return fmt.Sprintf("%s-%d", prefix, uniqCounter.Add(1))
}

// randomUUID is a fresh v4 UUID that no entity has.
func randomUUID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// forEachEncoding runs f once per Admin API body encoding (JSON, form,
// multipart), as Kong's own admin tests do.
func forEachEncoding(t *testing.T, f func(t *testing.T, enc harness.Encoding)) {
	t.Helper()
	for _, enc := range harness.Encodings {
		t.Run(string(enc), func(t *testing.T) { f(t, enc) })
	}
}

// create POSTs body as JSON to path, requires 201 and returns the entity.
func create(t testing.TB, n *harness.Node, path string, body map[string]any) map[string]any {
	t.Helper()
	r := harness.JSON(t, http.MethodPost, n.Admin(path), body)
	harness.ExpectStatus(t, r, http.StatusCreated)
	return r.JSON(t)
}

// patch PATCHes body as JSON, requires 200 and returns the entity.
func patch(t testing.TB, n *harness.Node, path string, body map[string]any) map[string]any {
	t.Helper()
	r := harness.JSON(t, http.MethodPatch, n.Admin(path), body)
	harness.ExpectStatus(t, r, http.StatusOK)
	return r.JSON(t)
}

func idOf(e map[string]any) string { s, _ := e["id"].(string); return s }

// service creates a service in front of the echo server. extra fields
// (path, name, enabled, …) are merged in.
func service(t testing.TB, n *harness.Node, up *echo.Server, extra map[string]any) map[string]any {
	t.Helper()
	body := map[string]any{"host": up.Host, "port": up.Port}
	for k, v := range extra {
		body[k] = v
	}
	return create(t, n, "/services", body)
}

// route creates a route on the given service id ("" for none).
func route(t testing.TB, n *harness.Node, serviceID string, body map[string]any) map[string]any {
	t.Helper()
	if serviceID != "" {
		body["service"] = map[string]any{"id": serviceID}
	}
	return create(t, n, "/routes", body)
}

// proxy sends a request to the node's proxy.
func proxy(t testing.TB, n *harness.Node, rq harness.Request) *harness.Response {
	t.Helper()
	if rq.URL == "" {
		t.Fatal("proxy: empty URL")
	}
	rq.URL = n.Proxy(rq.URL)
	return harness.Do(t, rq)
}

// waitFor polls the proxy with rq (its URL is a path) until cond holds,
// at most 5 s, and returns the satisfying response. Admin writes should be
// served at once; the wait only absorbs propagation inside the node.
func waitFor(t testing.TB, n *harness.Node, what string, rq harness.Request, cond func(*harness.Response) bool) *harness.Response {
	t.Helper()
	rq.URL = n.Proxy(rq.URL)
	var last *harness.Response
	harness.Eventually(t, 5*time.Second, 50*time.Millisecond, what, func() (bool, string) {
		r, err := harness.Try(rq)
		if err != nil {
			return false, err.Error()
		}
		last = r
		return cond(r), r.String()
	})
	return last
}

// waitProxied waits until rq reaches an upstream with a 2xx and returns
// the echo description of what the upstream received.
func waitProxied(t testing.TB, n *harness.Node, rq harness.Request) (*harness.Response, *echo.Request) {
	t.Helper()
	r := waitFor(t, n, "request reaches the upstream", rq, func(r *harness.Response) bool {
		return r.Status/100 == 2 && r.Header.Get("X-Upstream-Name") != ""
	})
	return r, echo.Parse(t, r.Body)
}

// get is a plain GET request value for proxy/waitFor.
func get(path string, headers ...string) harness.Request {
	return harness.Request{Method: http.MethodGet, URL: path, Header: harness.Headers(headers...)}
}

// withHost is get with a Host header.
func withHost(host, path string, headers ...string) harness.Request {
	rq := get(path, headers...)
	rq.Host = host
	return rq
}

func intHeader(t testing.TB, h http.Header, name string) (int, bool) {
	t.Helper()
	v := h.Get(name)
	i, err := strconv.Atoi(v)
	if err != nil {
		t.Errorf("header %s = %q, want an integer", name, v)
		return 0, false
	}
	return i, true
}

// checkFields compares entity fields with expected values (JSON numbers
// are float64). A nil expectation requires the key to be present with a
// JSON null, as Kong returns every schema field.
func checkFields(t testing.TB, what string, e map[string]any, want map[string]any) {
	t.Helper()
	for k, w := range want {
		got, present := e[k]
		if !present {
			t.Errorf("%s: field %q missing (Kong returns every field; want %v)", what, k, w)
			continue
		}
		if !jsonEqual(got, w) {
			t.Errorf("%s: %s = %#v, want %#v", what, k, got, w)
		}
	}
}

// jsonEqual compares decoded JSON values, treating ints as float64.
func jsonEqual(a, b any) bool {
	switch x := b.(type) {
	case int:
		b = float64(x)
	case []string:
		l := make([]any, len(x))
		for i, s := range x {
			l[i] = s
		}
		b = l
	case []int:
		l := make([]any, len(x))
		for i, s := range x {
			l[i] = float64(s)
		}
		b = l
	}
	switch x := a.(type) {
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !jsonEqual(x[i], y[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k := range x {
			if _, ok := y[k]; !ok || !jsonEqual(x[k], y[k]) {
				return false
			}
		}
		return true
	}
	return a == b
}

// fieldEquals checks one dotted path of a decoded entity.
func fieldEquals(t testing.TB, what string, e any, path string, want any) {
	t.Helper()
	got, ok := harness.Field(e, path)
	if !ok {
		t.Errorf("%s: %s missing, want %#v", what, path, want)
		return
	}
	if !jsonEqual(got, want) {
		t.Errorf("%s: %s = %#v, want %#v", what, path, got, want)
	}
}

func isIntegral(v any) bool {
	f, ok := v.(float64)
	return ok && f == float64(int64(f))
}

// listIDs returns the ids in a collection page.
func listIDs(t testing.TB, r *harness.Response) []string {
	t.Helper()
	var out []string
	for _, e := range r.Data(t) {
		out = append(out, idOf(e))
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
