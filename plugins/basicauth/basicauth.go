// Package basicauth is Kong's basic-auth plugin: a consumer is identified
// by a username and password sent as HTTP Basic credentials.
package basicauth

import (
	"crypto/subtle"
	"encoding/base64"
	"strings"

	"github.com/gatehouse-gw/gatehouse/fsm"
	"github.com/gatehouse-gw/gatehouse/fsm/schema"
	"github.com/gatehouse-gw/gatehouse/plugins"
)

// msgUnauthorized is Kong's answer to every failure (3.x).
const msgUnauthorized = "Unauthorized"

// Definition returns the plugin definition.
func Definition() *plugins.Definition {
	return &plugins.Definition{
		Name: "basic-auth", Priority: 1100, Version: "3.9.1", NoConsumer: true,
		Config: &schema.Schema{Name: "basic-auth", Fields: []*schema.Field{
			plugins.Str("anonymous", nil),
			plugins.Bool("hide_credentials", false),
			plugins.Str("realm", "service"),
		}},
		Compile: compile,
	}
}

type handler struct {
	anonymous string
	hide      bool
	challenge [2]string
}

func compile(c map[string]any) (plugins.Handler, schema.Errors) {
	return &handler{anonymous: plugins.String(c, "anonymous"), hide: plugins.Flag(c, "hide_credentials"),
		challenge: [2]string{"WWW-Authenticate", `Basic realm="` + plugins.String(c, "realm") + `"`}}, nil
}

var _ plugins.Accessor = (*handler)(nil)

func (h *handler) Access(ctx *plugins.Context) {
	if h.anonymous != "" && ctx.Consumer != nil && ctx.CredentialID != "" {
		return // already authenticated by another plugin (logical OR)
	}
	if h.authenticate(ctx) {
		return
	}
	if h.anonymous != "" {
		ctx.SetAnonymous(h.anonymous)
		return
	}
	ctx.Error(401, msgUnauthorized, h.challenge)
}

// authenticate checks Proxy-Authorization, then Authorization, as Kong
// does: the first header carrying Basic credentials is the one judged.
func (h *handler) authenticate(ctx *plugins.Context) bool {
	for _, name := range []string{"Proxy-Authorization", "Authorization"} {
		v, ok := ctx.Req.Header(name)
		if !ok || v == "" {
			continue
		}
		user, pass, ok := parseBasic(v)
		if !ok {
			continue
		}
		e := ctx.State.FindUnique(fsm.BasicAuths, "username", user)
		if e == nil {
			return false
		}
		cred := e.View.(*fsm.BasicAuth)
		want := fsm.HashPassword(pass, cred.ConsumerID)
		if subtle.ConstantTimeCompare([]byte(want), []byte(cred.PasswordHash)) != 1 {
			return false
		}
		ce := ctx.ConsumerEntity(cred.ConsumerID)
		if ce == nil {
			return false
		}
		if h.hide {
			ctx.Req.DelHeader(name)
		}
		ctx.SetConsumer(ce.View.(*fsm.Consumer), cred.ID)
		return true
	}
	return false
}

// parseBasic splits "Basic base64(user:pass)"; the password may hold
// colons, the username may not.
func parseBasic(v string) (user, pass string, ok bool) {
	scheme, enc, found := strings.Cut(strings.TrimSpace(v), " ")
	if !found || !strings.EqualFold(scheme, "basic") {
		return "", "", false
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(enc))
	if err != nil {
		return "", "", false
	}
	user, pass, ok = strings.Cut(string(raw), ":")
	return user, pass, ok
}
