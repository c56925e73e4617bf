// Package keyauth is Kong's key-auth plugin: a consumer is identified by an
// API key sent in a header, the query string or the body.
package keyauth

import (
	"encoding/json"
	"mime"
	"net/url"
	"time"

	"github.com/gatehouse-gw/gatehouse/fsm"
	"github.com/gatehouse-gw/gatehouse/fsm/schema"
	"github.com/gatehouse-gw/gatehouse/plugins"
)

// Messages. Kong 3.7 changed the bad-key message to "Unauthorized"; the
// getting-started guide (and so our users' scripts) still show this one.
const (
	msgNoKey     = "No API key found in request"
	msgBadKey    = "Invalid authentication credentials"
	msgDuplicate = "Duplicate API key found"
)

// Definition returns the plugin definition.
func Definition() *plugins.Definition {
	return &plugins.Definition{
		Name: "key-auth", Priority: 1250, Version: "3.9.1", NoConsumer: true,
		Config: &schema.Schema{Name: "key-auth", Fields: []*schema.Field{
			plugins.Strings("key_names", "apikey"),
			plugins.Bool("hide_credentials", false),
			plugins.Str("anonymous", nil),
			plugins.Bool("key_in_header", true),
			plugins.Bool("key_in_query", true),
			plugins.Bool("key_in_body", false),
			plugins.Bool("run_on_preflight", true),
			plugins.Str("realm", nil),
		}},
		Compile: compile,
	}
}

type handler struct {
	keyNames       []string
	hide           bool
	anonymous      string
	inHeader       bool
	inQuery        bool
	inBody         bool
	runOnPreflight bool
	challenge      [2]string
}

func compile(c map[string]any) (plugins.Handler, schema.Errors) {
	h := &handler{
		keyNames: plugins.StrList(c["key_names"]), hide: plugins.Flag(c, "hide_credentials"),
		anonymous: plugins.String(c, "anonymous"), inHeader: plugins.Flag(c, "key_in_header"),
		inQuery: plugins.Flag(c, "key_in_query"), inBody: plugins.Flag(c, "key_in_body"),
		runOnPreflight: plugins.Flag(c, "run_on_preflight"),
		challenge:      [2]string{"WWW-Authenticate", "Key"},
	}
	if len(h.keyNames) == 0 {
		return nil, schema.Errors{"key_names": "length must be at least 1"}
	}
	if r := plugins.String(c, "realm"); r != "" {
		h.challenge[1] = `Key realm="` + r + `"`
	}
	return h, nil
}

var _ plugins.Accessor = (*handler)(nil)

func (h *handler) Access(ctx *plugins.Context) {
	if !h.runOnPreflight && ctx.Req.Method() == "OPTIONS" {
		return
	}
	if h.anonymous != "" && ctx.Consumer != nil && ctx.CredentialID != "" {
		return // already authenticated by another plugin (logical OR)
	}
	status, msg := h.authenticate(ctx)
	if status == 0 {
		return
	}
	if h.anonymous != "" {
		ctx.SetAnonymous(h.anonymous)
		return
	}
	ctx.Error(status, msg, h.challenge)
}

func (h *handler) authenticate(ctx *plugins.Context) (int, string) {
	key, where, name := "", "", ""
	for _, n := range h.keyNames {
		if h.inHeader {
			// A view: the key is only looked up, never kept.
			if v, ok := ctx.Req.HeaderView(n); ok && v != "" {
				key, where, name = v, "header", n
				break
			}
		}
		if h.inQuery {
			if c := ctx.Req.QueryCount(n); c > 1 {
				return 401, msgDuplicate
			} else if v, ok := ctx.Req.Query(n); ok && v != "" {
				key, where, name = v, "query", n
				break
			}
		}
		if h.inBody {
			if v, dup := bodyKey(ctx.Req, n); dup {
				return 401, msgDuplicate
			} else if v != "" {
				key, where, name = v, "body", n
				break
			}
		}
	}
	if key == "" {
		return 401, msgNoKey
	}
	e := ctx.KeyAuth(key)
	if e == nil {
		return 401, msgBadKey
	}
	cred := e.View.(*fsm.KeyAuth)
	if cred.Expired(time.Now().Unix()) {
		return 401, msgBadKey
	}
	ce := ctx.ConsumerEntity(cred.ConsumerID)
	if ce == nil {
		return 401, msgBadKey
	}
	if h.hide {
		switch where {
		case "header":
			ctx.Req.DelHeader(name)
		case "query":
			ctx.Req.DelQuery(name)
		case "body":
			removeBodyKey(ctx.Req, name)
		}
	}
	ctx.SetConsumer(ce.View.(*fsm.Consumer), cred.ID)
	return 0, ""
}

func mediaType(r plugins.Request) string {
	mt, _, _ := mime.ParseMediaType(r.ContentType())
	return mt
}

// bodyKey reads a key from a form or JSON body; dup reports an array value.
func bodyKey(r plugins.Request, name string) (string, bool) {
	switch mediaType(r) {
	case "application/x-www-form-urlencoded":
		vals, err := url.ParseQuery(string(r.Body()))
		if err != nil {
			return "", false
		}
		if len(vals[name]) > 1 {
			return "", true
		}
		return vals.Get(name), false
	case "application/json":
		var m map[string]any
		if json.Unmarshal(r.Body(), &m) != nil {
			return "", false
		}
		switch v := m[name].(type) {
		case string:
			return v, false
		case []any:
			return "", true
		}
	}
	return "", false
}

func removeBodyKey(r plugins.Request, name string) {
	switch mediaType(r) {
	case "application/x-www-form-urlencoded":
		vals, err := url.ParseQuery(string(r.Body()))
		if err == nil {
			vals.Del(name)
			r.SetBody([]byte(vals.Encode()))
		}
	case "application/json":
		var m map[string]any
		if json.Unmarshal(r.Body(), &m) == nil {
			delete(m, name)
			if b, err := json.Marshal(m); err == nil {
				r.SetBody(b)
			}
		}
	}
}
