package e2e

import (
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/test/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

// admin wraps a node's Admin API and checks, on every response, the headers
// Gatehouse promises: Server: kong/…, X-Gatehouse-Config-Index and, on
// successful writes, X-Gatehouse-Request-Id.
type admin struct{ n *harness.Node }

// form sends a form-encoded body (like the guide's curl --data) given as
// key, value pairs.
func (a admin) form(t *testing.T, method, path string, kv ...string) *harness.Response {
	t.Helper()
	vals := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		vals.Add(kv[i], kv[i+1])
	}
	r := harness.Form(t, method, a.n.Admin(path), vals)
	harness.CheckAdminHeaders(t, r, true)
	return r
}

func (a admin) json(t *testing.T, method, path string, body any) *harness.Response {
	t.Helper()
	r := harness.JSON(t, method, a.n.Admin(path), body)
	harness.CheckAdminHeaders(t, r, method != http.MethodGet)
	return r
}

func (a admin) get(t *testing.T, path string) *harness.Response {
	t.Helper()
	r := harness.Get(t, a.n.Admin(path))
	harness.CheckAdminHeaders(t, r, false)
	return r
}

// del sends DELETE; config writes must carry a request id, cache purges
// need not (write=false).
func (a admin) del(t *testing.T, path string, write bool) *harness.Response {
	t.Helper()
	r := harness.Method(t, http.MethodDelete, a.n.Admin(path))
	harness.CheckAdminHeaders(t, r, write)
	return r
}

// create POSTs JSON, requires 201 and returns the entity.
func (a admin) create(t *testing.T, path string, body map[string]any) map[string]any {
	t.Helper()
	r := a.json(t, http.MethodPost, path, body)
	harness.ExpectStatus(t, r, http.StatusCreated)
	return r.JSON(t)
}

// proxyGet sends GET path to the proxy with optional header pairs.
func proxyGet(t *testing.T, n *harness.Node, path string, headers ...string) *harness.Response {
	t.Helper()
	return harness.Get(t, n.Proxy(path), headers...)
}

// waitProxy polls GET path on the proxy until cond holds (bounded 5 s) and
// returns the response that satisfied it.
func waitProxy(t *testing.T, n *harness.Node, what, path string, cond func(*harness.Response) bool, headers ...string) *harness.Response {
	t.Helper()
	var last *harness.Response
	harness.Eventually(t, 5*time.Second, 50*time.Millisecond, what, func() (bool, string) {
		r, err := harness.Try(harness.Request{URL: n.Proxy(path), Header: harness.Headers(headers...)})
		if err != nil {
			return false, err.Error()
		}
		last = r
		return cond(r), r.String()
	})
	return last
}

// intHeader parses a numeric header, failing the test if it is absent or
// not an integer.
func intHeader(t *testing.T, r *harness.Response, name string) int {
	t.Helper()
	v := r.Header.Get(name)
	i, err := strconv.Atoi(v)
	if err != nil {
		t.Fatalf("header %s = %q, want an integer: %s", name, v, r)
	}
	return i
}

func ids(t *testing.T, r *harness.Response) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, e := range r.Data(t) {
		if id, ok := e["id"].(string); ok {
			out[id] = true
		}
	}
	return out
}
