package conformance

import (
	"net/http"
	"regexp"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/test/echo"
	"github.com/gatehouse-gw/gatehouse/test/harness"
)

var cacheKeyRe = regexp.MustCompile(`^[0-9a-f]{64}$`)

// cacheStatus sends rq and returns the response and its X-Cache-Status.
func cacheStatus(t *testing.T, n *harness.Node, rq harness.Request) (*harness.Response, string) {
	t.Helper()
	r := proxy(t, n, rq)
	return r, r.Header.Get("X-Cache-Status")
}

// expectCache sends rq and checks X-Cache-Status; it returns the response.
func expectCache(t *testing.T, n *harness.Node, what string, rq harness.Request, want string) *harness.Response {
	t.Helper()
	r, got := cacheStatus(t, n, rq)
	if got != want {
		t.Errorf("%s (%s %s): X-Cache-Status %q, want %q (status %d)", what, rq.Method, rq.URL, got, want, r.Status)
	}
	return r
}

// counter is the echo /cache counter in a cached or fresh body.
func counter(t *testing.T, r *harness.Response) int64 {
	t.Helper()
	return echo.Parse(t, r.Body).Counter
}

// TestProxyCache covers behaviour 45 (proxy-cache, memory strategy) and the
// proxy-cache admin endpoints of §3.6.
func TestProxyCache(t *testing.T) {
	n := harness.Start(t, harness.Options{NodeID: "conf-proxy-cache"})
	up := echo.StartT(t, "cache-echo")
	svc := service(t, n, up, nil)

	// cached creates a route at path with proxy-cache (memory) and extra
	// config on it and waits until the plugin answers.
	cached := func(t *testing.T, path string, config map[string]any, plugins ...map[string]any) map[string]any {
		t.Helper()
		rt := route(t, n, idOf(svc), map[string]any{"paths": []any{path}})
		for _, p := range plugins {
			create(t, n, "/routes/"+idOf(rt)+"/plugins", p)
		}
		cfg := map[string]any{"strategy": "memory"}
		for k, v := range config {
			cfg[k] = v
		}
		p := create(t, n, "/routes/"+idOf(rt)+"/plugins", map[string]any{"name": "proxy-cache", "config": cfg})
		waitFor(t, n, "proxy-cache on "+path, get(path+"/status/201"), func(r *harness.Response) bool {
			return r.Header.Get("X-Cache-Status") != ""
		})
		return p
	}
	plugin := cached(t, "/pc", nil)

	var hitKey string
	t.Run("B45_miss_then_hit", func(t *testing.T) {
		before := up.CacheCounter()
		miss := expectCache(t, n, "first", get("/pc/cache/1"), "Miss")
		harness.CheckStatus(t, miss, 200)
		hit := expectCache(t, n, "second", get("/pc/cache/1"), "Hit")
		harness.CheckStatus(t, hit, 200)
		if got := up.CacheCounter() - before; got != 1 {
			t.Errorf("upstream served %d /cache requests for a miss and a hit, want 1", got)
		}
		if counter(t, hit) != counter(t, miss) {
			t.Errorf("hit body counter %d, miss %d: the hit was not served from the cache", counter(t, hit), counter(t, miss))
		}
		key := miss.Header.Get("X-Cache-Key")
		if !cacheKeyRe.MatchString(key) {
			t.Errorf("X-Cache-Key %q, want 64 lowercase hex characters", key)
		}
		if hk := hit.Header.Get("X-Cache-Key"); hk != key {
			t.Errorf("hit key %q differs from miss key %q", hk, key)
		}
		if age, ok := intHeader(t, hit.Header, "Age"); ok && (age < 0 || age > 10) {
			t.Errorf("hit Age %d, want a small non-negative number", age)
		}
		if ct := hit.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("hit Content-Type %q, want the cached application/json", ct)
		}
		if hit.Header.Get("X-Upstream-Name") != "cache-echo" {
			t.Errorf("the hit lost the upstream's headers")
		}
		hitKey = key
	})

	t.Run("B45_bypass", func(t *testing.T) {
		r := expectCache(t, n, "POST is not a cached method", harness.Request{Method: http.MethodPost, URL: "/pc/cache/post"}, "Bypass")
		harness.CheckStatus(t, r, 200)
		expectCache(t, n, "POST again", harness.Request{Method: http.MethodPost, URL: "/pc/cache/post"}, "Bypass")
		expectCache(t, n, "text/html is not a cached type", get("/pc/cache/html?ct=text/html"), "Bypass")
		expectCache(t, n, "text/html again", get("/pc/cache/html?ct=text/html"), "Bypass")
		expectCache(t, n, "500 is not a cached status", get("/pc/status/500"), "Bypass")
		expectCache(t, n, "404 is cached by default", get("/pc/status/404"), "Miss")
		expectCache(t, n, "404 again", get("/pc/status/404"), "Hit")
		// cache_control=false: upstream directives are ignored.
		expectCache(t, n, "private without cache_control", get("/pc/cache/priv?cc=private"), "Miss")
		expectCache(t, n, "private without cache_control", get("/pc/cache/priv?cc=private"), "Hit")
	})

	t.Run("B45_separate_keys_per_route", func(t *testing.T) {
		svc2 := service(t, n, up, nil)
		create(t, n, "/services/"+idOf(svc2)+"/plugins", map[string]any{"name": "proxy-cache", "config": map[string]any{"strategy": "memory"}})
		route(t, n, idOf(svc2), map[string]any{"paths": []any{"/pcr"}, "hosts": []any{"a.pc.test"}})
		route(t, n, idOf(svc2), map[string]any{"paths": []any{"/pcr"}, "hosts": []any{"b.pc.test"}})
		waitFor(t, n, "route a", withHost("a.pc.test", "/pcr/status/201"), func(r *harness.Response) bool { return r.Header.Get("X-Cache-Status") != "" })
		waitFor(t, n, "route b", withHost("b.pc.test", "/pcr/status/201"), func(r *harness.Response) bool { return r.Header.Get("X-Cache-Status") != "" })
		a1 := expectCache(t, n, "route a first", withHost("a.pc.test", "/pcr/cache/x"), "Miss")
		expectCache(t, n, "route a second", withHost("a.pc.test", "/pcr/cache/x"), "Hit")
		b1 := expectCache(t, n, "route b, same path", withHost("b.pc.test", "/pcr/cache/x"), "Miss")
		expectCache(t, n, "route b second", withHost("b.pc.test", "/pcr/cache/x"), "Hit")
		if a1.Header.Get("X-Cache-Key") == b1.Header.Get("X-Cache-Key") {
			t.Errorf("two routes share the cache key %s", a1.Header.Get("X-Cache-Key"))
		}
	})

	t.Run("B45_separate_keys_per_consumer", func(t *testing.T) {
		for _, u := range []string{"pc-c1", "pc-c2"} {
			create(t, n, "/consumers", map[string]any{"username": u})
			create(t, n, "/consumers/"+u+"/key-auth", map[string]any{"key": u + "-key"})
		}
		rt := route(t, n, idOf(svc), map[string]any{"paths": []any{"/pcc"}})
		create(t, n, "/routes/"+idOf(rt)+"/plugins", map[string]any{"name": "key-auth"})
		create(t, n, "/routes/"+idOf(rt)+"/plugins", map[string]any{"name": "proxy-cache", "config": map[string]any{"strategy": "memory"}})
		waitFor(t, n, "cache with auth", get("/pcc/status/201", "apikey", "pc-c1-key"), func(r *harness.Response) bool { return r.Header.Get("X-Cache-Status") != "" })
		c1 := expectCache(t, n, "consumer 1 first", get("/pcc/cache/y", "apikey", "pc-c1-key"), "Miss")
		expectCache(t, n, "consumer 1 second", get("/pcc/cache/y", "apikey", "pc-c1-key"), "Hit")
		c2 := expectCache(t, n, "consumer 2 first", get("/pcc/cache/y", "apikey", "pc-c2-key"), "Miss")
		h2 := expectCache(t, n, "consumer 2 second", get("/pcc/cache/y", "apikey", "pc-c2-key"), "Hit")
		if c1.Header.Get("X-Cache-Key") == c2.Header.Get("X-Cache-Key") {
			t.Errorf("two consumers share a cache key")
		}
		if got := echo.Parse(t, h2.Body).Header("X-Consumer-Username"); got != "pc-c2" {
			t.Errorf("consumer 2's hit served the body of %q", got)
		}
		// Authentication still runs before the cache.
		r := proxy(t, n, get("/pcc/cache/y"))
		harness.CheckStatus(t, r, 401)
	})

	t.Run("B45_vary_query_params", func(t *testing.T) {
		// Default: every argument counts, in any order.
		expectCache(t, n, "b=1", get("/pc/cache/q?b=1"), "Miss")
		expectCache(t, n, "b=2", get("/pc/cache/q?b=2"), "Miss")
		expectCache(t, n, "b=1 again", get("/pc/cache/q?b=1"), "Hit")
		expectCache(t, n, "x,y", get("/pc/cache/q?x=1&y=2"), "Miss")
		expectCache(t, n, "y,x (sorted)", get("/pc/cache/q?y=2&x=1"), "Hit")

		cached(t, "/pcq", map[string]any{"vary_query_params": []any{"a"}})
		expectCache(t, n, "a=1&b=1", get("/pcq/cache/q?a=1&b=1"), "Miss")
		expectCache(t, n, "a=1&b=2 (b ignored)", get("/pcq/cache/q?a=1&b=2"), "Hit")
		expectCache(t, n, "a=2", get("/pcq/cache/q?a=2&b=1"), "Miss")
	})

	t.Run("B45_vary_headers", func(t *testing.T) {
		// Default: headers do not count.
		expectCache(t, n, "X-Vary 1", get("/pc/cache/h", "X-Vary", "1"), "Miss")
		expectCache(t, n, "X-Vary 2 (ignored)", get("/pc/cache/h", "X-Vary", "2"), "Hit")

		cached(t, "/pch", map[string]any{"vary_headers": []any{"X-Vary"}})
		expectCache(t, n, "X-Vary 1", get("/pch/cache/h", "X-Vary", "1"), "Miss")
		expectCache(t, n, "X-Vary 1 again", get("/pch/cache/h", "X-Vary", "1"), "Hit")
		expectCache(t, n, "X-Vary 2", get("/pch/cache/h", "X-Vary", "2"), "Miss")
		expectCache(t, n, "x-vary 2, other case", get("/pch/cache/h", "x-vary", "2"), "Hit")
	})

	t.Run("B45_cache_control", func(t *testing.T) {
		cached(t, "/pcx", map[string]any{"cache_control": true})
		expectCache(t, n, "upstream private", get("/pcx/cache/p?cc=private"), "Bypass")
		expectCache(t, n, "upstream no-store", get("/pcx/cache/p?cc=no-store"), "Bypass")
		expectCache(t, n, "upstream max-age=0", get("/pcx/cache/p?cc=max-age%3D0"), "Bypass")
		expectCache(t, n, "upstream max-age=60", get("/pcx/cache/m?cc=max-age%3D60"), "Miss")
		expectCache(t, n, "upstream max-age=60 again", get("/pcx/cache/m?cc=max-age%3D60"), "Hit")
		expectCache(t, n, "request no-cache", get("/pcx/cache/m?cc=max-age%3D60", "Cache-Control", "no-cache"), "Bypass")
		expectCache(t, n, "request no-store", get("/pcx/cache/m?cc=max-age%3D60", "Cache-Control", "no-store"), "Bypass")
		expectCache(t, n, "request Authorization", get("/pcx/cache/m?cc=max-age%3D60", "Authorization", "Bearer x"), "Bypass")
		r := proxy(t, n, get("/pcx/cache/never-seen?cc=max-age%3D60", "Cache-Control", "only-if-cached"))
		harness.CheckStatus(t, r, http.StatusGatewayTimeout)
	})

	t.Run("B45_ttl_expiry", func(t *testing.T) {
		cached(t, "/pct", map[string]any{"cache_ttl": 1})
		m := expectCache(t, n, "first", get("/pct/cache/t"), "Miss")
		expectCache(t, n, "second", get("/pct/cache/t"), "Hit")
		time.Sleep(2200 * time.Millisecond)
		r, st := cacheStatus(t, n, get("/pct/cache/t"))
		if st != "Miss" && st != "Refresh" {
			t.Errorf("after cache_ttl: X-Cache-Status %q, want Miss or Refresh", st)
		}
		if counter(t, r) == counter(t, m) {
			t.Errorf("after cache_ttl the stale body was served")
		}
		expectCache(t, n, "fresh again", get("/pct/cache/t"), "Hit")
	})

	t.Run("X_rate_limit_headers_not_replayed", func(t *testing.T) {
		cached(t, "/pcrl", nil, map[string]any{"name": "rate-limiting", "config": map[string]any{"minute": 1000}})
		harness.WaitFreshMinute(t, 5*time.Second)
		m := expectCache(t, n, "first", get("/pcrl/cache/r"), "Miss")
		h := expectCache(t, n, "second", get("/pcrl/cache/r"), "Hit")
		rm, ok1 := intHeader(t, m.Header, "X-RateLimit-Remaining-Minute")
		rh, ok2 := intHeader(t, h.Header, "X-RateLimit-Remaining-Minute")
		if ok1 && ok2 && rh != rm-1 {
			t.Errorf("hit X-RateLimit-Remaining-Minute %d, miss %d: want the live count (miss-1), not the cached header", rh, rm)
		}
	})

	t.Run("X_admin_purge", func(t *testing.T) {
		if hitKey == "" {
			t.Skip("no key from B45_miss_then_hit")
		}
		r := harness.Get(t, n.Admin("/proxy-cache/"+hitKey))
		harness.CheckStatus(t, r, http.StatusOK)
		r.JSON(t)
		r = harness.Get(t, n.Admin("/proxy-cache/"+idOf(plugin)+"/caches/"+hitKey))
		harness.CheckStatus(t, r, http.StatusOK)

		r = harness.Method(t, http.MethodDelete, n.Admin("/proxy-cache/"+hitKey))
		harness.CheckStatus(t, r, http.StatusNoContent)
		harness.CheckStatus(t, harness.Get(t, n.Admin("/proxy-cache/"+hitKey)), http.StatusNotFound)
		harness.CheckStatus(t, harness.Method(t, http.MethodDelete, n.Admin("/proxy-cache/"+hitKey)), http.StatusNotFound)
		expectCache(t, n, "after purging the key", get("/pc/cache/1"), "Miss")
		expectCache(t, n, "cached again", get("/pc/cache/1"), "Hit")

		r = harness.Method(t, http.MethodDelete, n.Admin("/proxy-cache"))
		harness.CheckStatus(t, r, http.StatusNoContent)
		expectCache(t, n, "after purging all", get("/pc/cache/1"), "Miss")
		expectCache(t, n, "after purging all", get("/pc/status/404"), "Miss")
		harness.CheckStatus(t, harness.Get(t, n.Admin("/proxy-cache/"+hitKey+"0")), http.StatusNotFound)
	})
}
