package conformance

import (
	"net/http"
	"testing"

	"github.com/gatehouse-gw/gatehouse/test/echo"
	"github.com/gatehouse-gw/gatehouse/test/harness"
)

// defaultHealthchecks is the healthchecks object of a new upstream (§1.5).
var defaultHealthchecks = map[string]any{
	"active": map[string]any{
		"type": "http", "timeout": 1.0, "concurrency": 10.0, "http_path": "/", "https_sni": nil,
		"https_verify_certificate": true, "headers": nil,
		"healthy": map[string]any{"interval": 0.0, "http_statuses": []any{200.0, 302.0}, "successes": 0.0},
		"unhealthy": map[string]any{"interval": 0.0, "http_statuses": []any{429.0, 404.0, 500.0, 501.0, 502.0, 503.0, 504.0, 505.0},
			"tcp_failures": 0.0, "timeouts": 0.0, "http_failures": 0.0},
	},
	"passive": map[string]any{
		"type": "http",
		"healthy": map[string]any{"http_statuses": []any{200.0, 201.0, 202.0, 203.0, 204.0, 205.0, 206.0, 207.0, 208.0, 226.0,
			300.0, 301.0, 302.0, 303.0, 304.0, 305.0, 306.0, 307.0, 308.0}, "successes": 0.0},
		"unhealthy": map[string]any{"http_statuses": []any{429.0, 500.0, 503.0}, "tcp_failures": 0.0, "timeouts": 0.0, "http_failures": 0.0},
	},
	"threshold": 0.0,
}

// TestAdminUpstreams covers behaviour 22, the upstream defaults, shorthands
// and checks of §1.5, and weighted round-robin over targets.
func TestAdminUpstreams(t *testing.T) {
	n := harness.Start(t, harness.Options{NodeID: "conf-upstreams"})

	t.Run("X_upstream_health_without_checks", func(t *testing.T) {
		name := uniq("health") + ".test"
		u := create(t, n, "/upstreams", map[string]any{"name": name})
		create(t, n, "/upstreams/"+name+"/targets", map[string]any{"target": "10.0.0.1:80"})
		r := harness.Get(t, n.Admin("/upstreams/"+name+"/health"))
		harness.ExpectStatus(t, r, http.StatusOK)
		body := r.JSON(t)
		data, _ := body["data"].([]any)
		if len(data) != 1 || harness.Str(data[0], "target") != "10.0.0.1:80" || harness.Str(data[0], "health") != "HEALTHCHECKS_OFF" ||
			harness.Str(data[0], "upstream.id") != u["id"] || body["next"] != nil {
			t.Errorf("health of an upstream without checks: %s", r.Text())
		}
		harness.CheckStatus(t, harness.Get(t, n.Admin("/upstreams/nowhere.test/health")), http.StatusNotFound)
	})

	t.Run("X_upstream_defaults", func(t *testing.T) {
		forEachEncoding(t, func(t *testing.T, enc harness.Encoding) {
			name := uniq("defaults-"+string(enc)) + ".test"
			r := harness.Send(t, enc, http.MethodPost, n.Admin("/upstreams"), map[string]any{"name": name})
			harness.ExpectStatus(t, r, http.StatusCreated)
			u := r.JSON(t)
			checkFields(t, "new upstream", u, map[string]any{
				"name": name, "algorithm": "round-robin", "hash_on": "none", "hash_fallback": "none",
				"hash_on_header": nil, "hash_fallback_header": nil, "hash_on_cookie": nil,
				"hash_on_cookie_path": "/", "hash_on_query_arg": nil, "hash_fallback_query_arg": nil,
				"hash_on_uri_capture": nil, "hash_fallback_uri_capture": nil,
				"slots": 10000, "host_header": nil, "client_certificate": nil, "use_srv_name": false,
				"tags": nil, "healthchecks": defaultHealthchecks,
			})
		})
	})

	t.Run("X_upstream_shorthands_and_checks", func(t *testing.T) {
		u := create(t, n, "/upstreams", map[string]any{"name": uniq("hash") + ".test", "hash_on": "header", "hash_on_header": "X-Key"})
		fieldEquals(t, "hash_on=header", u, "algorithm", "consistent-hashing")
		u = patch(t, n, "/upstreams/"+idOf(u), map[string]any{"hash_on": "none"})
		fieldEquals(t, "hash_on=none", u, "algorithm", "round-robin")
		u = create(t, n, "/upstreams", map[string]any{"name": uniq("lc") + ".test", "algorithm": "least-connections"})
		fieldEquals(t, "least-connections", u, "hash_on", "none")

		bad := []map[string]any{
			{"name": "127.0.0.1"},        // a hostname, not an IP
			{"name": "withport.test:80"}, // no port
			{},                           // name required
			{"name": uniq("a") + ".test", "slots": 5},            // 10..65536
			{"name": uniq("b") + ".test", "hash_on": "header"},   // needs hash_on_header
			{"name": uniq("c") + ".test", "hash_on": "cookie"},   // needs hash_on_cookie
			{"name": uniq("d") + ".test", "hash_fallback": "ip"}, // fallback needs a hash_on
			{"name": uniq("e") + ".test", "algorithm": "random"}, // unknown algorithm
			{"name": uniq("f") + ".test", "healthchecks": map[string]any{"active": map[string]any{"type": "udp"}}},
			{"name": uniq("g") + ".test", "healthchecks": map[string]any{"active": map[string]any{"healthy": map[string]any{"successes": 300}}}},
		}
		for _, body := range bad {
			r := harness.NotAppended(t, n, func() *harness.Response {
				return harness.JSON(t, http.MethodPost, n.Admin("/upstreams"), body)
			})
			harness.CheckKongError(t, r, 400, 2, "schema violation", "")
		}
		name := uniq("dup") + ".test"
		create(t, n, "/upstreams", map[string]any{"name": name})
		r := harness.NotAppended(t, n, func() *harness.Response {
			return harness.JSON(t, http.MethodPost, n.Admin("/upstreams"), map[string]any{"name": name})
		})
		harness.CheckKongError(t, r, 409, 5, "unique constraint violation", "")
	})

	t.Run("B22_targets", func(t *testing.T) {
		forEachEncoding(t, func(t *testing.T, enc harness.Encoding) {
			uname := uniq("b22-"+string(enc)) + ".test"
			u := create(t, n, "/upstreams", map[string]any{"name": uname})
			base := "/upstreams/" + uname + "/targets"

			r := harness.Send(t, enc, http.MethodPost, n.Admin(base), map[string]any{"target": "127.0.0.1:9001"})
			harness.ExpectStatus(t, r, http.StatusCreated)
			tg := r.JSON(t)
			checkFields(t, "new target", tg, map[string]any{"target": "127.0.0.1:9001", "weight": 100, "upstream": map[string]any{"id": idOf(u)}, "tags": nil})
			if _, ok := tg["created_at"].(float64); !ok {
				t.Errorf("target created_at %v, want a number", tg["created_at"])
			}

			r = harness.NotAppended(t, n, func() *harness.Response {
				return harness.Send(t, enc, http.MethodPost, n.Admin(base), map[string]any{"target": "127.0.0.1:9001"})
			})
			harness.CheckStatus(t, r, http.StatusConflict)

			r = harness.Send(t, enc, http.MethodPost, n.Admin(base), map[string]any{"target": "konghq.test"})
			harness.ExpectStatus(t, r, http.StatusCreated)
			fieldEquals(t, "target without port", r.JSON(t), "target", "konghq.test:8000")

			for _, body := range []map[string]any{{"target": "127.0.0.1:9002", "weight": 70000}, {"target": "bad host name:1"}, {}} {
				r := harness.NotAppended(t, n, func() *harness.Response {
					return harness.Send(t, enc, http.MethodPost, n.Admin(base), body)
				})
				harness.CheckStatus(t, r, http.StatusBadRequest)
			}

			r = harness.Get(t, n.Admin(base))
			harness.ExpectStatus(t, r, http.StatusOK)
			if got := len(r.Data(t)); got != 2 {
				t.Errorf("GET %s: %d targets, want 2: %s", base, got, r)
			}
			for _, key := range []string{idOf(tg), "127.0.0.1:9001"} {
				g := harness.Get(t, n.Admin(base+"/"+key))
				if harness.CheckStatus(t, g, http.StatusOK) && idOf(g.JSON(t)) != idOf(tg) {
					t.Errorf("GET %s/%s: %s", base, key, g)
				}
			}
			r = harness.Send(t, enc, http.MethodPatch, n.Admin(base+"/127.0.0.1:9001"), map[string]any{"weight": 50})
			if harness.CheckStatus(t, r, http.StatusOK) {
				fieldEquals(t, "PATCH weight", r.JSON(t), "weight", 50)
			}

			// Top-level target endpoints are disabled.
			for _, p := range []string{"/targets", "/targets/" + idOf(tg), "/targets/" + idOf(tg) + "/upstream"} {
				harness.CheckStatus(t, harness.Get(t, n.Admin(p)), http.StatusNotFound)
			}

			r = harness.Method(t, http.MethodDelete, n.Admin(base+"/127.0.0.1:9001"))
			harness.CheckStatus(t, r, http.StatusNoContent)
			harness.CheckStatus(t, harness.Get(t, n.Admin(base+"/"+idOf(tg))), http.StatusNotFound)
			if got := len(harness.Get(t, n.Admin(base)).Data(t)); got != 1 {
				t.Errorf("after delete: %d targets, want 1", got)
			}

			// Targets cascade with their upstream.
			harness.CheckStatus(t, harness.Method(t, http.MethodDelete, n.Admin("/upstreams/"+uname)), http.StatusNoContent)
			harness.CheckStatus(t, harness.Get(t, n.Admin(base)), http.StatusNotFound)
		})
	})

	t.Run("X_weighted_round_robin", func(t *testing.T) {
		a := echo.StartT(t, "rr-a")
		b := echo.StartT(t, "rr-b")
		uname := uniq("rr") + ".test"
		create(t, n, "/upstreams", map[string]any{"name": uname})
		create(t, n, "/upstreams/"+uname+"/targets", map[string]any{"target": a.Addr, "weight": 100})
		tb := create(t, n, "/upstreams/"+uname+"/targets", map[string]any{"target": b.Addr, "weight": 300})
		svc := create(t, n, "/services", map[string]any{"host": uname, "port": 80})
		route(t, n, idOf(svc), map[string]any{"paths": []any{"/rr"}})

		waitFor(t, n, "both targets serve", get("/rr/anything"), func(r *harness.Response) bool {
			return r.Status == 200 && r.Header.Get("X-Upstream-Name") == "rr-a"
		})
		counts := map[string]int{}
		for i := 0; i < 40; i++ {
			r := proxy(t, n, get("/rr/anything"))
			if r.Status != 200 {
				t.Fatalf("request %d: %s", i, r)
			}
			counts[r.Header.Get("X-Upstream-Name")]++
		}
		if counts["rr-a"] < 6 || counts["rr-a"] > 14 || counts["rr-a"]+counts["rr-b"] != 40 {
			t.Errorf("weights 100:300 over 40 requests gave %v, want about 10:30", counts)
		}

		// Weight 0 takes a target out of rotation.
		patch(t, n, "/upstreams/"+uname+"/targets/"+idOf(tb), map[string]any{"weight": 0})
		waitFor(t, n, "weight 0 drains rr-b", get("/rr/anything"), func(r *harness.Response) bool {
			return r.Status == 200 && r.Header.Get("X-Upstream-Name") == "rr-a"
		})
		for i := 0; i < 10; i++ {
			r := proxy(t, n, get("/rr/anything"))
			if r.Status != 200 || r.Header.Get("X-Upstream-Name") != "rr-a" {
				t.Errorf("after weight 0: request %d went to %q: %s", i, r.Header.Get("X-Upstream-Name"), r)
			}
		}
	})
}
