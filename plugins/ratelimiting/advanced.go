package ratelimiting

import (
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-gw/gatehouse/fsm"
	"github.com/gatehouse-gw/gatehouse/fsm/schema"
	"github.com/gatehouse-gw/gatehouse/plugins"
)

// AdvancedDefinition is Kong's rate-limiting-advanced: several
// limit/window_size pairs, sliding (default) or fixed windows, and
// counters shared by namespace. strategy cluster gossips counts between
// nodes like the rate-limiting plugin's cluster policy.
func AdvancedDefinition(store *Store) *plugins.Definition {
	gt0 := 0.0
	numbers := func(n string) *schema.Field {
		return &schema.Field{Name: n, Type: schema.Array, Required: true,
			Elements: &schema.Field{Type: schema.Number, Gt: &gt0}}
	}
	return &plugins.Definition{
		Name: "rate-limiting-advanced", Priority: 910, Version: "3.9.1",
		Config: &schema.Schema{Name: "rate-limiting-advanced", Fields: []*schema.Field{
			plugins.Str("identifier", "consumer", "ip", "credential", "consumer", "service", "header", "path", "consumer-group"),
			numbers("window_size"),
			plugins.Str("window_type", "sliding", "fixed", "sliding"),
			numbers("limit"),
			plugins.Num("sync_rate", nil),
			plugins.Str("namespace", nil),
			plugins.Str("strategy", "local", "cluster", "redis", "local"),
			plugins.Str("dictionary_name", "kong_rate_limiting_counters"),
			plugins.Str("lock_dictionary_name", "kong_locks"),
			plugins.Bool("hide_client_headers", false),
			plugins.Num("retry_after_jitter_max", 0.0),
			plugins.Str("header_name", nil),
			plugins.Str("path", nil),
			plugins.Bool("enforce_consumer_groups", false),
			plugins.Strings("consumer_groups"),
			plugins.Bool("disable_penalty", false),
			plugins.Int("error_code", 429.0),
			plugins.Str("error_message", "API rate limit exceeded"),
			partitionField(),
			redisField(),
		}},
		Compile: func(c map[string]any) (plugins.Handler, schema.Errors) { return compileAdvanced(store, c) },
	}
}

type advWindow struct {
	size, limit               int64
	limitS                    string
	headerLimit, headerRemain string
}

type advanced struct {
	store      *Store
	windows    []advWindow
	sliding    bool
	identifier string
	headerName string
	path       string
	namespace  string
	hide       bool
	jitter     int
	status     int
	message    string
	policy     Policy
}

func compileAdvanced(store *Store, c map[string]any) (plugins.Handler, schema.Errors) {
	h := &advanced{store: store, sliding: plugins.String(c, "window_type") != "fixed",
		identifier: plugins.String(c, "identifier"),
		headerName: strings.ToLower(plugins.String(c, "header_name")), path: plugins.String(c, "path"),
		namespace: plugins.String(c, "namespace"), hide: plugins.Flag(c, "hide_client_headers"),
		jitter: int(plugins.Float(c, "retry_after_jitter_max")),
		status: int(plugins.Float(c, "error_code")), message: plugins.String(c, "error_message")}
	errs := schema.Errors{}
	sizes, limits := plugins.NumList(c["window_size"]), plugins.NumList(c["limit"])
	if len(sizes) != len(limits) {
		errs.AddEntity("You must provide the same number of windows and limits")
	}
	seen := map[int64]bool{}
	for i := 0; i < len(sizes) && i < len(limits); i++ {
		size := int64(sizes[i])
		if float64(size) != sizes[i] || size < 1 {
			errs["window_size"] = "window sizes must be whole numbers of seconds"
			continue
		}
		if seen[size] {
			errs["window_size"] = "each window size may appear only once"
			continue
		}
		seen[size] = true
		lim := int64(limits[i])
		sz := strconv.FormatInt(size, 10)
		h.windows = append(h.windows, advWindow{size: size, limit: lim, limitS: strconv.FormatInt(lim, 10),
			headerLimit: "X-RateLimit-Limit-" + sz, headerRemain: "X-RateLimit-Remaining-" + sz})
	}
	switch h.identifier {
	case "header":
		if h.headerName == "" {
			errs["header_name"] = "required field missing"
		}
	case "path":
		if h.path == "" {
			errs["path"] = "required field missing"
		}
	case "consumer-group":
		errs["identifier"] = "consumer groups are not available in Gatehouse"
	}
	if plugins.Flag(c, "enforce_consumer_groups") {
		errs["enforce_consumer_groups"] = "consumer groups are not available in Gatehouse"
	}
	if h.jitter < 0 {
		errs["retry_after_jitter_max"] = "must be 0 or more (seconds)"
	}
	h.policy, _ = policyOf(c, "strategy", errs)
	h.policy.Penalty = h.sliding && !plugins.Flag(c, "disable_penalty")
	if len(errs) > 0 {
		return nil, errs
	}
	return h, nil
}

var _ plugins.Accessor = (*advanced)(nil)

// counterKey: plugins sharing a namespace share counters; without one,
// each plugin counts alone (Kong generates a random namespace; the
// plugin's id serves the same purpose and stays null in its config).
func (h *advanced) counterKey(p *fsm.Plugin, id string) string {
	return string(h.appendCounterKey(nil, p, id))
}

func (h *advanced) appendCounterKey(b []byte, p *fsm.Plugin, id string) []byte {
	ns := h.namespace
	if ns == "" {
		ns = p.ID
	}
	b = append(b, "rla|"...)
	b = append(b, ns...)
	b = append(b, '|')
	return append(b, id...)
}

func (h *advanced) fill(now time.Time, ws []Window) {
	sec := now.Unix()
	for i, w := range h.windows {
		start := sec / w.size * w.size
		ws[i] = Window{Size: w.size, Start: start, End: start + w.size, Limit: w.limit, Sliding: h.sliding}
	}
}

func (h *advanced) Access(ctx *plugins.Context) {
	now := time.Now()
	var wbuf [8]Window
	var ubuf [8]Usage
	ws, usage := wbuf[:], ubuf[:]
	if len(h.windows) > len(wbuf) {
		ws, usage = make([]Window, len(h.windows)), make([]Usage, len(h.windows))
	}
	ws, usage = ws[:len(h.windows)], usage[:len(h.windows)]
	h.fill(now, ws)
	var kb [160]byte
	key := h.appendCounterKey(kb[:0], ctx.Plugin, identify(ctx, h.identifier, h.headerName, h.path))
	allowed := h.store.Take(view(key), now, ws, h.policy, usage)

	best := 0
	for i := range usage {
		if usage[i].Remaining <= usage[best].Remaining {
			best = i
		}
	}
	retry := int64(0)
	if !allowed {
		for i := range usage {
			if usage[i].Remaining == 0 {
				retry = max(retry, usage[i].Retry)
			}
		}
		retry = max(retry, 1)
		if h.jitter > 0 {
			retry += int64(rand.IntN(h.jitter + 1))
		}
	}
	if h.hide {
		if !allowed {
			ctx.Error(h.status, h.message)
		}
		return
	}
	for i, w := range h.windows {
		ctx.AddResponseHeader(w.headerLimit, advLimit(usage[i].Limit, w))
		ctx.AddResponseHeaderInt(w.headerRemain, usage[i].Remaining)
	}
	ctx.AddResponseHeader("RateLimit-Limit", advLimit(usage[best].Limit, h.windows[best]))
	ctx.AddResponseHeaderInt("RateLimit-Remaining", usage[best].Remaining)
	if !allowed {
		r := strconv.FormatInt(retry, 10)
		ctx.AddResponseHeader("RateLimit-Reset", r)
		ctx.Error(h.status, h.message, [2]string{"Retry-After", r})
		return
	}
	ctx.AddResponseHeaderInt("RateLimit-Reset", usage[best].Reset)
}

func advLimit(limit int64, w advWindow) string {
	if limit == w.limit {
		return w.limitS
	}
	return strconv.FormatInt(limit, 10)
}
