// Package ratelimiting is Kong's rate-limiting plugin with fixed calendar
// windows. Unlike Kong, the check and the increment happen under one lock,
// so a burst of concurrent requests can never overshoot the limit.
package ratelimiting

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-gw/gatehouse/fsm/schema"
	"github.com/gatehouse-gw/gatehouse/plugins"
)

// period is one configured window.
type period struct {
	name   string // "second" ... "year"
	title  string // "Second" ... for header names
	limit  int64
	limitS string

	headerLimit, headerRemaining string
}

var periodNames = []string{"second", "minute", "hour", "day", "month", "year"}

// Definition returns the plugin definition; counters live in store, which
// outlives any one config so a PATCH does not reset clients' counts.
func Definition(store *Store) *plugins.Definition {
	gt0 := 0.0
	lim := func(n string) *schema.Field {
		return &schema.Field{Name: n, Type: schema.Number, Gt: &gt0}
	}
	redis := &schema.Field{Name: "redis", Type: schema.Record, Fields: []*schema.Field{
		plugins.Str("host", nil), plugins.Int("port", 6379.0), plugins.Int("timeout", 2000.0),
		plugins.Str("username", nil), plugins.Str("password", nil), plugins.Int("database", 0.0),
		plugins.Bool("ssl", false), plugins.Bool("ssl_verify", false), plugins.Str("server_name", nil),
	}}
	return &plugins.Definition{
		Name: "rate-limiting", Priority: 910, Version: "3.9.1",
		Config: &schema.Schema{Name: "rate-limiting", Fields: []*schema.Field{
			lim("second"), lim("minute"), lim("hour"), lim("day"), lim("month"), lim("year"),
			plugins.Str("limit_by", "consumer", "consumer", "credential", "ip", "service", "header", "path", "consumer-group"),
			plugins.Str("header_name", nil),
			plugins.Str("path", nil),
			plugins.Str("policy", "local", "local", "cluster", "redis"),
			plugins.Bool("fault_tolerant", true),
			plugins.Bool("hide_client_headers", false),
			plugins.Int("error_code", 429.0),
			plugins.Str("error_message", "API rate limit exceeded"),
			plugins.Num("sync_rate", -1.0),
			redis,
		}},
		Compile: func(c map[string]any) (plugins.Handler, schema.Errors) { return compile(store, c) },
	}
}

type handler struct {
	store      *Store
	periods    []period
	limitBy    string
	headerName string
	path       string
	hide       bool
	status     int
	message    string
}

func compile(store *Store, c map[string]any) (plugins.Handler, schema.Errors) {
	h := &handler{store: store, limitBy: plugins.String(c, "limit_by"),
		headerName: strings.ToLower(plugins.String(c, "header_name")), path: plugins.String(c, "path"),
		hide: plugins.Flag(c, "hide_client_headers"), status: int(plugins.Float(c, "error_code")),
		message: plugins.String(c, "error_message")}
	errs := schema.Errors{}
	var prev *period
	for _, n := range periodNames {
		v, ok := c[n].(float64)
		if !ok {
			continue
		}
		p := period{name: n, title: strings.ToUpper(n[:1]) + n[1:], limit: int64(v),
			limitS: strconv.FormatInt(int64(v), 10)}
		p.headerLimit = "X-RateLimit-Limit-" + p.title
		p.headerRemaining = "X-RateLimit-Remaining-" + p.title
		if prev != nil && v < float64(prev.limit) {
			errs.AddEntity(fmt.Sprintf("The limit for %s(%.1f) cannot be lower than the limit for %s(%.1f)",
				n, v, prev.name, float64(prev.limit)))
		}
		h.periods = append(h.periods, p)
		prev = &h.periods[len(h.periods)-1]
	}
	if len(h.periods) == 0 {
		errs.AddEntity("at least one of these fields must be non-empty: 'config.second', 'config.minute', " +
			"'config.hour', 'config.day', 'config.month', 'config.year'")
	}
	if h.limitBy == "header" && h.headerName == "" {
		errs["header_name"] = "required field missing"
	}
	if h.limitBy == "path" && h.path == "" {
		errs["path"] = "required field missing"
	}
	switch plugins.String(c, "policy") {
	case "cluster":
		errs["policy"] = "policy 'cluster' is not available yet in Gatehouse; use 'local'"
	case "redis":
		errs["policy"] = "policy 'redis' is not supported: Gatehouse runs without Redis; use 'local'"
	}
	if sr := plugins.Float(c, "sync_rate"); sr != -1 {
		errs["sync_rate"] = "sync_rate is only used with the 'redis' policy"
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return h, nil
}

var _ plugins.Accessor = (*handler)(nil)

func (h *handler) identifier(ctx *plugins.Context) string {
	switch h.limitBy {
	case "consumer":
		if ctx.Consumer != nil {
			return ctx.Consumer.ID
		}
		if ctx.CredentialID != "" {
			return ctx.CredentialID
		}
	case "credential":
		if ctx.CredentialID != "" {
			return ctx.CredentialID
		}
	case "service":
		if ctx.Service != nil {
			return ctx.Service.ID
		}
	case "header":
		if v, ok := ctx.Req.Header(h.headerName); ok && v != "" {
			return v
		}
	case "path":
		if ctx.Req.Path() == h.path {
			return h.path
		}
	}
	return ctx.Req.ClientIP()
}

func (h *handler) Access(ctx *plugins.Context) {
	// Counters are scoped like Kong's: by the plugin's own route and
	// service (a global plugin counts a client across every route).
	key := ctx.Plugin.RouteID + "|" + ctx.Plugin.ServiceID + "|" + h.identifier(ctx)
	now := time.Now()
	var usage [6]Usage
	allowed := h.store.Take(key, now, h.periods, usage[:len(h.periods)])

	if h.hide {
		if !allowed {
			ctx.Error(h.status, h.message)
		}
		return
	}
	// RateLimit-* describe the most restrictive window: fewest remaining,
	// ties going to the longer window.
	best := 0
	for i := range h.periods {
		u := usage[i]
		ctx.AddResponseHeader(h.periods[i].headerLimit, h.periods[i].limitS)
		ctx.AddResponseHeader(h.periods[i].headerRemaining, strconv.FormatInt(u.Remaining, 10))
		if u.Remaining <= usage[best].Remaining {
			best = i
		}
	}
	reset := strconv.FormatInt(usage[best].Reset, 10)
	ctx.AddResponseHeader("RateLimit-Limit", h.periods[best].limitS)
	ctx.AddResponseHeader("RateLimit-Remaining", strconv.FormatInt(usage[best].Remaining, 10))
	ctx.AddResponseHeader("RateLimit-Reset", reset)
	if !allowed {
		ctx.Error(h.status, h.message, [2]string{"Retry-After", reset})
	}
}
