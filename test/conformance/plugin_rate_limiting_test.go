package conformance

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/test/echo"
	"github.com/gatehouse-gw/gatehouse/test/harness"
)

// TestRateLimiting covers behaviour 44 (rate-limiting, local policy) and
// the plugin scope precedence of §1.4.
func TestRateLimiting(t *testing.T) {
	n := harness.Start(t, harness.Options{NodeID: "conf-rate-limiting"})
	up := echo.StartT(t, "rl-echo")
	svc := service(t, n, up, nil)

	// limited creates a route, checks it proxies, then adds rate-limiting
	// with config and waits for the first limited response, which is the
	// first request the plugin counted. It returns that response.
	limited := func(t *testing.T, path string, config map[string]any, headers ...string) *harness.Response {
		t.Helper()
		rt := route(t, n, idOf(svc), map[string]any{"paths": []any{path}})
		waitProxied(t, n, get(path, headers...))
		create(t, n, "/routes/"+idOf(rt)+"/plugins", map[string]any{"name": "rate-limiting", "config": config})
		return waitFor(t, n, "rate limiting on "+path, get(path, headers...), func(r *harness.Response) bool {
			if hide, _ := config["hide_client_headers"].(bool); hide {
				return r.Status != 200
			}
			return r.Header.Get("X-RateLimit-Limit-Minute") != "" || r.Status != 200
		})
	}

	t.Run("B44_minute_6", func(t *testing.T) {
		harness.WaitFreshMinute(t, 20*time.Second)
		resps := []*harness.Response{limited(t, "/rl6", map[string]any{"minute": 6, "policy": "local"})}
		for i := 0; i < 6; i++ {
			resps = append(resps, proxy(t, n, get("/rl6")))
		}
		var statuses, remaining []string
		for _, r := range resps {
			statuses = append(statuses, strconv.Itoa(r.Status))
			remaining = append(remaining, r.Header.Get("X-RateLimit-Remaining-Minute"))
		}
		if got := strings.Join(statuses, ","); got != "200,200,200,200,200,200,429" {
			t.Errorf("statuses %s, want 200×6 then 429", got)
		}
		if got := strings.Join(remaining, ","); got != "5,4,3,2,1,0,0" {
			t.Errorf("X-RateLimit-Remaining-Minute %s, want 5,4,3,2,1,0,0", got)
		}
		wantReset := 60 - time.Now().Second()
		for i, r := range resps {
			if got := r.Header.Get("X-RateLimit-Limit-Minute"); got != "6" {
				t.Errorf("request %d: X-RateLimit-Limit-Minute %q, want 6", i+1, got)
			}
			if got := r.Header.Get("RateLimit-Limit"); got != "6" {
				t.Errorf("request %d: RateLimit-Limit %q, want 6", i+1, got)
			}
			if got, want := r.Header.Get("RateLimit-Remaining"), remaining[i]; got != want {
				t.Errorf("request %d: RateLimit-Remaining %q, want %q", i+1, got, want)
			}
			if reset, ok := intHeader(t, r.Header, "RateLimit-Reset"); ok && (reset < 1 || reset > 60 || abs(reset-wantReset) > 3) {
				t.Errorf("request %d: RateLimit-Reset %d, want 1..60 and about %d (seconds left in the minute)", i+1, reset, wantReset)
			}
		}
		last := resps[len(resps)-1]
		harness.CheckMessage(t, last, http.StatusTooManyRequests, "API rate limit exceeded")
		if ra, ok := intHeader(t, last.Header, "Retry-After"); ok && (ra < 1 || ra > 60) {
			t.Errorf("Retry-After %d, want 1..60", ra)
		}
		if last.Header.Get("X-Upstream-Name") != "" {
			t.Errorf("the blocked request reached the upstream")
		}
		if last.Header.Get("X-Kong-Request-Id") == "" {
			t.Errorf("429 without X-Kong-Request-Id")
		}
		// Other routes are not limited by this route's plugin.
		route(t, n, idOf(svc), map[string]any{"paths": []any{"/rl6-free"}})
		r := waitFor(t, n, "free route", get("/rl6-free"), func(r *harness.Response) bool { return r.Status == 200 })
		if r.Header.Get("X-RateLimit-Limit-Minute") != "" {
			t.Errorf("a route without the plugin got rate-limit headers")
		}
	})

	t.Run("B44_several_periods", func(t *testing.T) {
		harness.WaitFreshMinute(t, 15*time.Second)
		first := limited(t, "/rl-multi", map[string]any{"minute": 3, "hour": 5})
		for h, want := range map[string]string{
			"X-RateLimit-Limit-Minute": "3", "X-RateLimit-Remaining-Minute": "2",
			"X-RateLimit-Limit-Hour": "5", "X-RateLimit-Remaining-Hour": "4",
			"RateLimit-Limit": "3", "RateLimit-Remaining": "2",
		} {
			if got := first.Header.Get(h); got != want {
				t.Errorf("%s = %q, want %q", h, got, want)
			}
		}
		proxy(t, n, get("/rl-multi"))
		proxy(t, n, get("/rl-multi"))
		r := proxy(t, n, get("/rl-multi"))
		harness.CheckMessage(t, r, http.StatusTooManyRequests, "API rate limit exceeded")
	})

	t.Run("B44_hide_client_headers", func(t *testing.T) {
		harness.WaitFreshMinute(t, 15*time.Second)
		rt := route(t, n, idOf(svc), map[string]any{"paths": []any{"/rl-hide"}})
		waitProxied(t, n, get("/rl-hide"))
		create(t, n, "/routes/"+idOf(rt)+"/plugins", map[string]any{"name": "rate-limiting", "config": map[string]any{"minute": 2, "hide_client_headers": true}})
		var resps []*harness.Response
		ok := harness.Poll(5*time.Second, 20*time.Millisecond, func() (bool, string) {
			r := proxy(t, n, get("/rl-hide"))
			resps = append(resps, r)
			return r.Status == 429, r.String()
		})
		if !ok {
			t.Fatalf("minute=2 never answered 429")
		}
		for i, r := range resps {
			for name := range r.Header {
				ln := strings.ToLower(name)
				if strings.HasPrefix(ln, "x-ratelimit-") || strings.HasPrefix(ln, "ratelimit-") || ln == "retry-after" {
					t.Errorf("response %d (%d) carries %s despite hide_client_headers", i+1, r.Status, name)
				}
			}
		}
		harness.CheckMessage(t, resps[len(resps)-1], http.StatusTooManyRequests, "API rate limit exceeded")
	})

	t.Run("B44_custom_error", func(t *testing.T) {
		harness.WaitFreshMinute(t, 15*time.Second)
		first := limited(t, "/rl-err", map[string]any{"minute": 1, "error_code": 418, "error_message": "Slow down"})
		harness.CheckStatus(t, first, 200)
		harness.CheckMessage(t, proxy(t, n, get("/rl-err")), 418, "Slow down")
	})

	t.Run("B44_limit_by_consumer_and_header", func(t *testing.T) {
		harness.WaitFreshMinute(t, 20*time.Second)
		for _, u := range []string{"rl-alice", "rl-bob"} {
			create(t, n, "/consumers", map[string]any{"username": u})
			create(t, n, "/consumers/"+u+"/key-auth", map[string]any{"key": u + "-key"})
		}
		rt := route(t, n, idOf(svc), map[string]any{"paths": []any{"/rl-cons"}})
		create(t, n, "/routes/"+idOf(rt)+"/plugins", map[string]any{"name": "key-auth"})
		waitProxied(t, n, get("/rl-cons", "apikey", "rl-bob-key"))
		create(t, n, "/routes/"+idOf(rt)+"/plugins", map[string]any{"name": "rate-limiting", "config": map[string]any{"minute": 2, "limit_by": "consumer"}})
		waitFor(t, n, "limit active", get("/rl-cons", "apikey", "rl-alice-key"), func(r *harness.Response) bool {
			return r.Header.Get("X-RateLimit-Limit-Minute") == "2"
		})
		harness.CheckStatus(t, proxy(t, n, get("/rl-cons", "apikey", "rl-alice-key")), 200)
		harness.CheckStatus(t, proxy(t, n, get("/rl-cons", "apikey", "rl-alice-key")), 429)
		r := proxy(t, n, get("/rl-cons", "apikey", "rl-bob-key"))
		if harness.CheckStatus(t, r, 200) && r.Header.Get("X-RateLimit-Remaining-Minute") != "1" {
			t.Errorf("bob's remaining %q, want 1 (counted apart from alice)", r.Header.Get("X-RateLimit-Remaining-Minute"))
		}

		first := limited(t, "/rl-hdr", map[string]any{"minute": 1, "limit_by": "header", "header_name": "X-Client"}, "X-Client", "a")
		harness.CheckStatus(t, first, 200)
		harness.CheckStatus(t, proxy(t, n, get("/rl-hdr", "X-Client", "a")), 429)
		harness.CheckStatus(t, proxy(t, n, get("/rl-hdr", "X-Client", "b")), 200)
	})

	t.Run("X_plugin_scope_precedence", func(t *testing.T) {
		svcP := service(t, n, up, nil)
		svcQ := service(t, n, up, nil)
		rP1 := route(t, n, idOf(svcP), map[string]any{"paths": []any{"/prec-route"}})
		route(t, n, idOf(svcP), map[string]any{"paths": []any{"/prec-service"}})
		route(t, n, idOf(svcQ), map[string]any{"paths": []any{"/prec-global"}})
		rP3 := route(t, n, idOf(svcP), map[string]any{"paths": []any{"/prec-consumer"}})
		create(t, n, "/routes/"+idOf(rP3)+"/plugins", map[string]any{"name": "key-auth"})
		carol := create(t, n, "/consumers", map[string]any{"username": "carol"})
		create(t, n, "/consumers/carol/key-auth", map[string]any{"key": "carol-key"})
		create(t, n, "/consumers", map[string]any{"username": "dave"})
		create(t, n, "/consumers/dave/key-auth", map[string]any{"key": "dave-key"})

		rl := func(m int) map[string]any {
			return map[string]any{"name": "rate-limiting", "config": map[string]any{"minute": m, "limit_by": "ip"}}
		}
		create(t, n, "/plugins", rl(1000))
		create(t, n, "/services/"+idOf(svcP)+"/plugins", rl(500))
		create(t, n, "/routes/"+idOf(rP1)+"/plugins", rl(200))
		create(t, n, "/consumers/"+idOf(carol)+"/plugins", rl(70))

		expect := func(what string, rq harness.Request, limit string) {
			t.Helper()
			r := waitFor(t, n, what, rq, func(r *harness.Response) bool { return r.Header.Get("X-RateLimit-Limit-Minute") == limit })
			if r.Status != 200 {
				t.Errorf("%s: %s", what, r)
			}
		}
		expect("route plugin beats service and global", get("/prec-route"), "200")
		expect("service plugin beats global", get("/prec-service"), "500")
		expect("global applies elsewhere", get("/prec-global"), "1000")
		expect("consumer plugin beats service", get("/prec-consumer", "apikey", "carol-key"), "70")
		expect("other consumer gets the service plugin", get("/prec-consumer", "apikey", "dave-key"), "500")

		pc := create(t, n, "/plugins", map[string]any{"name": "rate-limiting", "route": map[string]any{"id": idOf(rP3)}, "consumer": map[string]any{"id": idOf(carol)}, "config": map[string]any{"minute": 90}})
		expect("route+consumer beats consumer", get("/prec-consumer", "apikey", "carol-key"), "90")
		expect("route+consumer does not apply to others", get("/prec-consumer", "apikey", "dave-key"), "500")

		// Disabling the most specific one falls back to the next.
		patch(t, n, "/plugins/"+idOf(pc), map[string]any{"enabled": false})
		expect("disabled plugin skipped", get("/prec-consumer", "apikey", "carol-key"), "70")
	})
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}
