package conformance

import (
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/test/echo"
	"github.com/gatehouse-gw/gatehouse/test/harness"
)

// invalidKey is the bad-key message. Kong 3.7+ says "Unauthorized"; the
// Gatehouse issue overrides it with Kong's earlier wording.
const invalidKey = "Invalid authentication credentials"

func check401(t *testing.T, r *harness.Response, message, wwwAuth string) {
	t.Helper()
	harness.CheckMessage(t, r, http.StatusUnauthorized, message)
	if got := r.Header.Get("WWW-Authenticate"); got != wwwAuth {
		t.Errorf("WWW-Authenticate = %q, want %q", got, wwwAuth)
	}
}

// TestKeyAuth covers behaviour 43 (key-auth) and the key-auth options of
// §3.2.
func TestKeyAuth(t *testing.T) {
	n := harness.Start(t, harness.Options{NodeID: "conf-key-auth"})
	up := echo.StartT(t, "key-auth-echo")
	svc := service(t, n, up, nil)
	alice := create(t, n, "/consumers", map[string]any{"username": "alice", "custom_id": "alice-cid"})
	cred := create(t, n, "/consumers/alice/key-auth", map[string]any{"key": "alice-key"})
	create(t, n, "/consumers", map[string]any{"username": "bob"})
	create(t, n, "/consumers/bob/key-auth", map[string]any{"key": "bob-key"})

	addRoute := func(path string, config map[string]any) {
		rt := route(t, n, idOf(svc), map[string]any{"paths": []any{path}})
		body := map[string]any{"name": "key-auth"}
		if config != nil {
			body["config"] = config
		}
		create(t, n, "/routes/"+idOf(rt)+"/plugins", body)
		waitFor(t, n, "key-auth on "+path, get(path), func(r *harness.Response) bool {
			return r.Status == 401 || r.Status == 200 && config != nil && config["anonymous"] != nil
		})
	}
	addRoute("/ka", nil)

	t.Run("B43_missing_key", func(t *testing.T) {
		check401(t, proxy(t, n, get("/ka/anything")), "No API key found in request", "Key")
		check401(t, proxy(t, n, get("/ka/anything", "apikey", "")), "No API key found in request", "Key")
		check401(t, proxy(t, n, get("/ka/anything?apikey=")), "No API key found in request", "Key")
	})

	t.Run("B43_bad_key", func(t *testing.T) {
		check401(t, proxy(t, n, get("/ka/anything", "apikey", "not-a-key")), invalidKey, "Key")
		check401(t, proxy(t, n, get("/ka/anything?apikey=not-a-key")), invalidKey, "Key")
	})

	t.Run("B43_good_key_header_and_query", func(t *testing.T) {
		for _, rq := range []harness.Request{get("/ka/anything", "apikey", "alice-key"), get("/ka/anything?apikey=alice-key")} {
			r := proxy(t, n, rq)
			if !harness.CheckStatus(t, r, 200) {
				continue
			}
			er := echo.Parse(t, r.Body)
			for h, want := range map[string]string{
				"X-Consumer-ID":           idOf(alice),
				"X-Consumer-Username":     "alice",
				"X-Consumer-Custom-ID":    "alice-cid",
				"X-Credential-Identifier": idOf(cred),
			} {
				if got := er.Header(h); got != want {
					t.Errorf("%s: upstream %s = %q, want %q", rq.URL, h, got, want)
				}
			}
			if er.HasHeader("X-Anonymous-Consumer") {
				t.Errorf("authenticated request carries X-Anonymous-Consumer")
			}
			// hide_credentials=false: the key is passed on.
			if er.Header("apikey") != "alice-key" && er.Query["apikey"] != "alice-key" {
				t.Errorf("hide_credentials=false but the key was removed: %+v", er)
			}
		}
		// A client cannot forge consumer headers.
		r := proxy(t, n, get("/ka/anything", "apikey", "bob-key", "X-Consumer-Username", "alice"))
		if harness.CheckStatus(t, r, 200) {
			if got := echo.Parse(t, r.Body).Header("X-Consumer-Username"); got != "bob" {
				t.Errorf("X-Consumer-Username = %q, want bob", got)
			}
		}
	})

	t.Run("B43_key_not_read_from_body_by_default", func(t *testing.T) {
		r := proxy(t, n, harness.Request{Method: http.MethodPost, URL: "/ka/anything", Body: []byte("apikey=alice-key"), ContentType: "application/x-www-form-urlencoded"})
		check401(t, r, "No API key found in request", "Key")
	})

	t.Run("B43_duplicate_key", func(t *testing.T) {
		check401(t, proxy(t, n, get("/ka/anything?apikey=alice-key&apikey=bob-key")), "Duplicate API key found", "Key")
		r := harness.NotAppended(t, n, func() *harness.Response {
			return harness.JSON(t, http.MethodPost, n.Admin("/consumers/bob/key-auth"), map[string]any{"key": "alice-key"})
		})
		harness.CheckKongError(t, r, 409, 5, "unique constraint violation", "")
	})

	t.Run("B43_hide_credentials", func(t *testing.T) {
		addRoute("/ka-hide", map[string]any{"hide_credentials": true})
		r := proxy(t, n, get("/ka-hide/anything", "apikey", "alice-key", "X-Other", "kept"))
		if harness.CheckStatus(t, r, 200) {
			er := echo.Parse(t, r.Body)
			if er.HasHeader("apikey") {
				t.Errorf("hide_credentials: apikey header reached the upstream")
			}
			if er.Header("X-Other") != "kept" {
				t.Errorf("hide_credentials removed an unrelated header")
			}
		}
		r = proxy(t, n, get("/ka-hide/anything?a=1&apikey=alice-key&b=2"))
		if harness.CheckStatus(t, r, 200) {
			if got := echo.Parse(t, r.Body).URL; got != "/anything?a=1&b=2" {
				t.Errorf("hide_credentials: upstream url %q, want /anything?a=1&b=2 (key removed, order kept)", got)
			}
		}
	})

	t.Run("B43_key_in_body", func(t *testing.T) {
		addRoute("/ka-body", map[string]any{"key_in_body": true, "key_in_header": false, "key_in_query": false, "hide_credentials": true})
		r := proxy(t, n, harness.Request{Method: http.MethodPost, URL: "/ka-body/anything", Body: []byte("apikey=alice-key&x=1"), ContentType: "application/x-www-form-urlencoded"})
		if harness.CheckStatus(t, r, 200) {
			er := echo.Parse(t, r.Body)
			if er.Body != "x=1" {
				t.Errorf("hide_credentials on a form body: upstream body %q, want x=1", er.Body)
			}
		}
		r = proxy(t, n, harness.Request{Method: http.MethodPost, URL: "/ka-body/anything", Body: []byte(`{"apikey":"alice-key"}`), ContentType: "application/json"})
		harness.CheckStatus(t, r, 200)
		// The header is not consulted any more.
		check401(t, proxy(t, n, get("/ka-body/anything", "apikey", "alice-key")), "No API key found in request", "Key")
	})

	t.Run("B43_custom_key_names_and_realm", func(t *testing.T) {
		addRoute("/ka-names", map[string]any{"key_names": []any{"x-token", "tok"}, "realm": "gatehouse"})
		check401(t, proxy(t, n, get("/ka-names/anything", "apikey", "alice-key")), "No API key found in request", `Key realm="gatehouse"`)
		harness.CheckStatus(t, proxy(t, n, get("/ka-names/anything", "x-token", "alice-key")), 200)
		harness.CheckStatus(t, proxy(t, n, get("/ka-names/anything?tok=alice-key")), 200)
	})

	t.Run("B43_anonymous", func(t *testing.T) {
		anon := create(t, n, "/consumers", map[string]any{"username": "anon"})
		addRoute("/ka-anon", map[string]any{"anonymous": idOf(anon)})
		for _, rq := range []harness.Request{get("/ka-anon/anything"), get("/ka-anon/anything", "apikey", "wrong")} {
			r := proxy(t, n, rq)
			if !harness.CheckStatus(t, r, 200) {
				continue
			}
			er := echo.Parse(t, r.Body)
			if er.Header("X-Consumer-Username") != "anon" || er.Header("X-Anonymous-Consumer") != "true" || er.Header("X-Consumer-ID") != idOf(anon) {
				t.Errorf("anonymous: upstream consumer headers %q %q %q", er.Header("X-Consumer-Username"), er.Header("X-Anonymous-Consumer"), er.Header("X-Consumer-ID"))
			}
		}
		r := proxy(t, n, get("/ka-anon/anything", "apikey", "alice-key"))
		if harness.CheckStatus(t, r, 200) {
			er := echo.Parse(t, r.Body)
			if er.Header("X-Consumer-Username") != "alice" || er.HasHeader("X-Anonymous-Consumer") {
				t.Errorf("authenticated on an anonymous route: username %q, anonymous %q", er.Header("X-Consumer-Username"), er.Header("X-Anonymous-Consumer"))
			}
		}
		// Anonymous given by username.
		addRoute("/ka-anon-name", map[string]any{"anonymous": "anon"})
		r = proxy(t, n, get("/ka-anon-name/anything"))
		if harness.CheckStatus(t, r, 200) && echo.Parse(t, r.Body).Header("X-Consumer-Username") != "anon" {
			t.Errorf("anonymous by username not applied")
		}
		// A missing anonymous consumer is a server error.
		missing := randomUUID()
		rt := route(t, n, idOf(svc), map[string]any{"paths": []any{"/ka-anon-missing"}})
		create(t, n, "/routes/"+idOf(rt)+"/plugins", map[string]any{"name": "key-auth", "config": map[string]any{"anonymous": missing}})
		r = waitFor(t, n, "plugin with missing anonymous", get("/ka-anon-missing"), func(r *harness.Response) bool { return r.Status != 200 && r.Status != 404 })
		harness.CheckMessage(t, r, http.StatusInternalServerError, "anonymous consumer "+missing+" is configured but doesn't exist")
	})

	t.Run("B43_preflight", func(t *testing.T) {
		harness.CheckStatus(t, proxy(t, n, harness.Request{Method: http.MethodOptions, URL: "/ka/anything"}), 401)
		addRoute("/ka-pre", map[string]any{"run_on_preflight": false})
		r := proxy(t, n, harness.Request{Method: http.MethodOptions, URL: "/ka-pre/anything"})
		if r.Status != 200 || r.Header.Get("X-Upstream-Name") == "" {
			t.Errorf("run_on_preflight=false: OPTIONS %s, want it proxied without a key", r)
		}
	})

	t.Run("B43_ttl_key_expires", func(t *testing.T) {
		r := harness.JSON(t, http.MethodPost, n.Admin("/consumers/alice/key-auth"), map[string]any{"key": "short-lived", "ttl": 2})
		harness.ExpectStatus(t, r, http.StatusCreated)
		harness.CheckStatus(t, proxy(t, n, get("/ka/anything", "apikey", "short-lived")), 200)
		ok := harness.Poll(6*time.Second, 250*time.Millisecond, func() (bool, string) {
			r := proxy(t, n, get("/ka/anything", "apikey", "short-lived"))
			return r.Status == 401, r.String()
		})
		if !ok {
			t.Fatalf("a key with ttl=2 still works after 6 s")
		}
		check401(t, proxy(t, n, get("/ka/anything", "apikey", "short-lived")), invalidKey, "Key")
		harness.CheckStatus(t, harness.Get(t, n.Admin("/key-auths/short-lived")), http.StatusNotFound)
	})

	t.Run("X_credential_and_consumer_deletion", func(t *testing.T) {
		c := create(t, n, "/consumers", map[string]any{"username": uniq("temp")})
		k := create(t, n, "/consumers/"+idOf(c)+"/key-auth", map[string]any{"key": uniq("temp-key")})
		key := harness.Str(k, "key")
		waitFor(t, n, "new key works", get("/ka/anything", "apikey", key), func(r *harness.Response) bool { return r.Status == 200 })

		harness.CheckStatus(t, harness.Method(t, http.MethodDelete, n.Admin("/key-auths/"+url.PathEscape(key))), http.StatusNoContent)
		r := waitFor(t, n, "deleted key rejected", get("/ka/anything", "apikey", key), func(r *harness.Response) bool { return r.Status == 401 })
		check401(t, r, invalidKey, "Key")

		create(t, n, "/consumers/"+idOf(c)+"/key-auth", map[string]any{"key": key})
		waitFor(t, n, "recreated key works", get("/ka/anything", "apikey", key), func(r *harness.Response) bool { return r.Status == 200 })
		harness.CheckStatus(t, harness.Method(t, http.MethodDelete, n.Admin("/consumers/"+idOf(c))), http.StatusNoContent)
		waitFor(t, n, "key of a deleted consumer rejected", get("/ka/anything", "apikey", key), func(r *harness.Response) bool { return r.Status == 401 })
	})
}
