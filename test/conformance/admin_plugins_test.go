package conformance

import (
	"net/http"
	"strings"
	"testing"

	"github.com/gatehouse-gw/gatehouse/test/harness"
)

// TestAdminPlugins covers behaviours 20 and 21, plugin defaults for
// key-auth, rate-limiting and proxy-cache, nested plugin endpoints and the
// plugin cascade on consumer deletion.
func TestAdminPlugins(t *testing.T) {
	n := harness.Start(t, harness.Options{NodeID: "conf-plugins"})

	t.Run("X_plugin_defaults", func(t *testing.T) {
		svc := create(t, n, "/services", map[string]any{"name": uniq("pd"), "host": "pd.test"})
		ka := create(t, n, "/services/"+idOf(svc)+"/plugins", map[string]any{"name": "key-auth"})
		checkFields(t, "key-auth plugin", ka, map[string]any{
			"name": "key-auth", "enabled": true, "protocols": []string{"grpc", "grpcs", "http", "https"},
			"service": map[string]any{"id": idOf(svc)}, "route": nil, "consumer": nil, "tags": nil, "instance_name": nil,
		})
		if !isIntegral(ka["created_at"]) || !harness.IsUUID(ka["id"]) {
			t.Errorf("plugin id/created_at: %v", ka)
		}
		kcfg, _ := ka["config"].(map[string]any)
		checkFields(t, "key-auth config", kcfg, map[string]any{
			"key_names": []string{"apikey"}, "hide_credentials": false, "anonymous": nil,
			"key_in_header": true, "key_in_query": true, "key_in_body": false,
			"run_on_preflight": true, "realm": nil,
		})

		rl := create(t, n, "/services/"+idOf(svc)+"/plugins", map[string]any{"name": "rate-limiting", "config": map[string]any{"minute": 10}})
		cfg, _ := rl["config"].(map[string]any)
		checkFields(t, "rate-limiting config", cfg, map[string]any{
			"second": nil, "minute": 10, "hour": nil, "day": nil, "month": nil, "year": nil,
			"limit_by": "consumer", "policy": "local", "fault_tolerant": true,
			"hide_client_headers": false, "error_code": 429, "error_message": "API rate limit exceeded",
			"sync_rate": -1, "header_name": nil, "path": nil,
		})

		pc := create(t, n, "/services/"+idOf(svc)+"/plugins", map[string]any{"name": "proxy-cache", "config": map[string]any{"strategy": "memory"}})
		cfg, _ = pc["config"].(map[string]any)
		checkFields(t, "proxy-cache config", cfg, map[string]any{
			"strategy": "memory", "response_code": []int{200, 301, 404}, "request_method": []string{"GET", "HEAD"},
			"content_type": []string{"text/plain", "application/json"}, "cache_ttl": 300, "cache_control": false,
			"ignore_uri_case": false, "storage_ttl": nil, "vary_query_params": nil, "vary_headers": nil,
			"memory":           map[string]any{"dictionary_name": "kong_db_cache"},
			"response_headers": map[string]any{"age": true, "X-Cache-Status": true, "X-Cache-Key": true},
		})
	})

	t.Run("X_plugin_config_validation", func(t *testing.T) {
		svc := create(t, n, "/services", map[string]any{"host": "pv.test"})
		bad := []map[string]any{
			{"name": "proxy-cache"}, // strategy is required
			{"name": "proxy-cache", "config": map[string]any{"strategy": "redis"}},
			{"name": "proxy-cache", "config": map[string]any{"strategy": "memory", "request_method": []any{"DELETE"}}},
			{"name": "rate-limiting"}, // no limit at all
			{"name": "rate-limiting", "config": map[string]any{"minute": 10, "hour": 5}},
			{"name": "rate-limiting", "config": map[string]any{"minute": 10, "limit_by": "header"}},
			{"name": "rate-limiting", "config": map[string]any{"minute": 10, "policy": "nope"}},
			{"name": "key-auth", "config": map[string]any{"no_such_field": true}},
			{"name": "key-auth", "protocols": []any{"ftp"}},
			{}, // name is required
		}
		for _, body := range bad {
			r := harness.NotAppended(t, n, func() *harness.Response {
				return harness.JSON(t, http.MethodPost, n.Admin("/services/"+idOf(svc)+"/plugins"), body)
			})
			harness.CheckKongError(t, r, 400, 2, "schema violation", "")
		}
		r := harness.JSON(t, http.MethodPost, n.Admin("/services/"+idOf(svc)+"/plugins"), map[string]any{"name": "rate-limiting", "config": map[string]any{"minute": 10, "hour": 5}})
		if !strings.Contains(r.Text(), "cannot be lower than the limit for minute") {
			t.Errorf("hour < minute: want Kong's ordering message: %s", r)
		}
	})

	t.Run("B20_duplicate_and_unknown_plugin", func(t *testing.T) {
		forEachEncoding(t, func(t *testing.T, enc harness.Encoding) {
			svc := create(t, n, "/services", map[string]any{"host": "b20.test"})
			sid := idOf(svc)
			r := harness.Send(t, enc, http.MethodPost, n.Admin("/services/"+sid+"/plugins"), map[string]any{"name": "key-auth"})
			harness.ExpectStatus(t, r, http.StatusCreated)

			want := map[string]any{"consumer": nil, "name": "key-auth", "route": nil, "service": map[string]any{"id": sid}}
			r = harness.NotAppended(t, n, func() *harness.Response {
				return harness.Send(t, enc, http.MethodPost, n.Admin("/services/"+sid+"/plugins"), map[string]any{"name": "key-auth"})
			})
			e := harness.CheckKongError(t, r, 409, 5, "unique constraint violation", "")
			fieldEquals(t, "duplicate plugin", e, "fields", want)

			// Same scope through the top-level collection.
			r = harness.NotAppended(t, n, func() *harness.Response {
				return harness.Send(t, enc, http.MethodPost, n.Admin("/plugins"), map[string]any{"name": "key-auth", "service": map[string]any{"id": sid}})
			})
			harness.CheckKongError(t, r, 409, 5, "unique constraint violation", "")

			// A different scope is fine.
			rt := create(t, n, "/routes", map[string]any{"paths": []any{"/" + uniq("b20")}, "service": map[string]any{"id": sid}})
			r = harness.Send(t, enc, http.MethodPost, n.Admin("/routes/"+idOf(rt)+"/plugins"), map[string]any{"name": "key-auth"})
			harness.CheckStatus(t, r, http.StatusCreated)

			r = harness.NotAppended(t, n, func() *harness.Response {
				return harness.Send(t, enc, http.MethodPost, n.Admin("/plugins"), map[string]any{"name": "foo"})
			})
			e = harness.CheckKongError(t, r, 400, 2, "schema violation", "")
			fieldEquals(t, "unknown plugin", e, "fields.name", "plugin 'foo' not enabled; add it to the 'plugins' configuration property")
		})
	})

	t.Run("B21_patch_merges_config_and_disables", func(t *testing.T) {
		forEachEncoding(t, func(t *testing.T, enc harness.Encoding) {
			svc := create(t, n, "/services", map[string]any{"host": "b21.test"})
			p := create(t, n, "/services/"+idOf(svc)+"/plugins", map[string]any{"name": "rate-limiting", "config": map[string]any{"minute": 10, "hour": 100, "error_message": "slow"}})
			r := harness.Send(t, enc, http.MethodPatch, n.Admin("/plugins/"+idOf(p)), map[string]any{"config": map[string]any{"minute": 20}})
			harness.ExpectStatus(t, r, http.StatusOK)
			harness.CheckAdminHeaders(t, r, true)
			got := r.JSON(t)
			fieldEquals(t, "after partial PATCH", got, "config.minute", 20)
			fieldEquals(t, "after partial PATCH", got, "config.hour", 100)
			fieldEquals(t, "after partial PATCH", got, "config.error_message", "slow")
			fieldEquals(t, "after partial PATCH", got, "enabled", true)

			r = harness.Send(t, enc, http.MethodPatch, n.Admin("/services/"+idOf(svc)+"/plugins/"+idOf(p)), map[string]any{"enabled": false})
			harness.ExpectStatus(t, r, http.StatusOK)
			got = harness.Get(t, n.Admin("/plugins/"+idOf(p))).JSON(t)
			fieldEquals(t, "after PATCH enabled=false", got, "enabled", false)
			fieldEquals(t, "after PATCH enabled=false", got, "config.minute", 20)
			fieldEquals(t, "after PATCH enabled=false", got, "config.hour", 100)

			// A PATCH that breaks the config is rejected and changes nothing.
			harness.NotAppended(t, n, func() *harness.Response {
				return harness.Send(t, enc, http.MethodPatch, n.Admin("/plugins/"+idOf(p)), map[string]any{"config": map[string]any{"hour": 5}})
			})
			fieldEquals(t, "after rejected PATCH", harness.Get(t, n.Admin("/plugins/"+idOf(p))).JSON(t), "config.hour", 100)
		})
	})

	t.Run("X_plugin_endpoints", func(t *testing.T) {
		r := harness.Get(t, n.Admin("/plugins/enabled"))
		if harness.CheckStatus(t, r, http.StatusOK) {
			names, _ := r.JSON(t)["enabled_plugins"].([]any)
			for _, want := range []string{"key-auth", "rate-limiting", "proxy-cache"} {
				found := false
				for _, x := range names {
					found = found || x == want
				}
				if !found {
					t.Errorf("/plugins/enabled lacks %s: %s", want, r)
				}
			}
		}
		for _, name := range []string{"key-auth", "rate-limiting", "proxy-cache"} {
			r := harness.Get(t, n.Admin("/schemas/plugins/"+name))
			if harness.CheckStatus(t, r, http.StatusOK) {
				if _, ok := r.JSON(t)["fields"].([]any); !ok {
					t.Errorf("/schemas/plugins/%s has no fields array: %s", name, r)
				}
			}
		}
		r = harness.Get(t, n.Admin("/schemas/plugins/nope"))
		harness.CheckStatus(t, r, http.StatusNotFound)
		if harness.Str(r.JSON(t), "message") != "No plugin named 'nope'" {
			t.Errorf("unknown plugin schema: %s", r)
		}

		// Scoped collections and instance_name lookup.
		c := create(t, n, "/consumers", map[string]any{"username": uniq("pe")})
		inst := uniq("rl-inst")
		p := create(t, n, "/consumers/"+idOf(c)+"/plugins", map[string]any{"name": "rate-limiting", "instance_name": inst, "config": map[string]any{"minute": 3}})
		fieldEquals(t, "consumer-scoped plugin", p, "consumer.id", idOf(c))
		g := harness.Get(t, n.Admin("/plugins/"+inst))
		if harness.CheckStatus(t, g, http.StatusOK) && idOf(g.JSON(t)) != idOf(p) {
			t.Errorf("GET /plugins/{instance_name}: %s", g)
		}
		list := harness.Get(t, n.Admin("/consumers/"+idOf(c)+"/plugins"))
		harness.ExpectStatus(t, list, http.StatusOK)
		if ids := listIDs(t, list); len(ids) != 1 || ids[0] != idOf(p) {
			t.Errorf("/consumers/{c}/plugins = %v, want only %s", ids, idOf(p))
		}

		// Plugins cascade with their consumer.
		harness.CheckStatus(t, harness.Method(t, http.MethodDelete, n.Admin("/consumers/"+idOf(c))), http.StatusNoContent)
		harness.CheckStatus(t, harness.Get(t, n.Admin("/plugins/"+idOf(p))), http.StatusNotFound)

		// DELETE is idempotent for plugins too.
		r = harness.Method(t, http.MethodDelete, n.Admin("/plugins/"+randomUUID()))
		harness.CheckStatus(t, r, http.StatusNoContent)
	})
}
