package e2e

import (
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/test/echo"
	"github.com/gatehouse-gw/gatehouse/test/harness"
)

var cacheKeyRe = regexp.MustCompile(`^[0-9a-f]{64}$`)

// TestGettingStarted walks Kong's "Get started with Kong Gateway" guide
// (services, routes, rate limiting, proxy caching, key authentication,
// load balancing) with real HTTP against a real gatehouse process. The
// guide's curl commands send form bodies; so does this test.
func TestGettingStarted(t *testing.T) {
	n := harness.Start(t, harness.Options{NodeID: "getting-started"})
	up1 := echo.StartT(t, "echo-1")
	a := admin{n}

	var serviceID string
	ok := t.Run("services", func(t *testing.T) {
		r := a.form(t, http.MethodPost, "/services", "name", "example_service", "url", up1.URL)
		harness.ExpectStatus(t, r, http.StatusCreated)
		svc := r.JSON(t)
		serviceID, _ = svc["id"].(string)
		if !harness.IsUUID(serviceID) {
			t.Fatalf("service id %v is not a UUID", svc["id"])
		}
		for k, want := range map[string]any{"name": "example_service", "host": "127.0.0.1", "port": float64(up1.Port), "protocol": "http", "path": nil, "retries": 5.0} {
			if got, present := svc[k]; !present || got != want {
				t.Errorf("created service %s = %v (present %v), want %v", k, got, present, want)
			}
		}

		r = a.get(t, "/services/example_service")
		harness.ExpectStatus(t, r, http.StatusOK)
		if got := r.JSON(t)["id"]; got != serviceID {
			t.Errorf("GET by name returned id %v, want %s", got, serviceID)
		}

		r = a.form(t, http.MethodPatch, "/services/example_service", "retries", "6")
		harness.ExpectStatus(t, r, http.StatusOK)
		if got := r.JSON(t)["retries"]; got != 6.0 {
			t.Errorf("PATCH retries=6 returned retries %v", got)
		}
		if got := a.get(t, "/services/"+serviceID).JSON(t)["retries"]; got != 6.0 {
			t.Errorf("GET after PATCH: retries %v, want 6", got)
		}

		r = a.get(t, "/services")
		harness.ExpectStatus(t, r, http.StatusOK)
		if !ids(t, r)[serviceID] {
			t.Errorf("GET /services does not list %s: %s", serviceID, r)
		}
	})
	if !ok {
		t.Fatal("service step failed; the rest of the guide depends on it")
	}

	var routeID string
	ok = t.Run("routes", func(t *testing.T) {
		r := a.form(t, http.MethodPost, "/services/example_service/routes", "name", "example_route", "paths[]", "/mock")
		harness.ExpectStatus(t, r, http.StatusCreated)
		route := r.JSON(t)
		routeID, _ = route["id"].(string)
		if !harness.IsUUID(routeID) {
			t.Fatalf("route id %v is not a UUID", route["id"])
		}
		if got := harness.Str(route, "service.id"); got != serviceID {
			t.Errorf("route service.id = %q, want %s (set from the URL)", got, serviceID)
		}
		if p, _ := route["paths"].([]any); len(p) != 1 || p[0] != "/mock" {
			t.Errorf("route paths = %v, want [/mock]", route["paths"])
		}
		if route["strip_path"] != true {
			t.Errorf("route strip_path = %v, want the default true", route["strip_path"])
		}

		r = a.get(t, "/routes/example_route")
		harness.ExpectStatus(t, r, http.StatusOK)
		if got := r.JSON(t)["id"]; got != routeID {
			t.Errorf("GET /routes/example_route id %v, want %s", got, routeID)
		}

		r = a.form(t, http.MethodPatch, "/routes/example_route", "tags", "tutorial")
		harness.ExpectStatus(t, r, http.StatusOK)
		if tags, _ := r.JSON(t)["tags"].([]any); len(tags) != 1 || tags[0] != "tutorial" {
			t.Errorf("PATCH tags=tutorial gave tags %v, want [tutorial]", r.JSON(t)["tags"])
		}

		r = a.get(t, "/routes")
		harness.ExpectStatus(t, r, http.StatusOK)
		if !ids(t, r)[routeID] {
			t.Errorf("GET /routes does not list %s: %s", routeID, r)
		}
	})
	if !ok {
		t.Fatal("route step failed; the rest of the guide depends on it")
	}

	ok = t.Run("proxy", func(t *testing.T) {
		r := waitProxy(t, n, "route /mock serves traffic", "/mock/anything", func(r *harness.Response) bool { return r.Status == 200 })
		er := echo.Parse(t, r.Body)
		if er.Path != "/anything" || er.URL != "/anything" {
			t.Errorf("upstream saw path %q (url %q), want /anything (strip_path strips /mock)", er.Path, er.URL)
		}
		if er.Upstream != "echo-1" {
			t.Errorf("served by %q, want echo-1", er.Upstream)
		}
		if xff := er.Header("X-Forwarded-For"); !strings.Contains(xff, "127.0.0.1") {
			t.Errorf("upstream X-Forwarded-For = %q, want the client address 127.0.0.1", xff)
		}
		if v := er.Header("X-Forwarded-Host"); v != "127.0.0.1" {
			t.Errorf("upstream X-Forwarded-Host = %q, want 127.0.0.1", v)
		}
		if v := er.Header("X-Forwarded-Proto"); v != "http" {
			t.Errorf("upstream X-Forwarded-Proto = %q, want http", v)
		}
		if v := er.Header("X-Real-IP"); v != "127.0.0.1" {
			t.Errorf("upstream X-Real-IP = %q, want 127.0.0.1", v)
		}
		intHeader(t, r, "X-Kong-Upstream-Latency")
		intHeader(t, r, "X-Kong-Proxy-Latency")
		if via := r.Header.Get("Via"); !strings.Contains(via, "kong/") {
			t.Errorf("response Via = %q, want it to contain kong/", via)
		}
		if r.Header.Get("X-Kong-Request-Id") == "" {
			t.Errorf("response lacks X-Kong-Request-Id: %v", r.Header)
		}
		if r.Header.Get("X-Upstream-Name") != "echo-1" {
			t.Errorf("upstream response header X-Upstream-Name not passed through: %v", r.Header)
		}
	})
	if !ok {
		t.Fatal("proxying through the route failed; the plugin steps depend on it")
	}

	t.Run("rate_limiting", func(t *testing.T) {
		harness.WaitFreshMinute(t, 20*time.Second)
		r := a.form(t, http.MethodPost, "/plugins", "name", "rate-limiting", "config.minute", "5", "config.policy", "local")
		harness.ExpectStatus(t, r, http.StatusCreated)
		plugin := r.JSON(t)
		pluginID, _ := plugin["id"].(string)
		if v, _ := harness.Field(plugin, "config.minute"); v != 5.0 {
			t.Errorf("plugin config.minute = %v, want 5", v)
		}
		if v, _ := harness.Field(plugin, "config.policy"); v != "local" {
			t.Errorf("plugin config.policy = %v, want local", v)
		}
		defer func() {
			r := a.del(t, "/plugins/"+pluginID, true)
			harness.CheckStatus(t, r, http.StatusNoContent)
			waitProxy(t, n, "rate limiting removed", "/mock/anything", func(r *harness.Response) bool {
				return r.Status == 200 && r.Header.Get("X-RateLimit-Limit-Minute") == ""
			})
		}()

		// The first response that carries the headers is the first one the
		// plugin counted.
		first := waitProxy(t, n, "rate limiting active", "/mock/anything", func(r *harness.Response) bool {
			return r.Header.Get("X-RateLimit-Limit-Minute") != ""
		})
		resps := []*harness.Response{first}
		for i := 0; i < 4; i++ {
			resps = append(resps, proxyGet(t, n, "/mock/anything"))
		}
		for i, r := range resps {
			if r.Status != 200 {
				t.Errorf("request %d: status %d, want 200: %s", i+1, r.Status, r)
				continue
			}
			if got := r.Header.Get("X-RateLimit-Limit-Minute"); got != "5" {
				t.Errorf("request %d: X-RateLimit-Limit-Minute = %q, want 5", i+1, got)
			}
			if got, want := r.Header.Get("X-RateLimit-Remaining-Minute"), strconv.Itoa(4-i); got != want {
				t.Errorf("request %d: X-RateLimit-Remaining-Minute = %q, want %s", i+1, got, want)
			}
		}
		r = proxyGet(t, n, "/mock/anything")
		harness.CheckMessage(t, r, http.StatusTooManyRequests, "API rate limit exceeded")
		if ra, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || ra < 1 || ra > 60 {
			t.Errorf("429 Retry-After = %q, want 1..60", r.Header.Get("Retry-After"))
		}
	})

	t.Run("proxy_caching", func(t *testing.T) {
		r := a.form(t, http.MethodPost, "/plugins",
			"name", "proxy-cache",
			"config.request_method", "GET",
			"config.response_code", "200",
			"config.content_type", "application/json",
			"config.cache_ttl", "30",
			"config.strategy", "memory")
		harness.ExpectStatus(t, r, http.StatusCreated)
		plugin := r.JSON(t)
		pluginID, _ := plugin["id"].(string)
		if v, _ := harness.Field(plugin, "config.request_method"); !equalJSON(v, []any{"GET"}) {
			t.Errorf("config.request_method = %v, want [GET] (a scalar form value for an array field is wrapped)", v)
		}
		if v, _ := harness.Field(plugin, "config.response_code"); !equalJSON(v, []any{200.0}) {
			t.Errorf("config.response_code = %v, want [200]", v)
		}
		defer func() {
			r := a.del(t, "/plugins/"+pluginID, true)
			harness.CheckStatus(t, r, http.StatusNoContent)
			waitProxy(t, n, "proxy cache removed", "/mock/anything", func(r *harness.Response) bool {
				return r.Status == 200 && r.Header.Get("X-Cache-Status") == ""
			})
		}()

		miss := waitProxy(t, n, "proxy cache active", "/mock/anything", func(r *harness.Response) bool {
			return r.Header.Get("X-Cache-Status") != ""
		})
		if got := miss.Header.Get("X-Cache-Status"); got != "Miss" {
			t.Errorf("first cached request: X-Cache-Status %q, want Miss", got)
		}
		before := up1.Requests()
		hit := proxyGet(t, n, "/mock/anything")
		harness.CheckStatus(t, hit, 200)
		if got := hit.Header.Get("X-Cache-Status"); got != "Hit" {
			t.Errorf("second request: X-Cache-Status %q, want Hit", got)
		}
		if up1.Requests() != before {
			t.Errorf("a cache hit reached the upstream (%d -> %d requests)", before, up1.Requests())
		}
		key := miss.Header.Get("X-Cache-Key")
		if !cacheKeyRe.MatchString(key) {
			t.Errorf("X-Cache-Key %q is not 64 lowercase hex characters", key)
		}
		if hk := hit.Header.Get("X-Cache-Key"); hk != key {
			t.Errorf("hit X-Cache-Key %q differs from miss %q", hk, key)
		}
		if string(hit.Body) != string(miss.Body) {
			t.Errorf("hit body differs from the cached miss body\nmiss: %s\n hit: %s", miss.Body, hit.Body)
		}
		if key == "" {
			t.FailNow()
		}

		r = a.get(t, "/proxy-cache/"+key)
		harness.CheckStatus(t, r, http.StatusOK)
		r.JSON(t)
		r = a.del(t, "/proxy-cache/"+key, false)
		harness.CheckStatus(t, r, http.StatusNoContent)
		r = a.get(t, "/proxy-cache/"+key)
		harness.CheckStatus(t, r, http.StatusNotFound)

		again := proxyGet(t, n, "/mock/anything")
		if got := again.Header.Get("X-Cache-Status"); got != "Miss" {
			t.Errorf("after purging the key: X-Cache-Status %q, want Miss", got)
		}
	})

	t.Run("key_authentication", func(t *testing.T) {
		r := a.form(t, http.MethodPost, "/consumers", "username", "luka")
		harness.ExpectStatus(t, r, http.StatusCreated)
		consumerID, _ := r.JSON(t)["id"].(string)

		r = a.form(t, http.MethodPost, "/consumers/luka/key-auth", "key", "top-secret-key")
		harness.ExpectStatus(t, r, http.StatusCreated)
		cred := r.JSON(t)
		if cred["key"] != "top-secret-key" {
			t.Errorf("credential key = %v, want top-secret-key", cred["key"])
		}
		if got := harness.Str(cred, "consumer.id"); got != consumerID {
			t.Errorf("credential consumer.id = %q, want %s", got, consumerID)
		}

		r = a.form(t, http.MethodPost, "/plugins", "name", "key-auth")
		harness.ExpectStatus(t, r, http.StatusCreated)
		pluginID, _ := r.JSON(t)["id"].(string)

		r = waitProxy(t, n, "key-auth active", "/mock/anything", func(r *harness.Response) bool { return r.Status == 401 })
		harness.CheckMessage(t, r, http.StatusUnauthorized, "No API key found in request")
		if got := r.Header.Get("WWW-Authenticate"); got != "Key" {
			t.Errorf("401 WWW-Authenticate = %q, want Key", got)
		}

		r = proxyGet(t, n, "/mock/anything", "apikey", "bad-key")
		harness.CheckMessage(t, r, http.StatusUnauthorized, "Invalid authentication credentials")
		if got := r.Header.Get("WWW-Authenticate"); got != "Key" {
			t.Errorf("bad key: WWW-Authenticate = %q, want Key", got)
		}

		r = proxyGet(t, n, "/mock/anything", "apikey", "top-secret-key")
		if harness.CheckStatus(t, r, http.StatusOK) {
			er := echo.Parse(t, r.Body)
			if got := er.Header("X-Consumer-Username"); got != "luka" {
				t.Errorf("upstream X-Consumer-Username = %q, want luka", got)
			}
			if got := er.Header("X-Consumer-ID"); got != consumerID {
				t.Errorf("upstream X-Consumer-ID = %q, want %s", got, consumerID)
			}
		}

		r = a.form(t, http.MethodPatch, "/plugins/"+pluginID, "enabled", "false")
		harness.ExpectStatus(t, r, http.StatusOK)
		if r.JSON(t)["enabled"] != false {
			t.Errorf("PATCH enabled=false returned enabled %v", r.JSON(t)["enabled"])
		}
		waitProxy(t, n, "key-auth disabled", "/mock/anything", func(r *harness.Response) bool { return r.Status == 200 })
	})

	t.Run("load_balancing", func(t *testing.T) {
		up2 := echo.StartT(t, "echo-2")
		r := a.form(t, http.MethodPost, "/upstreams", "name", "example_upstream")
		harness.ExpectStatus(t, r, http.StatusCreated)
		for _, up := range []*echo.Server{up1, up2} {
			r = a.form(t, http.MethodPost, "/upstreams/example_upstream/targets", "target", up.Addr)
			harness.ExpectStatus(t, r, http.StatusCreated)
			if got := r.JSON(t)["target"]; got != up.Addr {
				t.Errorf("target = %v, want %s", got, up.Addr)
			}
		}
		r = a.form(t, http.MethodPatch, "/services/example_service", "host", "example_upstream")
		harness.ExpectStatus(t, r, http.StatusOK)
		if got := r.JSON(t)["host"]; got != "example_upstream" {
			t.Errorf("service host = %v, want example_upstream", got)
		}

		waitProxy(t, n, "echo-2 receives traffic through the upstream", "/mock/anything", func(r *harness.Response) bool {
			return r.Status == 200 && r.Header.Get("X-Upstream-Name") == "echo-2"
		})
		counts := map[string]int{}
		for i := 0; i < 10; i++ {
			r := proxyGet(t, n, "/mock/anything")
			if r.Status != 200 {
				t.Errorf("request %d: %s", i+1, r)
				continue
			}
			counts[r.Header.Get("X-Upstream-Name")]++
		}
		if counts["echo-1"] < 3 || counts["echo-2"] < 3 || counts["echo-1"]+counts["echo-2"] != 10 {
			t.Errorf("10 requests over two equal targets were spread %v; want both targets, each at least 3", counts)
		}
	})
}

func equalJSON(a, b any) bool {
	as, aok := a.([]any)
	bs, bok := b.([]any)
	if aok != bok {
		return false
	}
	if !aok {
		return a == b
	}
	if len(as) != len(bs) {
		return false
	}
	for i := range as {
		if !equalJSON(as[i], bs[i]) {
			return false
		}
	}
	return true
}
