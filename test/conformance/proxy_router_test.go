package conformance

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/gatehouse-gw/gatehouse/test/echo"
	"github.com/gatehouse-gw/gatehouse/test/harness"
)

const noRoute = "no Route matched with those values"

// routedTo reports which of the marker services ("/from-a", "/from-b", …)
// served a response: the upstream path starts with the service path.
func routedTo(t testing.TB, r *harness.Response) string {
	t.Helper()
	if r.Status != 200 || r.Header.Get("X-Upstream-Name") == "" {
		return fmt.Sprintf("<not proxied: %d %s>", r.Status, strings.TrimSpace(string(r.Body)))
	}
	er := echo.Parse(t, r.Body)
	parts := strings.SplitN(strings.TrimPrefix(er.Path, "/"), "/", 2)
	return "/" + parts[0]
}

// rawGet sends a hand-written GET for target (sent byte for byte) to the
// proxy.
func rawGet(t testing.TB, n *harness.Node, target string, headers ...string) *harness.RawResponse {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\n", target, n.ProxyAddr)
	for i := 0; i+1 < len(headers); i += 2 {
		fmt.Fprintf(&b, "%s: %s\r\n", headers[i], headers[i+1])
	}
	b.WriteString("Connection: close\r\n\r\n")
	return harness.RawHTTP(t, n.ProxyAddr, b.String())
}

// TestProxyRouter covers behaviours 26–37: the router, path handling and
// Host forwarding.
func TestProxyRouter(t *testing.T) {
	n := harness.Start(t, harness.Options{NodeID: "conf-router"})
	up := echo.StartT(t, "router-echo")
	plain := service(t, n, up, map[string]any{"name": "plain"})
	svcA := service(t, n, up, map[string]any{"name": "svc-a", "path": "/from-a"})
	svcB := service(t, n, up, map[string]any{"name": "svc-b", "path": "/from-b"})

	t.Run("B26_no_route", func(t *testing.T) {
		r := proxy(t, n, get("/b26-nothing-matches"))
		harness.CheckMessage(t, r, http.StatusNotFound, noRoute)
		if s := r.Header.Get("Server"); !strings.HasPrefix(s, "kong/") {
			t.Errorf("Server = %q, want kong/<version>", s)
		}
		id := r.Header.Get("X-Kong-Request-Id")
		if id == "" {
			t.Errorf("no X-Kong-Request-Id on a no-route 404")
		}
		if got := harness.Str(r.JSON(t), "request_id"); got != id {
			t.Errorf("body request_id %q differs from X-Kong-Request-Id %q", got, id)
		}
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Errorf("Content-Type = %q, want application/json", ct)
		}
	})

	t.Run("B27_route_without_service", func(t *testing.T) {
		route(t, n, "", map[string]any{"paths": []any{"/b27"}})
		r := waitFor(t, n, "route without service is matched", get("/b27"), func(r *harness.Response) bool { return r.Status != 404 })
		harness.CheckMessage(t, r, http.StatusServiceUnavailable, "no Service found with those values")
		if r.Header.Get("X-Kong-Request-Id") == "" {
			t.Errorf("no X-Kong-Request-Id on the 503")
		}
	})

	t.Run("B28_methods", func(t *testing.T) {
		route(t, n, idOf(plain), map[string]any{"paths": []any{"/b28"}, "methods": []any{"POST"}})
		rq := harness.Request{Method: http.MethodPost, URL: "/b28/anything", Body: []byte(`{"x":1}`), ContentType: "application/json"}
		_, er := waitProxied(t, n, rq)
		if er.Method != "POST" || er.Body != `{"x":1}` {
			t.Errorf("upstream saw %s with body %q", er.Method, er.Body)
		}
		for _, m := range []string{http.MethodGet, http.MethodPut, http.MethodDelete} {
			r := proxy(t, n, harness.Request{Method: m, URL: "/b28/anything"})
			harness.CheckMessage(t, r, http.StatusNotFound, noRoute)
		}
	})

	t.Run("B29_regex_path", func(t *testing.T) {
		route(t, n, idOf(plain), map[string]any{"paths": []any{`~/users/\d+/profile`}, "strip_path": false})
		_, er := waitProxied(t, n, get("/users/123/profile"))
		if er.URL != "/users/123/profile" {
			t.Errorf("upstream url %q, want /users/123/profile", er.URL)
		}
		// Anchored at the start only.
		if r := proxy(t, n, get("/users/123/profile/extra")); r.Status != 200 {
			t.Errorf("/users/123/profile/extra: %s (a regex path is anchored at the start only)", r)
		}
		harness.CheckMessage(t, proxy(t, n, get("/users/foo/profile")), http.StatusNotFound, noRoute)
		harness.CheckMessage(t, proxy(t, n, get("/x/users/123/profile")), http.StatusNotFound, noRoute)
	})

	t.Run("B30_regex_priority", func(t *testing.T) {
		route(t, n, idOf(svcA), map[string]any{"paths": []any{`~/rp/\d+`}, "regex_priority": 0, "strip_path": false})
		route(t, n, idOf(svcB), map[string]any{"paths": []any{`~/rp/[0-9]+`}, "regex_priority": 4, "strip_path": false})
		route(t, n, idOf(svcA), map[string]any{"paths": []any{`~/rq/[0-9]+`}, "regex_priority": 10, "strip_path": false})
		route(t, n, idOf(svcB), map[string]any{"paths": []any{`~/rq/\d+`}, "regex_priority": 1, "strip_path": false})
		r := waitFor(t, n, "regex routes", get("/rp/42"), func(r *harness.Response) bool { return r.Status == 200 })
		if got := routedTo(t, r); got != "/from-b" {
			t.Errorf("/rp/42 went to %s, want /from-b (regex_priority 4 beats 0)", got)
		}
		r = waitFor(t, n, "regex routes", get("/rq/42"), func(r *harness.Response) bool { return r.Status == 200 })
		if got := routedTo(t, r); got != "/from-a" {
			t.Errorf("/rq/42 went to %s, want /from-a (regex_priority 10 beats 1, whatever the creation order)", got)
		}
	})

	t.Run("B31_query_string", func(t *testing.T) {
		route(t, n, idOf(plain), map[string]any{"paths": []any{"/b31"}})
		waitProxied(t, n, get("/b31/anything"))
		cases := map[string]string{
			"/b31/anything?a=1&b=2":     "/anything?a=1&b=2",
			"/b31/anything":             "/anything",
			"/b31/anything?":            "/anything",
			"/b31/anything?a=":          "/anything?a=",
			"/b31/anything?b=2&a=1&a=3": "/anything?b=2&a=1&a=3",
			"/b31/anything?flag&x=%20y": "/anything?flag&x=%20y",
		}
		for target, want := range cases {
			rr := rawGet(t, n, target)
			if rr.Status != 200 {
				t.Errorf("%s: status %d %s", target, rr.Status, rr.Body)
				continue
			}
			if got := echo.Parse(t, rr.Body).URL; got != want {
				t.Errorf("%s: upstream url %q, want %q", target, got, want)
			}
		}
	})

	t.Run("B32_uri_normalization", func(t *testing.T) {
		route(t, n, idOf(plain), map[string]any{"paths": []any{"/b32/a"}, "strip_path": false})
		waitProxied(t, n, get("/b32/a"))
		for _, target := range []string{"/b32/x/../a", "/b32//a", "/b32/./a", "/b32/%61", "/b32/x/./../a"} {
			rr := rawGet(t, n, target)
			if rr.Status != 200 {
				t.Errorf("%s: status %d %s, want it routed as /b32/a", target, rr.Status, rr.Body)
				continue
			}
			if got := echo.Parse(t, rr.Body).URL; got != "/b32/a" {
				t.Errorf("%s: upstream url %q, want the normalized /b32/a", target, got)
			}
		}
		if rr := rawGet(t, n, "/b32/x"); rr.Status != 404 {
			t.Errorf("/b32/x: status %d, want 404", rr.Status)
		}
		// Dot segments cannot climb into a route.
		if rr := rawGet(t, n, "/b32/a/../../b32-other"); rr.Status != 404 {
			t.Errorf("/b32/a/../../b32-other: status %d, want 404", rr.Status)
		}
	})

	t.Run("B33_strip_path_and_path_handling_v0", func(t *testing.T) {
		type row struct {
			svcPath, routePath string // routePath "" = the route matches by host only
			strip              bool
			req, want          string
		}
		// Rows follow Kong 3.x's v0 join: when stripping leaves nothing,
		// a request that ended in "/" keeps a trailing slash upstream
		// (older copies of Kong's fixture table predate that rule).
		rows := []row{
			{"/", "/", false, "/", "/"},
			{"/", "/", true, "/", "/"},
			{"/", "/", true, "/route/req", "/route/req"},
			{"/", "/route", false, "/routereq", "/routereq"},
			{"/", "/route", true, "/route", "/"},
			{"/", "/route", true, "/route/", "/"},
			{"/", "/route", true, "/routereq", "/req"},
			{"/", "/route/", true, "/route/req", "/req"},
			{"/srv", "/rou", false, "/roureq", "/srv/roureq"},
			{"/srv", "/rou", true, "/roureq", "/srv/req"},
			{"/srv/", "/rou", false, "/rou", "/srv/rou"},
			{"/srv/", "/rou", true, "/rou", "/srv"},
			{"/service", "/", true, "/", "/service"},
			{"/service", "/", false, "/route", "/service/route"},
			{"/service", "/", true, "/route/req", "/service/route/req"},
			{"/service", "/route", false, "/route", "/service/route"},
			{"/service", "/route", true, "/route", "/service"},
			{"/service", "/route", true, "/route/", "/service/"},
			{"/service", "/route", true, "/routereq", "/service/req"},
			{"/service", "/route/", true, "/route/", "/service/"},
			{"/service", "/route/", true, "/route/req", "/service/req"},
			{"/service/", "/", true, "/", "/service/"},
			{"/service/", "/", false, "/", "/service/"},
			{"/service/", "/route", true, "/route", "/service"},
			{"/service/", "/route", true, "/route/", "/service/"},
			{"/service/", "/route", true, "/routereq", "/service/req"},
			{"/service/", "/route/", true, "/route/", "/service/"},
			{"/", "", true, "/route/", "/route/"},
			{"/service", "", false, "/", "/service"},
			{"/service", "", true, "/route", "/service/route"},
			{"/service/", "", true, "/", "/service/"},
			{"/service/", "", false, "/", "/service/"},
			{"/service/", "", true, "/route/", "/service/route/"},
			// Regex paths strip the matched part.
			{"/svc", `~/regex/\d+`, true, "/regex/12/rest", "/svc/rest"},
			{"/svc", `~/regex/\d+`, false, "/regex/12/rest", "/svc/regex/12/rest"},
			// The query string rides along.
			{"/service", "/route", true, "/route/req?q=1", "/service/req?q=1"},
		}
		hostOf := func(i int) string { return fmt.Sprintf("row%02d.b33.test", i) }
		for i, rw := range rows {
			svc := service(t, n, up, map[string]any{"path": rw.svcPath})
			body := map[string]any{"hosts": []any{hostOf(i)}, "strip_path": rw.strip, "path_handling": "v0"}
			if rw.routePath != "" {
				body["paths"] = []any{rw.routePath}
			}
			route(t, n, idOf(svc), body)
		}
		for i, rw := range rows {
			t.Run(fmt.Sprintf("row%02d", i), func(t *testing.T) {
				r := waitFor(t, n, "row route", withHost(hostOf(i), rw.req), func(r *harness.Response) bool { return r.Status != 404 })
				if r.Status != 200 {
					t.Fatalf("service.path=%q route.path=%q strip=%v request %s: %s", rw.svcPath, rw.routePath, rw.strip, rw.req, r)
				}
				if got := echo.Parse(t, r.Body).URL; got != rw.want {
					t.Errorf("service.path=%q route.path=%q strip_path=%v request %s: upstream %q, want %q",
						rw.svcPath, rw.routePath, rw.strip, rw.req, got, rw.want)
				}
			})
		}
	})

	t.Run("B34_preserve_host", func(t *testing.T) {
		route(t, n, idOf(plain), map[string]any{"paths": []any{"/b34-off"}})
		route(t, n, idOf(plain), map[string]any{"paths": []any{"/b34-on"}, "preserve_host": true})
		_, er := waitProxied(t, n, withHost("client.test:8123", "/b34-off"))
		if want := up.Addr; er.Host != want {
			t.Errorf("preserve_host=false: upstream Host %q, want the service host with its non-default port %q", er.Host, want)
		}
		_, er = waitProxied(t, n, withHost("client.test:8123", "/b34-on"))
		if er.Host != "client.test:8123" {
			t.Errorf("preserve_host=true: upstream Host %q, want the client's client.test:8123", er.Host)
		}
		_, er = waitProxied(t, n, withHost("client.test", "/b34-on"))
		if er.Host != "client.test" {
			t.Errorf("preserve_host=true: upstream Host %q, want client.test", er.Host)
		}
	})

	t.Run("B35_priorities_and_header_matching", func(t *testing.T) {
		ida, idb := idOf(svcA), idOf(svcB)
		route(t, n, ida, map[string]any{"paths": []any{"/b35"}, "headers": map[string]any{"x-b35a": []any{"1"}}})
		route(t, n, idb, map[string]any{"paths": []any{"/b35"}, "headers": map[string]any{"x-b35a": []any{"1"}, "x-b35b": []any{"2"}}})
		route(t, n, ida, map[string]any{"paths": []any{"/b35p"}, "headers": map[string]any{"x-b35c": []any{"1"}}})
		route(t, n, idb, map[string]any{"paths": []any{"/b35p/longer"}, "headers": map[string]any{"x-b35c": []any{"1"}}})
		route(t, n, ida, map[string]any{"paths": []any{"/b35h"}, "hosts": []any{"h1.b35.test"}})
		route(t, n, idb, map[string]any{"paths": []any{"/b35h"}, "hosts": []any{"h2.b35.test"}})
		route(t, n, ida, map[string]any{"paths": []any{"/b35x"}, "hosts": []any{"h3.b35.test"}})
		route(t, n, idb, map[string]any{"paths": []any{"/b35x/longer"}})
		route(t, n, ida, map[string]any{"paths": []any{"/b35case"}, "headers": map[string]any{"x-b35case": []any{"FooBar"}}})
		route(t, n, ida, map[string]any{"paths": []any{"/b35or"}, "headers": map[string]any{"x-b35or": []any{"one", "two"}}})
		route(t, n, ida, map[string]any{"paths": []any{"/b35re"}, "headers": map[string]any{"x-b35re": []any{`~*^v[0-9]+$`}}})
		waitProxied(t, n, get("/b35or", "x-b35or", "one"))

		cases := []struct {
			name string
			rq   harness.Request
			want string // marker service, or "404"
		}{
			{"more headers win", get("/b35", "x-b35a", "1", "x-b35b", "2"), "/from-b"},
			{"fewer headers still match", get("/b35", "x-b35a", "1"), "/from-a"},
			{"no header no match", get("/b35"), "404"},
			{"same headers longer path wins", get("/b35p/longer/x", "x-b35c", "1"), "/from-b"},
			{"same headers shorter path", get("/b35p/other", "x-b35c", "1"), "/from-a"},
			{"host h1", withHost("h1.b35.test", "/b35h"), "/from-a"},
			{"host h2", withHost("h2.b35.test", "/b35h"), "/from-b"},
			{"unknown host", withHost("h9.b35.test", "/b35h"), "404"},
			{"host beats a longer path", withHost("h3.b35.test", "/b35x/longer"), "/from-a"},
			{"header value case-insensitive", get("/b35case", "X-B35Case", "foobar"), "/from-a"},
			{"header value mismatch", get("/b35case", "x-b35case", "other"), "404"},
			{"values are OR-ed", get("/b35or", "x-b35or", "two"), "/from-a"},
			{"regex header value", get("/b35re", "x-b35re", "V12"), "/from-a"},
			{"regex header value mismatch", get("/b35re", "x-b35re", "vx"), "404"},
		}
		for _, c := range cases {
			r := proxy(t, n, c.rq)
			if c.want == "404" {
				if r.Status != 404 {
					t.Errorf("%s: %s, want 404", c.name, r)
				}
				continue
			}
			if got := routedTo(t, r); got != c.want {
				t.Errorf("%s: served by %s, want %s", c.name, got, c.want)
			}
		}
	})

	t.Run("B36_wildcard_hosts", func(t *testing.T) {
		route(t, n, idOf(svcA), map[string]any{"hosts": []any{"*.b36.test"}})
		route(t, n, idOf(svcB), map[string]any{"hosts": []any{"b36r.*"}})
		waitProxied(t, n, withHost("x.b36.test", "/"))
		for host, want := range map[string]string{
			"x.b36.test":      "/from-a",
			"x.b36.test:1234": "/from-a",
			"b36r.example":    "/from-b",
			"b36r.test":       "/from-b",
			"b36.test":        "404",
			"xb36.test":       "404",
			"b36rx.example":   "404",
		} {
			r := proxy(t, n, withHost(host, "/"))
			if want == "404" {
				if r.Status != 404 {
					t.Errorf("Host %s: %s, want 404", host, r)
				}
				continue
			}
			if got := routedTo(t, r); got != want {
				t.Errorf("Host %s: served by %s, want %s", host, got, want)
			}
		}
	})

	t.Run("B37_disabled_service_skipped", func(t *testing.T) {
		dis := service(t, n, up, map[string]any{"path": "/from-dis", "enabled": false})
		route(t, n, idOf(dis), map[string]any{"paths": []any{"/b37/x"}})
		route(t, n, idOf(dis), map[string]any{"paths": []any{"/c37-only"}})
		route(t, n, idOf(svcA), map[string]any{"paths": []any{"/b37"}})
		r := waitFor(t, n, "fallback route", get("/b37/x"), func(r *harness.Response) bool { return r.Status == 200 })
		if got := routedTo(t, r); got != "/from-a" {
			t.Errorf("/b37/x served by %s, want /from-a (the route of the disabled service is skipped)", got)
		}
		harness.CheckMessage(t, proxy(t, n, get("/c37-only")), http.StatusNotFound, noRoute)

		patch(t, n, "/services/"+idOf(dis), map[string]any{"enabled": true})
		r = waitFor(t, n, "re-enabled service", get("/b37/x"), func(r *harness.Response) bool { return routedTo(t, r) == "/from-dis" })
		if got := routedTo(t, r); got != "/from-dis" {
			t.Errorf("after enabling: served by %s, want /from-dis", got)
		}
	})

	t.Run("X_route_changes_apply", func(t *testing.T) {
		rt := route(t, n, idOf(svcA), map[string]any{"paths": []any{"/xchg"}})
		r := waitFor(t, n, "new route", get("/xchg"), func(r *harness.Response) bool { return r.Status == 200 })
		if got := routedTo(t, r); got != "/from-a" {
			t.Errorf("served by %s", got)
		}
		patch(t, n, "/routes/"+idOf(rt), map[string]any{"service": map[string]any{"id": idOf(svcB)}})
		waitFor(t, n, "route moved to svc-b", get("/xchg"), func(r *harness.Response) bool { return routedTo(t, r) == "/from-b" })
		harness.CheckStatus(t, harness.Method(t, http.MethodDelete, n.Admin("/routes/"+idOf(rt))), http.StatusNoContent)
		waitFor(t, n, "deleted route stops matching", get("/xchg"), func(r *harness.Response) bool { return r.Status == 404 })
	})
}
