package e2e

import (
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"strings"
	"testing"

	"github.com/gatehouse-gw/gatehouse/test/echo"
	"github.com/gatehouse-gw/gatehouse/test/harness"
)

func basic(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

// TestBasicAuth follows Kong's basic-auth plugin and credential API: the
// password is stored as Kong stores it, every failure is 401 Unauthorized
// with a Basic challenge, Proxy-Authorization is tried first, and
// hide_credentials keeps the header from the upstream.
func TestBasicAuth(t *testing.T) {
	n := harness.Start(t, harness.Options{NodeID: "basic-auth"})
	up := echo.StartT(t, "echo-basic")
	a := admin{n}
	a.create(t, "/services", map[string]any{"name": "svc", "url": up.URL})
	a.create(t, "/services/svc/routes", map[string]any{"name": "r", "paths": []string{"/ba"}})
	consumer := a.create(t, "/consumers", map[string]any{"username": "ana"})
	cid := consumer["id"].(string)

	// The credential: form body as in Kong's docs, hash in the answer.
	r := a.form(t, http.MethodPost, "/consumers/ana/basic-auth", "username", "ana-login", "password", "s3cret:with:colons")
	harness.ExpectStatus(t, r, http.StatusCreated)
	cred := r.JSON(t)
	sum := sha1.Sum([]byte("s3cret:with:colons" + cid))
	wantHash := hex.EncodeToString(sum[:])
	if cred["password"] != wantHash {
		t.Errorf("stored password %v, want sha1_hex(password .. consumer_id) %s", cred["password"], wantHash)
	}
	if got := a.get(t, "/basic-auths/ana-login").JSON(t)["id"]; got != cred["id"] {
		t.Errorf("GET /basic-auths/{username} id %v, want %v", got, cred["id"])
	}
	if got := a.get(t, "/basic-auths/"+cred["id"].(string)+"/consumer").JSON(t)["username"]; got != "ana" {
		t.Errorf("GET /basic-auths/{id}/consumer username %v, want ana", got)
	}
	r = a.json(t, http.MethodPost, "/consumers/ana/basic-auth", map[string]any{"username": "ana-login", "password": "x"})
	harness.ExpectStatus(t, r, http.StatusConflict)
	r = a.json(t, http.MethodPost, "/consumers/ana/basic-auth", map[string]any{"username": "no-password"})
	harness.ExpectStatus(t, r, http.StatusBadRequest)
	if !strings.Contains(r.String(), "password") {
		t.Errorf("missing password: error does not name the field: %s", r)
	}
	// An update without a password keeps the hash; tags change.
	r = a.json(t, http.MethodPatch, "/basic-auths/ana-login", map[string]any{"tags": []string{"t1"}})
	harness.ExpectStatus(t, r, http.StatusOK)
	if got := r.JSON(t)["password"]; got != wantHash {
		t.Errorf("PATCH without a password changed the hash to %v", got)
	}
	// Sending the stored hash back (a dump applied again) keeps it.
	r = a.json(t, http.MethodPut, "/consumers/ana/basic-auth/"+cred["id"].(string),
		map[string]any{"username": "ana-login", "password": wantHash})
	harness.ExpectStatus(t, r, http.StatusOK)
	if got := r.JSON(t)["password"]; got != wantHash {
		t.Errorf("PUT with the stored hash hashed it again: %v", got)
	}

	a.create(t, "/routes/r/plugins", map[string]any{"name": "basic-auth", "config": map[string]any{"hide_credentials": true}})
	r = waitProxy(t, n, "basic-auth active", "/ba", func(r *harness.Response) bool { return r.Status == 401 })
	harness.CheckMessage(t, r, http.StatusUnauthorized, "Unauthorized")
	if got := r.Header.Get("WWW-Authenticate"); got != `Basic realm="service"` {
		t.Errorf("no credentials: WWW-Authenticate = %q, want Basic realm=\"service\"", got)
	}
	for what, h := range map[string]string{
		"wrong password": basic("ana-login", "nope"),
		"unknown user":   basic("who", "s3cret:with:colons"),
		"not base64":     "Basic %%%",
		"bearer scheme":  "Bearer " + base64.StdEncoding.EncodeToString([]byte("ana-login:s3cret:with:colons")),
	} {
		r = proxyGet(t, n, "/ba", "Authorization", h)
		if r.Status != http.StatusUnauthorized {
			t.Errorf("%s: status %d, want 401", what, r.Status)
		}
	}
	r = proxyGet(t, n, "/ba", "Authorization", basic("ana-login", "s3cret:with:colons"))
	if harness.CheckStatus(t, r, http.StatusOK) {
		er := echo.Parse(t, r.Body)
		if got := er.Header("X-Consumer-Username"); got != "ana" {
			t.Errorf("upstream X-Consumer-Username = %q, want ana", got)
		}
		if got := er.Header("X-Credential-Identifier"); got != cred["id"] {
			t.Errorf("upstream X-Credential-Identifier = %q, want the credential id %v", got, cred["id"])
		}
		if er.HasHeader("Authorization") {
			t.Errorf("hide_credentials: the upstream still received Authorization")
		}
	}
	// Proxy-Authorization is judged first: a bad one fails even with a
	// good Authorization.
	r = proxyGet(t, n, "/ba", "Proxy-Authorization", basic("ana-login", "bad"), "Authorization", basic("ana-login", "s3cret:with:colons"))
	if r.Status != http.StatusUnauthorized {
		t.Errorf("bad Proxy-Authorization with good Authorization: status %d, want 401", r.Status)
	}
	r = proxyGet(t, n, "/ba", "Proxy-Authorization", basic("ana-login", "s3cret:with:colons"))
	harness.CheckStatus(t, r, http.StatusOK)

	// The hash is a secret in the audit views.
	events := a.get(t, "/audit/events?entity_type=basicauth_credentials").String()
	if strings.Contains(events, wantHash) || strings.Contains(events, "s3cret") {
		t.Errorf("the audit view shows the password or its hash in clear")
	}

	// Deleting the consumer removes the credential; the proxy then refuses.
	harness.ExpectStatus(t, a.del(t, "/consumers/ana", true), http.StatusNoContent)
	harness.ExpectStatus(t, a.get(t, "/basic-auths/ana-login"), http.StatusNotFound)
	waitProxy(t, n, "credential gone with its consumer", "/ba", func(r *harness.Response) bool { return r.Status == 401 },
		"Authorization", basic("ana-login", "s3cret:with:colons"))
}
