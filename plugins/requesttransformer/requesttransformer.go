// Package requesttransformer is Kong's request-transformer plugin: the
// request is rewritten before it goes upstream, in Kong's order (remove,
// rename, replace, add, append) for headers, query string and body (form
// and JSON), with an optional new method and path.
package requesttransformer

import (
	"encoding/json"
	"mime"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/gatehouse-gw/gatehouse/fsm/schema"
	"github.com/gatehouse-gw/gatehouse/plugins"
)

var methodRe = regexp.MustCompile(`^[A-Z]+$`)

// Definition returns the plugin definition.
func Definition() *plugins.Definition {
	list := func(name string) *schema.Field {
		return &schema.Field{Name: name, Type: schema.Array, Default: []any{}, Required: true,
			Elements: &schema.Field{Type: schema.String}}
	}
	record := func(name string, extra ...*schema.Field) *schema.Field {
		return &schema.Field{Name: name, Type: schema.Record, Required: true,
			Fields: append([]*schema.Field{list("body"), list("headers"), list("querystring")}, extra...)}
	}
	return &plugins.Definition{
		Name: "request-transformer", Priority: 801, Version: "3.9.1",
		Config: &schema.Schema{Name: "request-transformer", Fields: []*schema.Field{
			{Name: "http_method", Type: schema.String, Match: methodRe, MatchEr: "invalid value: must be uppercase"},
			record("remove"),
			record("rename"),
			record("replace", &schema.Field{Name: "uri", Type: schema.String}),
			record("add"),
			record("append"),
		}},
		Compile: compile,
	}
}

type pair struct{ name, value string }

// ops is one of Kong's operations on the three parts of a request.
type ops struct {
	body, headers, query []pair
}

type handler struct {
	method                             string
	uri                                string
	remove, rename, replace, add, apnd ops
}

func compile(c map[string]any) (plugins.Handler, schema.Errors) {
	h := &handler{method: plugins.String(c, "http_method")}
	errs := schema.Errors{}
	read := func(op string, withValue bool) ops {
		m, _ := c[op].(map[string]any)
		var o ops
		for _, part := range []string{"body", "headers", "querystring"} {
			var ps []pair
			for i, item := range plugins.StrList(m[part]) {
				name, value, found := strings.Cut(item, ":")
				if withValue && !found {
					errs[op+"."+part+"."+strconv.Itoa(i+1)] = "invalid value: " + item
					continue
				}
				if strings.Contains(item, "$(") {
					// Kong evaluates these as Lua templates.
					errs[op+"."+part+"."+strconv.Itoa(i+1)] = "templates ($(...)) are not supported by Gatehouse"
					continue
				}
				ps = append(ps, pair{name, value})
			}
			switch part {
			case "body":
				o.body = ps
			case "headers":
				o.headers = ps
			default:
				o.query = ps
			}
		}
		return o
	}
	h.remove = read("remove", false)
	h.rename = read("rename", true)
	h.replace = read("replace", true)
	h.add = read("add", true)
	h.apnd = read("append", true)
	if m, _ := c["replace"].(map[string]any); m != nil {
		h.uri, _ = m["uri"].(string)
		if strings.Contains(h.uri, "$(") {
			errs["replace.uri"] = "templates ($(...)) are not supported by Gatehouse"
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return h, nil
}

var _ plugins.Accessor = (*handler)(nil)

func (h *handler) Access(ctx *plugins.Context) {
	r := ctx.Req
	h.headers(r)
	h.querystring(r)
	h.body(r)
	if h.method != "" {
		r.SetMethod(h.method)
	}
	if h.uri != "" {
		r.SetUpstreamPath(h.uri)
	}
}

// fields is one part of a request as name/value pairs: its headers, its
// query string or a form body. Kong's operations are the same on each.
type fields interface {
	get(name string) (string, bool)
	set(name, value string)
	add(name, value string)
	del(name string)
}

type headerFields struct{ r plugins.Request }

func (f headerFields) get(n string) (string, bool) { return f.r.Header(n) }
func (f headerFields) set(n, v string)             { f.r.SetHeader(n, v) }
func (f headerFields) add(n, v string)             { f.r.AddHeader(n, v) }
func (f headerFields) del(n string)                { f.r.DelHeader(n) }

type queryFields struct{ r plugins.Request }

func (f queryFields) get(n string) (string, bool) { return f.r.Query(n) }
func (f queryFields) set(n, v string)             { f.r.SetQuery(n, v) }
func (f queryFields) add(n, v string)             { f.r.AddQuery(n, v) }
func (f queryFields) del(n string)                { f.r.DelQuery(n) }

type formFields url.Values

func (f formFields) get(n string) (string, bool) {
	v, ok := f[n]
	return url.Values(f).Get(n), ok && len(v) > 0
}
func (f formFields) set(n, v string) { url.Values(f).Set(n, v) }
func (f formFields) add(n, v string) { url.Values(f).Add(n, v) }
func (f formFields) del(n string)    { url.Values(f).Del(n) }

// transform applies Kong's operations, in Kong's order: remove, rename
// (when present), replace (only what is present), add (only what is
// absent), append.
func transform(f fields, remove, rename, replace, add, apnd []pair) {
	for _, p := range remove {
		f.del(p.name)
	}
	for _, p := range rename {
		if v, ok := f.get(p.name); ok {
			f.del(p.name)
			f.set(p.value, v)
		}
	}
	for _, p := range replace {
		if _, ok := f.get(p.name); ok {
			f.set(p.name, p.value)
		}
	}
	for _, p := range add {
		if _, ok := f.get(p.name); !ok {
			f.set(p.name, p.value)
		}
	}
	for _, p := range apnd {
		f.add(p.name, p.value)
	}
}

func (h *handler) headers(r plugins.Request) {
	transform(headerFields{r}, h.remove.headers, h.rename.headers, h.replace.headers, h.add.headers, h.apnd.headers)
}

func (h *handler) querystring(r plugins.Request) {
	transform(queryFields{r}, h.remove.query, h.rename.query, h.replace.query, h.add.query, h.apnd.query)
}

func (h *handler) hasBodyOps() bool {
	return len(h.remove.body)+len(h.rename.body)+len(h.replace.body)+len(h.add.body)+len(h.apnd.body) > 0
}

// body rewrites a form or JSON body; other bodies pass unchanged, as in
// Kong (which also handles multipart, not supported here).
func (h *handler) body(r plugins.Request) {
	if !h.hasBodyOps() {
		return
	}
	mt, _, _ := mime.ParseMediaType(r.ContentType())
	switch mt {
	case "application/x-www-form-urlencoded":
		vals, err := url.ParseQuery(string(r.Body()))
		if err != nil {
			return
		}
		h.form(vals)
		r.SetBody([]byte(vals.Encode()))
	case "application/json":
		var m map[string]any
		if len(r.Body()) == 0 {
			m = map[string]any{}
		} else if json.Unmarshal(r.Body(), &m) != nil {
			return
		}
		h.json(m)
		if b, err := json.Marshal(m); err == nil {
			r.SetBody(b)
		}
	}
}

func (h *handler) form(vals url.Values) {
	transform(formFields(vals), h.remove.body, h.rename.body, h.replace.body, h.add.body, h.apnd.body)
}

func (h *handler) json(m map[string]any) {
	for _, p := range h.remove.body {
		delete(m, p.name)
	}
	for _, p := range h.rename.body {
		if v, ok := m[p.name]; ok {
			delete(m, p.name)
			m[p.value] = v
		}
	}
	// Values are strings in JSON too (Kong's OSS plugin has no
	// json_types; its response-transformer does).
	for _, p := range h.replace.body {
		if _, ok := m[p.name]; ok {
			m[p.name] = p.value
		}
	}
	for _, p := range h.add.body {
		if _, ok := m[p.name]; !ok {
			m[p.name] = p.value
		}
	}
	for _, p := range h.apnd.body {
		v := p.value
		switch old := m[p.name].(type) {
		case nil:
			m[p.name] = []any{v}
		case []any:
			m[p.name] = append(old, v)
		default:
			m[p.name] = []any{old, v}
		}
	}
}
