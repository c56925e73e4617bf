package conformance

import (
	"math"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/test/harness"
)

// TestAdminServices covers behaviours 1–3 and 6–9 on /services (and the
// route halves of 6 and 7).
func TestAdminServices(t *testing.T) {
	n := harness.Start(t, harness.Options{NodeID: "conf-services"})

	// NotAppended (used throughout) relies on the config index moving with
	// every accepted write; check that it does, so it cannot pass vacuously.
	t.Run("X_config_index_moves_on_write", func(t *testing.T) {
		before := n.ConfigIndex(t)
		r1 := harness.JSON(t, http.MethodPost, n.Admin("/services"), map[string]any{"host": "idx.test"})
		harness.ExpectStatus(t, r1, http.StatusCreated)
		harness.CheckAdminHeaders(t, r1, true)
		w1 := r1.ConfigIndex(t)
		if w1 <= before {
			t.Errorf("write response index %d, want > %d (index before the write)", w1, before)
		}
		if after := n.ConfigIndex(t); after < w1 {
			t.Errorf("GET after the write reflects index %d, want >= %d", after, w1)
		}
		r2 := harness.JSON(t, http.MethodPatch, n.Admin("/services/"+idOf(r1.JSON(t))), map[string]any{"retries": 1})
		harness.ExpectStatus(t, r2, http.StatusOK)
		if w2 := r2.ConfigIndex(t); w2 <= w1 {
			t.Errorf("second write index %d, want > %d", w2, w1)
		}
		if a, b := r1.Header.Get("X-Gatehouse-Request-Id"), r2.Header.Get("X-Gatehouse-Request-Id"); a == b {
			t.Errorf("two writes share X-Gatehouse-Request-Id %q", a)
		}
	})

	t.Run("B01_service_defaults", func(t *testing.T) {
		forEachEncoding(t, func(t *testing.T, enc harness.Encoding) {
			host := "b01-" + string(enc) + ".test"
			r := harness.Send(t, enc, http.MethodPost, n.Admin("/services"), map[string]any{"host": host})
			harness.ExpectStatus(t, r, http.StatusCreated)
			harness.CheckAdminHeaders(t, r, true)
			svc := r.JSON(t)
			checkFields(t, "new service", svc, map[string]any{
				"name": nil, "retries": 5, "protocol": "http", "host": host, "port": 80, "path": nil,
				"connect_timeout": 60000, "write_timeout": 60000, "read_timeout": 60000,
				"tags": nil, "client_certificate": nil, "tls_verify": nil, "tls_verify_depth": nil,
				"ca_certificates": nil, "enabled": true,
			})
			if !harness.IsUUID(svc["id"]) {
				t.Errorf("id %v is not a UUID", svc["id"])
			}
			now := float64(time.Now().Unix())
			for _, k := range []string{"created_at", "updated_at"} {
				if !isIntegral(svc[k]) {
					t.Errorf("%s = %v, want integer seconds", k, svc[k])
				} else if f := svc[k].(float64); math.Abs(f-now) > 300 {
					t.Errorf("%s = %v, want about now (%v)", k, f, now)
				}
			}
			// GET returns the same representation.
			g := harness.Get(t, n.Admin("/services/"+idOf(svc)))
			harness.ExpectStatus(t, g, http.StatusOK)
			if !jsonEqual(g.JSON(t), svc) {
				t.Errorf("GET differs from the POST response\nPOST: %s\n GET: %s", r.Body, g.Body)
			}
		})
	})

	t.Run("B02_url_shorthand", func(t *testing.T) {
		cases := []struct {
			url      string
			protocol string
			host     string
			port     int
			path     any
		}{
			{"http://service.test/", "http", "service.test", 80, "/"},
			{"https://service.test/", "https", "service.test", 443, "/"},
			{"http://example.test:443", "http", "example.test", 443, nil},
			{"https://example2.test:80/", "https", "example2.test", 80, "/"},
			{"http://example2.test", "http", "example2.test", 80, nil},
			{"https://example3.test/some/path", "https", "example3.test", 443, "/some/path"},
		}
		forEachEncoding(t, func(t *testing.T, enc harness.Encoding) {
			for _, c := range cases {
				r := harness.Send(t, enc, http.MethodPost, n.Admin("/services"), map[string]any{"url": c.url})
				if !harness.CheckStatus(t, r, http.StatusCreated) {
					continue
				}
				svc := r.JSON(t)
				checkFields(t, "url="+c.url, svc, map[string]any{"protocol": c.protocol, "host": c.host, "port": c.port, "path": c.path})
				if _, present := svc["url"]; present {
					t.Errorf("url=%s: the shorthand field url is echoed back; Kong returns only the expanded fields", c.url)
				}
			}
		})
	})

	t.Run("B03_invalid_url_and_missing_host", func(t *testing.T) {
		forEachEncoding(t, func(t *testing.T, enc harness.Encoding) {
			for _, u := range []string{"", " ", "invalid url"} {
				harness.NotAppended(t, n, func() *harness.Response {
					r := harness.Send(t, enc, http.MethodPost, n.Admin("/services"), map[string]any{"url": u})
					harness.CheckStatus(t, r, http.StatusBadRequest)
					return r
				})
			}
			r := harness.NotAppended(t, n, func() *harness.Response {
				return harness.Send(t, enc, http.MethodPost, n.Admin("/services"), map[string]any{})
			})
			e := harness.CheckKongError(t, r, 400, 2, "schema violation", "schema violation (host: required field missing)")
			fieldEquals(t, "POST {}", e, "fields", map[string]any{"host": "required field missing"})

			r = harness.NotAppended(t, n, func() *harness.Response {
				return harness.Send(t, enc, http.MethodPost, n.Admin("/services"), map[string]any{"host": "x.test", "protocol": "ftp"})
			})
			e = harness.CheckKongError(t, r, 400, 2, "schema violation", "")
			fieldEquals(t, "bad protocol", e, "fields.protocol", "expected one of: grpc, grpcs, http, https, tcp, tls, tls_passthrough, udp")
		})
	})

	t.Run("X_service_field_validation", func(t *testing.T) {
		bad := []map[string]any{
			{"host": "x.test:8080"},                             // host carries no port
			{"host": "x.test", "port": 70000},                   // port range
			{"host": "x.test", "retries": 40000},                // retries range
			{"host": "x.test", "connect_timeout": 0},            // timeout range
			{"host": "x.test", "path": "no-slash"},              // path must start with /
			{"host": "x.test", "path": "/a//b"},                 // no empty segment
			{"host": "x.test", "protocol": "tcp", "path": "/x"}, // stream services take no path
			{"host": "x.test", "name": "has space"},             // name characters
		}
		for _, body := range bad {
			r := harness.NotAppended(t, n, func() *harness.Response {
				return harness.JSON(t, http.MethodPost, n.Admin("/services"), body)
			})
			harness.CheckKongError(t, r, 400, 2, "schema violation", "")
		}
		name := uniq("dup-svc")
		create(t, n, "/services", map[string]any{"host": "x.test", "name": name})
		r := harness.NotAppended(t, n, func() *harness.Response {
			return harness.JSON(t, http.MethodPost, n.Admin("/services"), map[string]any{"host": "y.test", "name": name})
		})
		harness.CheckKongError(t, r, 409, 5, "unique constraint violation", `UNIQUE violation detected on '{name="`+name+`"}'`)
	})

	t.Run("B06_get_by_id_name_and_utf8_name", func(t *testing.T) {
		for _, name := range []string{"b06-plain", "b06-ñandú-サービス"} {
			svc := create(t, n, "/services", map[string]any{"host": "b06.test", "name": name})
			for _, key := range []string{idOf(svc), name, url.PathEscape(name)} {
				r := harness.Get(t, n.Admin("/services/"+key))
				if harness.CheckStatus(t, r, http.StatusOK) && idOf(r.JSON(t)) != idOf(svc) {
					t.Errorf("GET /services/%s returned %s, want %s", key, idOf(r.JSON(t)), idOf(svc))
				}
			}
			rt := create(t, n, "/routes", map[string]any{"name": name + "-route", "paths": []any{"/" + uniq("b06")}, "service": map[string]any{"id": idOf(svc)}})
			for _, key := range []string{idOf(rt), url.PathEscape(name + "-route")} {
				r := harness.Get(t, n.Admin("/routes/"+key))
				if harness.CheckStatus(t, r, http.StatusOK) && idOf(r.JSON(t)) != idOf(rt) {
					t.Errorf("GET /routes/%s returned %s, want %s", key, idOf(r.JSON(t)), idOf(rt))
				}
			}
		}
		for _, p := range []string{"/services/" + randomUUID(), "/services/no-such-service", "/routes/" + randomUUID(), "/routes/no-such-route"} {
			r := harness.Get(t, n.Admin(p))
			harness.CheckStatus(t, r, http.StatusNotFound)
			harness.JSONEqual(t, r, `{"message":"Not found"}`)
		}
	})

	t.Run("B07_delete_missing_is_204", func(t *testing.T) {
		for _, p := range []string{"/services/" + randomUUID(), "/services/no-such-service", "/routes/" + randomUUID(), "/routes/no-such-route"} {
			r := harness.Method(t, http.MethodDelete, n.Admin(p))
			harness.CheckStatus(t, r, http.StatusNoContent)
			if len(r.Body) != 0 {
				t.Errorf("DELETE %s: body %q, want empty", p, r.Body)
			}
		}
		name := uniq("b07")
		svc := create(t, n, "/services", map[string]any{"host": "b07.test", "name": name})
		r := harness.Method(t, http.MethodDelete, n.Admin("/services/"+name))
		harness.CheckStatus(t, r, http.StatusNoContent)
		harness.CheckAdminHeaders(t, r, true)
		harness.CheckStatus(t, harness.Get(t, n.Admin("/services/"+idOf(svc))), http.StatusNotFound)
	})

	t.Run("B08_malformed_json", func(t *testing.T) {
		for _, p := range []string{"/services", "/routes", "/consumers"} {
			for _, body := range []string{`{"host":`, `not json`, ``} {
				r := harness.NotAppended(t, n, func() *harness.Response {
					return harness.Raw(t, http.MethodPost, n.Admin(p), "application/json", []byte(body))
				})
				harness.CheckStatus(t, r, http.StatusBadRequest)
				harness.JSONEqual(t, r, `{"message":"Cannot parse JSON body"}`)
			}
		}
		svc := create(t, n, "/services", map[string]any{"host": "b08.test"})
		r := harness.NotAppended(t, n, func() *harness.Response {
			return harness.Raw(t, http.MethodPatch, n.Admin("/services/"+idOf(svc)), "application/json", []byte(`{"retries":`))
		})
		harness.JSONEqual(t, r, `{"message":"Cannot parse JSON body"}`)
	})

	t.Run("B09_unsupported_content_type", func(t *testing.T) {
		for _, p := range []string{"/consumers", "/services"} {
			r := harness.NotAppended(t, n, func() *harness.Response {
				return harness.Raw(t, http.MethodPost, n.Admin(p), "text/plain", []byte("username=b09"))
			})
			harness.CheckStatus(t, r, http.StatusUnsupportedMediaType)
		}
	})

	t.Run("X_delete_service_referenced_by_route", func(t *testing.T) {
		svc := create(t, n, "/services", map[string]any{"host": "ref.test"})
		create(t, n, "/routes", map[string]any{"paths": []any{"/" + uniq("ref")}, "service": map[string]any{"id": idOf(svc)}})
		r := harness.NotAppended(t, n, func() *harness.Response {
			return harness.Method(t, http.MethodDelete, n.Admin("/services/"+idOf(svc)))
		})
		harness.CheckStatus(t, r, http.StatusBadRequest)
		if !strings.Contains(r.Text(), "an existing 'routes' entity references this 'services' entity") {
			t.Errorf("want the foreign key violation message: %s", r)
		}
		harness.CheckKongError(t, r, 400, 4, "foreign key violation", "")
		harness.CheckStatus(t, harness.Get(t, n.Admin("/services/"+idOf(svc))), http.StatusOK)
	})

	t.Run("X_patch_and_put_service", func(t *testing.T) {
		name := uniq("pp")
		svc := create(t, n, "/services", map[string]any{"name": name, "url": "https://pp.test:8443/base", "retries": 3})
		p := patch(t, n, "/services/"+name, map[string]any{"read_timeout": 1234})
		checkFields(t, "after PATCH", p, map[string]any{"id": idOf(svc), "read_timeout": 1234, "retries": 3, "protocol": "https", "port": 8443, "path": "/base"})
		if u, c := p["updated_at"], svc["updated_at"]; !isIntegral(u) || !isIntegral(c) || u.(float64) < c.(float64) {
			t.Errorf("updated_at went back: %v -> %v", svc["updated_at"], p["updated_at"])
		}
		// PATCH with url re-derives all four fields.
		p = patch(t, n, "/services/"+name, map[string]any{"url": "http://other.test"})
		checkFields(t, "after PATCH url", p, map[string]any{"protocol": "http", "host": "other.test", "port": 80, "path": nil, "retries": 3})
		// PUT replaces: fields not sent return to their defaults.
		r := harness.JSON(t, http.MethodPut, n.Admin("/services/"+name), map[string]any{"host": "put.test"})
		harness.ExpectStatus(t, r, http.StatusOK)
		checkFields(t, "after PUT", r.JSON(t), map[string]any{"id": idOf(svc), "name": name, "host": "put.test", "retries": 5, "read_timeout": 60000, "port": 80, "protocol": "http"})
	})
}
