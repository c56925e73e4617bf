package e2e

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"strings"
	"testing"
	"time"

	gojwt "github.com/golang-jwt/jwt/v5"

	"github.com/gatehouse-gw/gatehouse/test/echo"
	"github.com/gatehouse-gw/gatehouse/test/harness"
)

func signHS(t *testing.T, secret string, claims gojwt.MapClaims) string {
	t.Helper()
	s, err := gojwt.NewWithClaims(gojwt.SigningMethodHS256, claims).SignedString([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestJWTPlugin follows Kong's jwt plugin: credentials with generated key
// and secret, tokens from the header, query or cookie, the key claim
// naming the credential, HS256 and RS256 signatures, exp and nbf checks
// when configured, and Kong's answers for each failure.
func TestJWTPlugin(t *testing.T) {
	n := harness.Start(t, harness.Options{NodeID: "jwt"})
	up := echo.StartT(t, "echo-jwt")
	a := admin{n}
	a.create(t, "/services", map[string]any{"name": "svc", "url": up.URL})
	a.create(t, "/services/svc/routes", map[string]any{"name": "r", "paths": []string{"/jwt"}})
	a.create(t, "/consumers", map[string]any{"username": "ana"})

	hs := a.create(t, "/consumers/ana/jwt", map[string]any{})
	key, secret := hs["key"].(string), hs["secret"].(string)
	if len(key) < 16 || len(secret) < 16 || hs["algorithm"] != "HS256" {
		t.Fatalf("generated credential %v", hs)
	}
	if got := a.get(t, "/jwts/"+key).JSON(t)["id"]; got != hs["id"] {
		t.Errorf("GET /jwts/{key} = %v", got)
	}
	harness.ExpectStatus(t, a.json(t, http.MethodPost, "/consumers/ana/jwt", map[string]any{"algorithm": "RS256"}), http.StatusBadRequest)

	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	der, _ := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	pub := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	a.create(t, "/consumers/ana/jwt", map[string]any{"key": "rsa-issuer", "algorithm": "RS256", "rsa_public_key": pub})

	a.create(t, "/routes/r/plugins", map[string]any{"name": "jwt", "config": map[string]any{
		"claims_to_verify": []string{"exp", "nbf"}, "cookie_names": []string{"jwt_cookie"}}})
	r := waitProxy(t, n, "jwt active", "/jwt", func(r *harness.Response) bool { return r.Status == 401 })
	harness.CheckMessage(t, r, http.StatusUnauthorized, "Unauthorized")

	valid := gojwt.MapClaims{"iss": key, "exp": time.Now().Add(time.Hour).Unix(), "nbf": time.Now().Add(-time.Minute).Unix()}
	tok := signHS(t, secret, valid)
	for what, req := range map[string][]string{
		"bearer header": {"/jwt", "Authorization", "Bearer " + tok},
		"query":         {"/jwt?jwt=" + tok},
		"cookie":        {"/jwt", "Cookie", "other=1; jwt_cookie=" + tok},
	} {
		r := proxyGet(t, n, req[0], req[1:]...)
		if !harness.CheckStatus(t, r, 200) {
			t.Errorf("%s: %s", what, r)
			continue
		}
		if got := echo.Parse(t, r.Body).Header("X-Consumer-Username"); got != "ana" {
			t.Errorf("%s: upstream X-Consumer-Username = %q", what, got)
		}
	}

	rs, err := gojwt.NewWithClaims(gojwt.SigningMethodRS256, gojwt.MapClaims{"iss": "rsa-issuer",
		"exp": time.Now().Add(time.Hour).Unix(), "nbf": time.Now().Unix() - 5}).SignedString(rsaKey)
	if err != nil {
		t.Fatal(err)
	}
	harness.CheckStatus(t, proxyGet(t, n, "/jwt", "Authorization", "Bearer "+rs), 200)

	other, _ := gojwt.NewWithClaims(gojwt.SigningMethodHS384, valid).SignedString([]byte(secret))
	for what, c := range map[string]struct {
		token   string
		status  int
		message string
	}{
		"garbage":           {"not.a.token", 401, "Bad token"},
		"no iss":            {signHS(t, secret, gojwt.MapClaims{"exp": valid["exp"]}), 401, "No mandatory 'iss' in claims"},
		"unknown iss":       {signHS(t, secret, gojwt.MapClaims{"iss": "nobody", "exp": valid["exp"]}), 401, "No credentials found for given 'iss'"},
		"wrong secret":      {signHS(t, "wrong-secret", valid), 401, "Invalid signature"},
		"other algorithm":   {other, 403, "Invalid algorithm"},
		"expired":           {signHS(t, secret, gojwt.MapClaims{"iss": key, "exp": time.Now().Add(-time.Minute).Unix(), "nbf": valid["nbf"]}), 401, "token expired"},
		"not yet valid":     {signHS(t, secret, gojwt.MapClaims{"iss": key, "exp": valid["exp"], "nbf": time.Now().Add(time.Hour).Unix()}), 401, "token not valid yet"},
		"HS token, RS cred": {signHS(t, secret, gojwt.MapClaims{"iss": "rsa-issuer", "exp": valid["exp"]}), 403, "Invalid algorithm"},
	} {
		r := proxyGet(t, n, "/jwt", "Authorization", "Bearer "+c.token)
		if r.Status != c.status || !strings.Contains(r.Text(), c.message) {
			t.Errorf("%s: %s, want %d %q", what, r, c.status, c.message)
		}
	}
	r = proxyGet(t, n, "/jwt?jwt="+tok, "Authorization", "Bearer "+rs)
	if r.Status != 401 || !strings.Contains(r.Text(), "Multiple tokens provided") {
		t.Errorf("two different tokens: %s", r)
	}
	// The secret is a secret in the audit views.
	if ev := a.get(t, "/audit/events?entity_type=jwt_secrets").String(); strings.Contains(ev, secret) {
		t.Errorf("the jwt secret appears in clear in the audit view")
	}
}
