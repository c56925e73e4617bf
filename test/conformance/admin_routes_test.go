package conformance

import (
	"net/http"
	"strings"
	"testing"

	"github.com/gatehouse-gw/gatehouse/test/harness"
)

const routeEntityError = `{"code":2,"name":"schema violation","message":"schema violation (must set one of 'methods', 'hosts', 'headers', 'paths', 'snis' when 'protocols' is 'https')","fields":{"@entity":["must set one of 'methods', 'hosts', 'headers', 'paths', 'snis' when 'protocols' is 'https'"]}}`

// TestAdminRoutes covers behaviours 10–16 and the generated nested
// endpoints of routes.
func TestAdminRoutes(t *testing.T) {
	n := harness.Start(t, harness.Options{NodeID: "conf-routes"})
	svc := create(t, n, "/services", map[string]any{"name": "routes-svc", "host": "routes.test"})

	t.Run("X_snis_with_tls_stream_route", func(t *testing.T) {
		// go-kong's TestRoutesRoute: snis are allowed when any protocol
		// is a TLS one, stream protocols included.
		r := harness.JSON(t, http.MethodPost, n.Admin("/routes"), map[string]any{"name": uniq("tls-stream"),
			"protocols": []any{"tcp", "tls"}, "snis": []any{"a.example", "b.example"},
			"destinations": []any{map[string]any{"ip": "10.0.0.0/8", "port": 80}}, "service": map[string]any{"id": svc["id"]}})
		harness.ExpectStatus(t, r, http.StatusCreated)
		r = harness.JSON(t, http.MethodPost, n.Admin("/routes"), map[string]any{"protocols": []any{"tcp"},
			"snis": []any{"a.example"}, "destinations": []any{map[string]any{"port": 80}}, "service": map[string]any{"id": svc["id"]}})
		harness.ExpectStatus(t, r, http.StatusBadRequest)
	})

	t.Run("X_route_defaults", func(t *testing.T) {
		forEachEncoding(t, func(t *testing.T, enc harness.Encoding) {
			p := "/" + uniq("defaults")
			r := harness.Send(t, enc, http.MethodPost, n.Admin("/routes"), map[string]any{"paths": []any{p}})
			harness.ExpectStatus(t, r, http.StatusCreated)
			checkFields(t, "new route", r.JSON(t), map[string]any{
				"name": nil, "protocols": []string{"http", "https"}, "methods": nil, "hosts": nil,
				"paths": []string{p}, "headers": nil, "snis": nil, "sources": nil, "destinations": nil,
				"https_redirect_status_code": 426, "strip_path": true, "preserve_host": false,
				"request_buffering": true, "response_buffering": true, "regex_priority": 0,
				"path_handling": "v0", "service": nil, "tags": nil,
			})
		})
	})

	t.Run("B10_collection_methods_not_allowed", func(t *testing.T) {
		for _, m := range []string{http.MethodPut, http.MethodPatch, http.MethodDelete} {
			r := harness.NotAppended(t, n, func() *harness.Response {
				return harness.JSON(t, m, n.Admin("/routes"), map[string]any{"paths": []any{"/b10"}})
			})
			harness.CheckStatus(t, r, http.StatusMethodNotAllowed)
			harness.JSONEqual(t, r, `{"message":"Method not allowed"}`)
		}
	})

	t.Run("B11_options_routes", func(t *testing.T) {
		r := harness.Method(t, http.MethodOptions, n.Admin("/routes"))
		harness.CheckStatus(t, r, http.StatusNoContent)
		for h, want := range map[string]string{
			"Allow":                        "GET, HEAD, OPTIONS, POST",
			"Access-Control-Allow-Methods": "GET, HEAD, OPTIONS, POST",
			"Access-Control-Allow-Headers": "Content-Type",
			"Access-Control-Allow-Origin":  "*",
		} {
			if got := r.Header.Get(h); got != want {
				t.Errorf("OPTIONS /routes: %s = %q, want %q", h, got, want)
			}
		}
	})

	t.Run("B12_route_without_match_fields", func(t *testing.T) {
		forEachEncoding(t, func(t *testing.T, enc harness.Encoding) {
			r := harness.NotAppended(t, n, func() *harness.Response {
				return harness.Send(t, enc, http.MethodPost, n.Admin("/routes"), map[string]any{})
			})
			harness.CheckStatus(t, r, http.StatusBadRequest)
			harness.JSONEqual(t, r, routeEntityError)
		})
		// The same with a service attached and only non-matching fields.
		forEachEncoding(t, func(t *testing.T, enc harness.Encoding) {
			r := harness.NotAppended(t, n, func() *harness.Response {
				return harness.Send(t, enc, http.MethodPost, n.Admin("/services/routes-svc/routes"), map[string]any{"strip_path": false})
			})
			harness.CheckStatus(t, r, http.StatusBadRequest)
			harness.JSONEqual(t, r, routeEntityError)
		})
	})

	t.Run("B13_unknown_service_name", func(t *testing.T) {
		forEachEncoding(t, func(t *testing.T, enc harness.Encoding) {
			r := harness.NotAppended(t, n, func() *harness.Response {
				return harness.Send(t, enc, http.MethodPost, n.Admin("/routes"), map[string]any{
					"paths": []any{"/b13"}, "service": map[string]any{"name": "non-existing"},
				})
			})
			e := harness.CheckKongError(t, r, 400, 13, "foreign keys unresolved",
				`foreign key unresolved (service.name: the foreign key cannot be resolved with '{name="non-existing"}' for an existing 'services' entity)`)
			if v, ok := harness.Field(e, "fields.service.name"); !ok {
				t.Errorf("fields.service.name missing: %s", r)
			} else if _, isStr := v.(string); !isStr {
				t.Errorf("fields.service.name = %#v, want a message string", v)
			}
		})
		// A known service name resolves.
		r := harness.JSON(t, http.MethodPost, n.Admin("/routes"), map[string]any{"paths": []any{"/" + uniq("b13ok")}, "service": map[string]any{"name": "routes-svc"}})
		harness.ExpectStatus(t, r, http.StatusCreated)
		fieldEquals(t, "route by service name", r.JSON(t), "service.id", idOf(svc))
	})

	t.Run("B14_put_creates_and_replaces", func(t *testing.T) {
		forEachEncoding(t, func(t *testing.T, enc harness.Encoding) {
			id := randomUUID()
			p := "/" + uniq("b14")
			r := harness.Send(t, enc, http.MethodPut, n.Admin("/routes/"+id), map[string]any{"paths": []any{p}})
			harness.ExpectStatus(t, r, http.StatusOK)
			harness.CheckAdminHeaders(t, r, true)
			fieldEquals(t, "PUT by new uuid", r.JSON(t), "id", id)
			harness.CheckStatus(t, harness.Get(t, n.Admin("/routes/"+id)), http.StatusOK)

			name := uniq("b14-name")
			r = harness.Send(t, enc, http.MethodPut, n.Admin("/routes/"+name), map[string]any{"paths": []any{p + "-n"}})
			harness.ExpectStatus(t, r, http.StatusOK)
			created := r.JSON(t)
			fieldEquals(t, "PUT by new name", created, "name", name)
			if !harness.IsUUID(created["id"]) {
				t.Errorf("PUT by name: id %v not a UUID", created["id"])
			}
		})

		full := create(t, n, "/routes", map[string]any{
			"name": uniq("b14-full"), "paths": []any{"/b14-full"}, "hosts": []any{"full.test"},
			"methods": []any{"GET"}, "strip_path": false, "regex_priority": 3, "tags": []any{"x"},
		})
		r := harness.JSON(t, http.MethodPut, n.Admin("/routes/"+idOf(full)), map[string]any{"paths": []any{"/b14-replaced"}})
		harness.ExpectStatus(t, r, http.StatusOK)
		checkFields(t, "after PUT replace", r.JSON(t), map[string]any{
			"id": idOf(full), "paths": []string{"/b14-replaced"}, "hosts": nil, "methods": nil,
			"strip_path": true, "regex_priority": 0, "tags": nil, "name": nil,
		})

		// A PUT body whose content is invalid changes nothing.
		harness.NotAppended(t, n, func() *harness.Response {
			return harness.JSON(t, http.MethodPut, n.Admin("/routes/"+idOf(full)), map[string]any{"strip_path": true})
		})
	})

	t.Run("B15_patch_null_empty_array_and_detach", func(t *testing.T) {
		rt := create(t, n, "/routes", map[string]any{
			"paths": []any{"/" + uniq("b15")}, "hosts": []any{"b15.test"}, "methods": []any{"GET", "POST"},
			"service": map[string]any{"id": idOf(svc)},
		})
		p := patch(t, n, "/routes/"+idOf(rt), map[string]any{"methods": nil})
		fieldEquals(t, "PATCH methods=null", p, "methods", nil)
		fieldEquals(t, "PATCH methods=null keeps hosts", p, "hosts", []string{"b15.test"})

		p = patch(t, n, "/routes/"+idOf(rt), map[string]any{"hosts": []any{}})
		if h, ok := p["hosts"].([]any); !ok || len(h) != 0 {
			t.Errorf("PATCH hosts=[]: hosts = %#v, want an empty array []", p["hosts"])
		}
		g := harness.Get(t, n.Admin("/routes/"+idOf(rt))).JSON(t)
		if h, ok := g["hosts"].([]any); !ok || len(h) != 0 {
			t.Errorf("GET after PATCH hosts=[]: hosts = %#v, want []", g["hosts"])
		}

		p = patch(t, n, "/routes/"+idOf(rt), map[string]any{"service": nil})
		fieldEquals(t, "PATCH service=null", p, "service", nil)

		// Form: an empty value is read as null.
		rt2 := create(t, n, "/routes", map[string]any{"paths": []any{"/" + uniq("b15f")}, "methods": []any{"GET"}})
		r := harness.Form(t, http.MethodPatch, n.Admin("/routes/"+idOf(rt2)), map[string][]string{"methods": {""}})
		harness.ExpectStatus(t, r, http.StatusOK)
		fieldEquals(t, "form PATCH methods=", r.JSON(t), "methods", nil)

		// Clearing the last matching field is a schema violation.
		r = harness.NotAppended(t, n, func() *harness.Response {
			return harness.JSON(t, http.MethodPatch, n.Admin("/routes/"+idOf(rt2)), map[string]any{"paths": nil})
		})
		harness.CheckStatus(t, r, http.StatusBadRequest)
	})

	t.Run("B16_route_service_delete_405_and_missing_404", func(t *testing.T) {
		rt := create(t, n, "/routes", map[string]any{"paths": []any{"/" + uniq("b16")}, "service": map[string]any{"id": idOf(svc)}})
		r := harness.NotAppended(t, n, func() *harness.Response {
			return harness.Method(t, http.MethodDelete, n.Admin("/routes/"+idOf(rt)+"/service"))
		})
		harness.CheckStatus(t, r, http.StatusMethodNotAllowed)
		harness.JSONEqual(t, r, `{"message":"Method not allowed"}`)

		r = harness.Get(t, n.Admin("/routes/"+idOf(rt)+"/service"))
		if harness.CheckStatus(t, r, http.StatusOK) {
			fieldEquals(t, "GET /routes/{r}/service", r.JSON(t), "id", idOf(svc))
		}
		r = harness.Get(t, n.Admin("/routes/"+randomUUID()))
		harness.CheckStatus(t, r, http.StatusNotFound)
		harness.JSONEqual(t, r, `{"message":"Not found"}`)
	})

	t.Run("X_nested_routes", func(t *testing.T) {
		other := create(t, n, "/services", map[string]any{"name": uniq("other"), "host": "other.test"})
		rt := create(t, n, "/services/routes-svc/routes", map[string]any{"paths": []any{"/" + uniq("nested")}})
		fieldEquals(t, "route POSTed under a service", rt, "service.id", idOf(svc))

		r := harness.Get(t, n.Admin("/services/routes-svc/routes/"+idOf(rt)))
		harness.CheckStatus(t, r, http.StatusOK)
		r = harness.Get(t, n.Admin("/services/"+idOf(other)+"/routes/"+idOf(rt)))
		harness.CheckStatus(t, r, http.StatusNotFound)

		r = harness.Get(t, n.Admin("/services/routes-svc/routes"))
		harness.ExpectStatus(t, r, http.StatusOK)
		if !contains(listIDs(t, r), idOf(rt)) {
			t.Errorf("nested list lacks the route: %s", r)
		}
		r = harness.Get(t, n.Admin("/services/"+idOf(other)+"/routes"))
		harness.CheckStatus(t, r, http.StatusOK)
		harness.JSONEqual(t, r, `{"data":[],"next":null}`)

		r = harness.Get(t, n.Admin("/services/"+randomUUID()+"/routes"))
		harness.CheckStatus(t, r, http.StatusNotFound)
	})

	t.Run("X_route_field_validation", func(t *testing.T) {
		bad := []map[string]any{
			{"paths": []any{"no-slash"}},
			{"paths": []any{"/a//b"}},
			{"paths": []any{"~/(unclosed"}},
			{"methods": []any{"get"}},
			{"hosts": []any{"*.*.test"}},
			{"paths": []any{"/x"}, "protocols": []any{"http", "tcp"}},
			{"paths": []any{"/x"}, "https_redirect_status_code": 303},
			{"paths": []any{"/x"}, "headers": map[string]any{"host": []any{"h.test"}}},
			{"paths": []any{"/x"}, "path_handling": "v2"},
		}
		for _, body := range bad {
			r := harness.NotAppended(t, n, func() *harness.Response {
				return harness.JSON(t, http.MethodPost, n.Admin("/routes"), body)
			})
			harness.CheckKongError(t, r, 400, 2, "schema violation", "")
		}
		r := harness.JSON(t, http.MethodPost, n.Admin("/routes"), map[string]any{"paths": []any{"/x"}, "headers": map[string]any{"host": []any{"h.test"}}})
		if !strings.Contains(r.Text(), "cannot contain 'host' header, which must be specified in the 'hosts' attribute") {
			t.Errorf("a host header condition: want the 'hosts' hint in the error: %s", r)
		}
	})
}
