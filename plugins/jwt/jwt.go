// Package jwt is Kong's jwt plugin: the request carries a signed JSON Web
// Token whose key claim (iss by default) names a jwt credential; the
// credential's secret or public key must verify the signature.
package jwt

import (
	"encoding/base64"
	"errors"
	"strings"
	"time"

	gojwt "github.com/golang-jwt/jwt/v5"

	"github.com/gatehouse-gw/gatehouse/fsm"
	"github.com/gatehouse-gw/gatehouse/fsm/schema"
	"github.com/gatehouse-gw/gatehouse/plugins"
)

// Definition returns the plugin definition.
func Definition() *plugins.Definition {
	return &plugins.Definition{
		Name: "jwt", Priority: 1450, Version: "3.9.1", NoConsumer: true,
		Config: &schema.Schema{Name: "jwt", Fields: []*schema.Field{
			plugins.Strings("uri_param_names", "jwt"),
			plugins.Strings("cookie_names"),
			plugins.Strings("header_names", "authorization"),
			{Name: "claims_to_verify", Type: schema.Set, Elements: &schema.Field{Type: schema.String, OneOf: []string{"exp", "nbf"}}},
			plugins.Str("key_claim_name", "iss"),
			plugins.Bool("secret_is_base64", false),
			plugins.Str("anonymous", nil),
			plugins.Bool("run_on_preflight", true),
			{Name: "maximum_expiration", Type: schema.Number, Default: 0.0, Between: &[2]float64{0, 31536000}},
			plugins.Str("realm", nil),
		}},
		Compile: compile,
	}
}

type handler struct {
	uriParams, cookies, headers []string
	verifyExp, verifyNbf        bool
	keyClaim                    string
	base64Secret                bool
	anonymous                   string
	runOnPreflight              bool
	maxExpiration               time.Duration
	challenge                   [2]string
}

func compile(c map[string]any) (plugins.Handler, schema.Errors) {
	h := &handler{uriParams: plugins.StrList(c["uri_param_names"]), cookies: plugins.StrList(c["cookie_names"]),
		headers: plugins.StrList(c["header_names"]), keyClaim: plugins.String(c, "key_claim_name"),
		base64Secret: plugins.Flag(c, "secret_is_base64"), anonymous: plugins.String(c, "anonymous"),
		runOnPreflight: plugins.Flag(c, "run_on_preflight"), challenge: [2]string{"WWW-Authenticate", "Bearer"}}
	for _, cl := range plugins.StrList(c["claims_to_verify"]) {
		h.verifyExp = h.verifyExp || cl == "exp"
		h.verifyNbf = h.verifyNbf || cl == "nbf"
	}
	if f, _ := c["maximum_expiration"].(float64); f > 0 {
		h.maxExpiration = time.Duration(f) * time.Second
		if !h.verifyExp {
			return nil, schema.Errors{"maximum_expiration": "expected 'claims_to_verify' to contain 'exp'"}
		}
	}
	if r := plugins.String(c, "realm"); r != "" {
		h.challenge[1] = `Bearer realm="` + r + `"`
	}
	return h, nil
}

var _ plugins.Accessor = (*handler)(nil)

// failure is how a request is refused: Kong answers some with a message,
// claim errors with an object of claim names.
type failure struct {
	status int
	msg    string
	claims map[string]string
}

func (h *handler) Access(ctx *plugins.Context) {
	if !h.runOnPreflight && ctx.Req.Method() == "OPTIONS" {
		return
	}
	if h.anonymous != "" && ctx.Consumer != nil && ctx.CredentialID != "" {
		return // already authenticated by another plugin (logical OR)
	}
	f := h.authenticate(ctx)
	if f == nil {
		return
	}
	if h.anonymous != "" {
		ctx.SetAnonymous(h.anonymous)
		return
	}
	if f.claims != nil {
		ctx.ExitJSON(f.status, f.claims, h.challenge)
		return
	}
	ctx.Error(f.status, f.msg, h.challenge)
}

// token finds the token: query parameters, then cookies, then headers
// (with or without "Bearer "). More than one distinct token is refused.
func (h *handler) token(ctx *plugins.Context) (string, *failure) {
	var found []string
	for _, n := range h.uriParams {
		if v, ok := ctx.Req.Query(n); ok && v != "" {
			found = append(found, v)
		}
	}
	for _, n := range h.cookies {
		if v := cookie(ctx.Req, n); v != "" {
			found = append(found, v)
		}
	}
	for _, n := range h.headers {
		if v, ok := ctx.Req.Header(n); ok && v != "" {
			if scheme, rest, ok := strings.Cut(v, " "); ok && strings.EqualFold(scheme, "bearer") {
				v = strings.TrimSpace(rest)
			}
			found = append(found, v)
		}
	}
	if len(found) == 0 {
		return "", &failure{status: 401, msg: "Unauthorized"}
	}
	for _, t := range found[1:] {
		if t != found[0] {
			return "", &failure{status: 401, msg: "Multiple tokens provided"}
		}
	}
	return found[0], nil
}

func cookie(r plugins.Request, name string) string {
	v, _ := r.Header("Cookie")
	for _, part := range strings.Split(v, ";") {
		k, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		if ok && k == name {
			return val
		}
	}
	return ""
}

func (h *handler) authenticate(ctx *plugins.Context) *failure {
	tok, f := h.token(ctx)
	if f != nil {
		return f
	}
	// One parse: the key function reads the key claim, which names the
	// credential, and hands back its key; the credential's algorithm is
	// the only one accepted. Registered claims are checked below, and
	// only those the config asks for, as Kong does.
	claims := gojwt.MapClaims{}
	var refused *failure
	var cred *fsm.JWTSecret
	keyFor := func(t *gojwt.Token) (any, error) {
		key, f := h.credential(ctx, claims)
		if f != nil {
			refused = f
			return nil, errRefused
		}
		cred = key
		if t.Method.Alg() != cred.Algorithm {
			refused = &failure{status: 403, msg: "Invalid algorithm"}
			return nil, errRefused
		}
		if strings.HasPrefix(cred.Algorithm, "HS") {
			if !h.base64Secret {
				return []byte(cred.Secret), nil
			}
			secret, err := base64.StdEncoding.DecodeString(cred.Secret)
			if err != nil {
				refused = &failure{status: 403, msg: "Invalid key/secret"}
				return nil, errRefused
			}
			return secret, nil
		}
		if cred.PublicKey == nil {
			refused = &failure{status: 403, msg: "Invalid key/secret"}
			return nil, errRefused
		}
		return cred.PublicKey, nil
	}
	_, err := gojwt.NewParser(gojwt.WithoutClaimsValidation()).ParseWithClaims(tok, claims, keyFor)
	switch {
	case refused != nil:
		return refused
	case errors.Is(err, gojwt.ErrTokenMalformed):
		return &failure{status: 401, msg: "Bad token; " + err.Error()}
	case err != nil:
		return &failure{status: 401, msg: "Invalid signature"}
	}
	now := time.Now()
	bad := map[string]string{}
	if h.verifyExp {
		if exp, ok := number(claims["exp"]); !ok {
			bad["exp"] = "must be a number"
		} else if now.Unix() >= int64(exp) {
			bad["exp"] = "token expired"
		}
	}
	if h.verifyNbf {
		if nbf, ok := number(claims["nbf"]); !ok {
			bad["nbf"] = "must be a number"
		} else if now.Unix() < int64(nbf) {
			bad["nbf"] = "token not valid yet"
		}
	}
	if len(bad) > 0 {
		return &failure{status: 401, claims: bad}
	}
	if h.maxExpiration > 0 {
		if exp, _ := number(claims["exp"]); time.Unix(int64(exp), 0).After(now.Add(h.maxExpiration)) {
			return &failure{status: 401, claims: map[string]string{"exp": "exceeds maximum allowed expiration"}}
		}
	}
	ce := ctx.ConsumerEntity(cred.ConsumerID)
	if ce == nil {
		return &failure{status: 401, msg: "Could not find consumer for '" + h.keyClaim + "=" + cred.Key + "'"}
	}
	ctx.SetConsumer(ce.View.(*fsm.Consumer), cred.ID)
	return nil
}

var errRefused = errors.New("refused")

// credential is the jwt credential the token's key claim names.
func (h *handler) credential(ctx *plugins.Context, claims gojwt.MapClaims) (*fsm.JWTSecret, *failure) {
	raw, present := claims[h.keyClaim]
	if !present {
		return nil, &failure{status: 401, msg: "No mandatory '" + h.keyClaim + "' in claims"}
	}
	key, _ := raw.(string)
	if key == "" {
		return nil, &failure{status: 401, msg: "Invalid '" + h.keyClaim + "' in claims"}
	}
	e := ctx.State.FindUnique(fsm.JWTSecrets, "key", key)
	if e == nil {
		return nil, &failure{status: 401, msg: "No credentials found for given '" + h.keyClaim + "'"}
	}
	return e.View.(*fsm.JWTSecret), nil
}

func number(v any) (float64, bool) {
	f, ok := v.(float64)
	return f, ok
}
