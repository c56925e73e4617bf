package e2e

import (
	"encoding/json"
	"net/http"
	"reflect"
	"testing"

	"github.com/gatehouse-gw/gatehouse/test/echo"
	"github.com/gatehouse-gw/gatehouse/test/harness"
)

// restartFixture is a small configuration: a service and route, a consumer
// with a key-auth credential, and key-auth on the route.
type restartFixture struct {
	paths []string // admin paths (by id) of every entity created
}

func configure(t *testing.T, a admin, up *echo.Server) restartFixture {
	t.Helper()
	svc := a.create(t, "/services", map[string]any{"name": "persisted", "url": up.URL + "/base"})
	route := a.create(t, "/services/persisted/routes", map[string]any{"name": "persisted-route", "paths": []any{"/persisted"}})
	consumer := a.create(t, "/consumers", map[string]any{"username": "persisted-user", "custom_id": "p-1", "tags": []any{"keep"}})
	cred := a.create(t, "/consumers/persisted-user/key-auth", map[string]any{"key": "persisted-key"})
	plugin := a.create(t, "/routes/persisted-route/plugins", map[string]any{"name": "key-auth"})
	upstream := a.create(t, "/upstreams", map[string]any{"name": "persisted-upstream"})
	target := a.create(t, "/upstreams/persisted-upstream/targets", map[string]any{"target": "127.0.0.1:9", "weight": 7})
	id := func(e map[string]any) string { s, _ := e["id"].(string); return s }
	return restartFixture{paths: []string{
		"/services/" + id(svc),
		"/routes/" + id(route),
		"/consumers/" + id(consumer),
		"/consumers/" + id(consumer) + "/key-auth/" + id(cred),
		"/plugins/" + id(plugin),
		"/upstreams/" + id(upstream),
		"/upstreams/" + id(upstream) + "/targets/" + id(target),
	}}
}

func snapshot(t *testing.T, a admin, f restartFixture) map[string]any {
	t.Helper()
	out := map[string]any{}
	for _, p := range f.paths {
		r := a.get(t, p)
		if !harness.CheckStatus(t, r, http.StatusOK) {
			continue
		}
		var v any
		if err := json.Unmarshal(r.Body, &v); err != nil {
			t.Errorf("GET %s: %v", p, err)
		}
		out[p] = v
	}
	return out
}

func checkProxyWithKey(t *testing.T, n *harness.Node) {
	t.Helper()
	r := waitProxy(t, n, "route with key-auth serves the consumer", "/persisted/anything",
		func(r *harness.Response) bool { return r.Status == 200 }, "apikey", "persisted-key")
	er := echo.Parse(t, r.Body)
	if got := er.Header("X-Consumer-Username"); got != "persisted-user" {
		t.Errorf("upstream X-Consumer-Username = %q, want persisted-user", got)
	}
	if er.Path != "/base/anything" {
		t.Errorf("upstream path %q, want /base/anything", er.Path)
	}
	r = proxyGet(t, n, "/persisted/anything")
	harness.CheckMessage(t, r, http.StatusUnauthorized, "No API key found in request")
}

func testRestart(t *testing.T, crash bool) {
	n := harness.Start(t, harness.Options{NodeID: "restart"})
	up := echo.StartT(t, "echo-restart")
	a := admin{n}

	f := configure(t, a, up)
	before := snapshot(t, a, f)
	indexBefore := n.ConfigIndex(t)
	checkProxyWithKey(t, n)

	if crash {
		n.Kill()
	} else {
		n.Stop()
	}
	if !n.Exited() {
		t.Fatal("process still running after stop")
	}
	n.Restart(t)

	after := snapshot(t, a, f)
	for _, p := range f.paths {
		if !reflect.DeepEqual(before[p], after[p]) {
			b, _ := json.Marshal(before[p])
			c, _ := json.Marshal(after[p])
			t.Errorf("GET %s changed across the restart\nbefore: %s\n after: %s", p, b, c)
		}
	}
	if idx := n.ConfigIndex(t); idx < indexBefore {
		t.Errorf("config index went back from %d to %d after the restart", indexBefore, idx)
	}
	for _, list := range []string{"/services", "/routes", "/consumers", "/plugins", "/upstreams"} {
		r := a.get(t, list)
		harness.CheckStatus(t, r, http.StatusOK)
		if got := len(r.Data(t)); got != 1 {
			t.Errorf("GET %s after restart: %d entities, want 1: %s", list, got, r)
		}
	}
	checkProxyWithKey(t, n)

	// The restarted node is still a working (leader) cluster: it accepts
	// writes, and they are served.
	a.create(t, "/consumers", map[string]any{"username": "after-restart"})
	r := a.create(t, "/consumers/after-restart/key-auth", map[string]any{"key": "after-key"})
	if r["key"] != "after-key" {
		t.Errorf("credential after restart: %v", r)
	}
	waitProxy(t, n, "credential created after the restart works", "/persisted/anything",
		func(r *harness.Response) bool { return r.Status == 200 }, "apikey", "after-key")
}

// TestRestartKeepsConfiguration stops a configured node with SIGTERM,
// starts it again on the same data directory and checks that every entity
// is still there with the same id and content, and that proxying with the
// consumer's key still works.
func TestRestartKeepsConfiguration(t *testing.T) { testRestart(t, false) }

// TestCrashKeepsConfiguration is the same after SIGKILL: every write that
// was acknowledged must survive a crash.
func TestCrashKeepsConfiguration(t *testing.T) { testRestart(t, true) }
