package conformance

import (
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/gatehouse-gw/gatehouse/test/harness"
)

var versionRe = regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+$`)

// TestAdminInfo covers behaviours 24 and 25 (GET / and /status) and the
// Status API's readiness endpoint.
func TestAdminInfo(t *testing.T) {
	n := harness.Start(t, harness.Options{NodeID: "conf-info"})

	t.Run("B24_root", func(t *testing.T) {
		// Use a plugin so that enabled_in_cluster is not trivially empty.
		create(t, n, "/plugins", map[string]any{"name": "key-auth", "service": map[string]any{"id": idOf(create(t, n, "/services", map[string]any{"host": "info.test"}))}})

		r := harness.Get(t, n.Admin("/"))
		harness.ExpectStatus(t, r, http.StatusOK)
		harness.CheckAdminHeaders(t, r, false)
		m := r.JSON(t)
		version, _ := m["version"].(string)
		// Clients parse this: three numeric parts, no "v", no "enterprise".
		if !versionRe.MatchString(version) {
			t.Errorf("version %q, want N.N.N", version)
		}
		if srv := r.Header.Get("Server"); srv != "kong/"+version {
			t.Errorf("Server = %q, want kong/%s", srv, version)
		}
		if m["tagline"] != "Welcome to kong" {
			t.Errorf("tagline = %v", m["tagline"])
		}
		if !harness.IsUUID(m["node_id"]) {
			t.Errorf("node_id = %v, want a UUID", m["node_id"])
		}
		if _, ok := m["hostname"].(string); !ok {
			t.Errorf("hostname = %v, want a string", m["hostname"])
		}
		enabled, ok := harness.Field(m, "plugins.enabled_in_cluster")
		if list, isList := enabled.([]any); !ok || !isList {
			t.Errorf("plugins.enabled_in_cluster = %#v, want an array", enabled)
		} else {
			found := false
			for _, x := range list {
				found = found || x == "key-auth"
			}
			if !found {
				t.Errorf("plugins.enabled_in_cluster = %v, want key-auth (in use)", list)
			}
		}
		avail, _ := harness.Field(m, "plugins.available_on_server")
		am, _ := avail.(map[string]any)
		for _, p := range []string{"key-auth", "rate-limiting", "proxy-cache"} {
			entry, ok := am[p].(map[string]any)
			if !ok {
				t.Errorf("plugins.available_on_server lacks %s", p)
				continue
			}
			if _, ok := entry["priority"].(float64); !ok {
				t.Errorf("available_on_server.%s.priority = %v, want a number", p, entry["priority"])
			}
		}
		for p, want := range map[string]float64{"key-auth": 1250, "rate-limiting": 910, "proxy-cache": 100} {
			if entry, ok := am[p].(map[string]any); ok && entry["priority"] != want {
				t.Errorf("%s priority = %v, want %v", p, entry["priority"], want)
			}
		}

		cfg, ok := m["configuration"].(map[string]any)
		if !ok {
			t.Fatalf("configuration = %#v, want an object", m["configuration"])
		}
		// What Kong's clients read from it (decK, go-kong).
		if _, ok := cfg["database"].(string); !ok {
			t.Errorf("configuration.database = %#v, want a string", cfg["database"])
		}
		if cfg["router_flavor"] != "traditional_compatible" {
			t.Errorf("configuration.router_flavor = %#v, want traditional_compatible", cfg["router_flavor"])
		}
		// Sensitive values are never shown.
		var walkCfg func(prefix string, v any)
		walkCfg = func(prefix string, v any) {
			switch x := v.(type) {
			case map[string]any:
				for k, vv := range x {
					lk := strings.ToLower(k)
					if s, isStr := vv.(string); isStr && s != "" && s != "******" &&
						(strings.Contains(lk, "password") || strings.Contains(lk, "secret")) {
						t.Errorf("configuration.%s%s exposes a sensitive value", prefix, k)
					}
					walkCfg(prefix+k+".", vv)
				}
			case []any:
				for _, e := range x {
					walkCfg(prefix, e)
				}
			}
		}
		walkCfg("", cfg)
	})

	t.Run("B25_status", func(t *testing.T) {
		r := harness.Get(t, n.Admin("/status"))
		harness.ExpectStatus(t, r, http.StatusOK)
		m := r.JSON(t)
		for _, k := range []string{"total_requests", "connections_active", "connections_accepted", "connections_handled", "connections_reading", "connections_writing", "connections_waiting"} {
			if _, ok := harness.Field(m, "server."+k); !ok {
				t.Errorf("/status lacks server.%s: %s", k, r)
			} else if v, _ := harness.Field(m, "server."+k); !isIntegral(v) {
				t.Errorf("/status server.%s = %#v, want an integer", k, v)
			}
		}
		if v, _ := harness.Field(m, "database.reachable"); v != true {
			t.Errorf("/status database.reachable = %#v, want true", v)
		}
		if _, ok := harness.Field(m, "memory"); !ok {
			t.Errorf("/status lacks memory: %s", r)
		}
		for _, unit := range []string{"b", "k", "m", "g"} {
			harness.CheckStatus(t, harness.Get(t, n.Admin("/status?unit="+unit)), http.StatusOK)
		}
		r = harness.Get(t, n.Admin("/status?unit=x"))
		harness.CheckStatus(t, r, http.StatusBadRequest)

		// total_requests counts proxied requests.
		before, _ := harness.Field(m, "server.total_requests")
		for i := 0; i < 3; i++ {
			proxy(t, n, get("/info-nothing-here"))
		}
		after, _ := harness.Field(harness.Get(t, n.Admin("/status")).JSON(t), "server.total_requests")
		if b, ok := before.(float64); ok {
			if a, ok := after.(float64); !ok || a < b+3 {
				t.Errorf("server.total_requests %v -> %v after 3 proxy requests, want +3 or more", before, after)
			}
		}
	})

	t.Run("X_status_api_ready", func(t *testing.T) {
		r := harness.Get(t, n.Status("/status/ready"))
		harness.CheckStatus(t, r, http.StatusOK)
		harness.JSONEqual(t, r, `{"message":"ready"}`)
		r = harness.Get(t, n.Status("/status"))
		harness.CheckStatus(t, r, http.StatusOK)
	})

	t.Run("X_unknown_admin_path", func(t *testing.T) {
		r := harness.Get(t, n.Admin("/no-such-endpoint"))
		harness.CheckStatus(t, r, http.StatusNotFound)
		harness.JSONEqual(t, r, `{"message":"Not found"}`)
		harness.CheckAdminHeaders(t, r, false)
	})
}
