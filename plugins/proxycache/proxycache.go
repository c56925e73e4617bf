// Package proxycache is Kong's proxy-cache plugin with the memory strategy,
// stored in a ristretto cache shared by every instance of the plugin.
package proxycache

import (
	"crypto/sha256"
	"encoding/hex"
	"mime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-gw/gatehouse/fsm/schema"
	"github.com/gatehouse-gw/gatehouse/plugins"
)

// Definition returns the plugin definition backed by store.
func Definition(store *Store) *plugins.Definition {
	gt0 := 0.0
	ints := func(name string, def ...float64) *schema.Field {
		l := make([]any, len(def))
		for i, d := range def {
			l[i] = d
		}
		return &schema.Field{Name: name, Type: schema.Array, Default: l, Required: true,
			Elements: &schema.Field{Type: schema.Integer, Between: &[2]float64{100, 900}}}
	}
	methods := plugins.Strings("request_method", "GET", "HEAD")
	methods.Elements.OneOf = []string{"HEAD", "GET", "POST", "PATCH", "PUT"}
	methods.Required = true
	ct := plugins.Strings("content_type", "text/plain", "application/json")
	ct.Required = true
	return &plugins.Definition{
		Name: "proxy-cache", Priority: 100, Version: "3.9.1",
		Config: &schema.Schema{Name: "proxy-cache", Fields: []*schema.Field{
			ints("response_code", 200, 301, 404),
			methods,
			ct,
			plugins.Strings("vary_headers"),
			plugins.Strings("vary_query_params"),
			{Name: "cache_ttl", Type: schema.Integer, Default: 300.0, Gt: &gt0},
			{Name: "strategy", Type: schema.String, Required: true, OneOf: []string{"memory"}},
			plugins.Bool("cache_control", false),
			plugins.Bool("ignore_uri_case", false),
			{Name: "storage_ttl", Type: schema.Integer},
			{Name: "memory", Type: schema.Record, Fields: []*schema.Field{
				plugins.Str("dictionary_name", "kong_db_cache"),
			}},
			{Name: "response_headers", Type: schema.Record, Fields: []*schema.Field{
				plugins.Bool("age", true),
				plugins.Bool("X-Cache-Status", true),
				plugins.Bool("X-Cache-Key", true),
			}},
		}},
		Compile: func(c map[string]any) (plugins.Handler, schema.Errors) { return compile(store, c), nil },
	}
}

type handler struct {
	store        *Store
	codes        []int
	methods      []string
	types        []string
	varyHeaders  []string
	varyQuery    []string
	allQuery     bool
	ttl          int64
	storageTTL   int64
	cacheControl bool
	ignoreCase   bool
	showAge      bool
	showStatus   bool
	showKey      bool
}

func compile(store *Store, c map[string]any) *handler {
	h := &handler{store: store, methods: plugins.StrList(c["request_method"]),
		types: plugins.StrList(c["content_type"]), ttl: int64(plugins.Float(c, "cache_ttl")),
		cacheControl: plugins.Flag(c, "cache_control"), ignoreCase: plugins.Flag(c, "ignore_uri_case")}
	for _, v := range c["response_code"].([]any) {
		h.codes = append(h.codes, int(v.(float64)))
	}
	for _, n := range plugins.StrList(c["vary_headers"]) {
		h.varyHeaders = append(h.varyHeaders, strings.ToLower(n))
	}
	sort.Strings(h.varyHeaders)
	h.allQuery = c["vary_query_params"] == nil
	h.varyQuery = plugins.StrList(c["vary_query_params"])
	sort.Strings(h.varyQuery)
	h.storageTTL = int64(plugins.Float(c, "storage_ttl"))
	rh, _ := c["response_headers"].(map[string]any)
	h.showAge, h.showStatus, h.showKey = plugins.Flag(rh, "age"), plugins.Flag(rh, "X-Cache-Status"), plugins.Flag(rh, "X-Cache-Key")
	return h
}

var (
	_ plugins.Accessor   = (*handler)(nil)
	_ plugins.BodyFilter = (*handler)(nil)
)

// pending is carried from the access phase to the body phase of a request
// whose response may be stored.
type pending struct {
	key    string
	status string // "Miss" or "Refresh"
}

func (h *handler) Access(ctx *plugins.Context) {
	debug := false
	if _, ok := ctx.Req.Header("kong-debug"); ok {
		debug = true
	}
	if !slices.Contains(h.methods, ctx.Req.Method()) {
		h.statusHeader(ctx, debug, "Bypass")
		return
	}
	cc := parseCacheControl(ctx.Req.Header)
	if h.cacheControl {
		if _, auth := ctx.Req.Header("authorization"); auth || cc.has("no-store") || cc.has("no-cache") {
			h.statusHeader(ctx, debug, "Bypass")
			return
		}
	}
	key := h.key(ctx)
	e := h.store.get(key)
	if e == nil {
		if h.cacheControl && cc.has("only-if-cached") {
			ctx.Error(504, "Gateway Timeout")
			return
		}
		ctx.Set(h, &pending{key: key, status: "Miss"})
		return
	}
	// Freshness is judged on the exact store time: whole seconds would
	// expire an entry up to a second early.
	elapsed := time.Since(e.Stored)
	age := int64(elapsed / time.Second)
	if elapsed >= time.Duration(e.TTL)*time.Second || h.cacheControl && !freshEnough(cc, age, e.TTL) {
		ctx.Set(h, &pending{key: key, status: "Refresh"})
		return
	}
	hdrs := make([][2]string, 0, len(e.Headers)+3)
	hdrs = append(hdrs, e.Headers...)
	if h.showAge || debug {
		hdrs = append(hdrs, [2]string{"Age", strconv.FormatInt(age, 10)})
	}
	if h.showStatus || debug {
		hdrs = append(hdrs, [2]string{"X-Cache-Status", "Hit"})
	}
	if h.showKey || debug {
		hdrs = append(hdrs, [2]string{"X-Cache-Key", key})
	}
	ctx.Exit(&plugins.Exit{Status: e.Status, Headers: hdrs, Body: e.Body})
}

func (h *handler) statusHeader(ctx *plugins.Context, debug bool, status string) {
	if h.showStatus || debug {
		ctx.AddResponseHeader("X-Cache-Status", status)
	}
}

func (h *handler) BodyFilter(ctx *plugins.Context) {
	p, _ := ctx.Get(h).(*pending)
	if p == nil || ctx.Exited() != nil {
		return
	}
	_, debug := ctx.Req.Header("kong-debug")
	resp := ctx.Resp
	ttl, ok := h.cacheable(resp)
	if !ok {
		if h.showStatus || debug {
			resp.SetHeader("X-Cache-Status", "Bypass")
		}
		return
	}
	if h.showStatus || debug {
		resp.SetHeader("X-Cache-Status", p.status)
	}
	if h.showKey || debug {
		resp.SetHeader("X-Cache-Key", p.key)
	}
	var hdrs [][2]string
	resp.VisitHeaders(func(k, v string) {
		if storable(k) {
			hdrs = append(hdrs, [2]string{k, v})
		}
	})
	now := time.Now()
	storage := ttl
	if h.storageTTL > 0 {
		storage = h.storageTTL
	}
	h.store.put(p.key, &Entry{Status: resp.Status(), Headers: hdrs, Body: append([]byte(nil), resp.Body()...),
		Stored: now, Timestamp: now.Unix(), TTL: ttl, Version: 1}, storage)
}

// storable filters the headers replayed from the cache: hop-by-hop headers,
// the cache's own headers and per-client rate-limit counts are not.
func storable(k string) bool {
	l := strings.ToLower(k)
	switch l {
	case "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
		"transfer-encoding", "upgrade", "content-length", "x-cache-status", "x-cache-key", "age", "date",
		"x-kong-upstream-latency", "x-kong-proxy-latency", "x-kong-request-id", "via", "server":
		return false
	}
	return !strings.Contains(l, "ratelimit-remaining")
}

func (h *handler) cacheable(resp plugins.Response) (int64, bool) {
	if !slices.Contains(h.codes, resp.Status()) {
		return 0, false
	}
	ct, _ := resp.Header("content-type")
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return 0, false
	}
	match := false
	for _, t := range h.types {
		if t == "*/*" || strings.EqualFold(t, mt) || strings.EqualFold(t, ct) {
			match = true
			break
		}
	}
	if !match {
		return 0, false
	}
	if !h.cacheControl {
		return h.ttl, true
	}
	cc := parseCacheControl(resp.Header)
	if cc.has("private") || cc.has("no-store") || cc.has("no-cache") {
		return 0, false
	}
	if v, ok := cc["s-maxage"]; ok {
		n, _ := strconv.ParseInt(v, 10, 64)
		return n, n > 0
	}
	if v, ok := cc["max-age"]; ok {
		n, _ := strconv.ParseInt(v, 10, 64)
		return n, n > 0
	}
	if exp, ok := resp.Header("expires"); ok {
		t, err := time.Parse(time.RFC1123, exp)
		if err != nil {
			return 0, false
		}
		n := int64(time.Until(t).Seconds())
		return n, n > 0
	}
	return h.ttl, true
}

type cacheControl map[string]string

func (c cacheControl) has(d string) bool { _, ok := c[d]; return ok }

func parseCacheControl(get func(string) (string, bool)) cacheControl {
	v, ok := get("cache-control")
	if !ok {
		return nil
	}
	out := cacheControl{}
	for _, part := range strings.Split(v, ",") {
		part = strings.TrimSpace(strings.ToLower(part))
		if part == "" {
			continue
		}
		k, val, _ := strings.Cut(part, "=")
		out[k] = strings.Trim(val, `"`)
	}
	return out
}

// freshEnough applies the request's max-age, min-fresh and max-stale.
func freshEnough(cc cacheControl, age, ttl int64) bool {
	if v, ok := cc["max-age"]; ok {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && age > n {
			return false
		}
	}
	if v, ok := cc["min-fresh"]; ok {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && ttl-age < n {
			return false
		}
	}
	return true
}

// key is Kong's cache key: sha256 of prefix|method|uri|params|headers.
func (h *handler) key(ctx *plugins.Context) string {
	prefix := "default"
	if ctx.Route != nil {
		prefix = ctx.Route.ID
		if ctx.Consumer != nil {
			prefix = ctx.Consumer.ID + ":" + ctx.Route.ID
		}
	}
	uri := ctx.Req.Path()
	if h.ignoreCase {
		uri = strings.ToLower(uri)
	}
	params := map[string][]string{}
	ctx.Req.VisitQuery(func(k, v string) {
		if h.allQuery || slices.Contains(h.varyQuery, k) {
			params[k] = append(params[k], v)
		}
	})
	hs := map[string][]string{}
	for _, n := range h.varyHeaders {
		if v, ok := ctx.Req.Header(n); ok {
			hs[n] = []string{v}
		}
	}
	sum := sha256.Sum256([]byte(prefix + "|" + ctx.Req.Method() + "|" + uri + "|" + joinArgs(params) + "|" + joinArgs(hs)))
	return hex.EncodeToString(sum[:])
}

func joinArgs(m map[string][]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		vals := m[k]
		nonEmpty := vals[:0:0]
		for _, v := range vals {
			if v != "" {
				nonEmpty = append(nonEmpty, v)
			}
		}
		if len(nonEmpty) == 0 {
			parts = append(parts, k)
			continue
		}
		sort.Strings(nonEmpty)
		parts = append(parts, k+"="+strings.Join(nonEmpty, ","))
	}
	return strings.Join(parts, ":")
}
