// Package ratelimiting is Kong's rate-limiting and rate-limiting-advanced
// plugins. Unlike Kong, a node checks and counts a request under one lock,
// so a burst of concurrent requests never overshoots the limit on one node;
// with policy (strategy) cluster, nodes gossip their counts so that a limit
// holds for the whole cluster, without Redis or a database.
package ratelimiting

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-gw/gatehouse/fsm"
	"github.com/gatehouse-gw/gatehouse/fsm/schema"
	"github.com/gatehouse-gw/gatehouse/plugins"
)

// period is one configured window.
type period struct {
	name   string // "second" ... "year"
	title  string // "Second" ... for header names
	limit  int64
	limitS string
	size   int64 // Kong's nominal length in seconds

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
			partitionField(),
			redisField(),
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
	policy     Policy
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
			limitS: strconv.FormatInt(int64(v), 10), size: periodSize[n]}
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
	var local bool
	if h.policy, local = policyOf(c, "policy", errs); local && plugins.Float(c, "sync_rate") != -1 {
		errs["sync_rate"] = "sync_rate is only used with the 'cluster' policy"
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return h, nil
}

var _ plugins.Accessor = (*handler)(nil)

func (h *handler) identifier(ctx *plugins.Context) string {
	return identify(ctx, h.limitBy, h.headerName, h.path)
}

// counterKey scopes counters like Kong's: by the plugin's own route and
// service (a global plugin counts a client across every route).
func (h *handler) counterKey(p *fsm.Plugin, id string) string {
	return string(h.appendCounterKey(nil, p, id))
}

func (h *handler) appendCounterKey(b []byte, p *fsm.Plugin, id string) []byte {
	b = append(b, "rl|"...)
	b = append(b, p.RouteID...)
	b = append(b, '|')
	b = append(b, p.ServiceID...)
	b = append(b, '|')
	return append(b, id...)
}

func (h *handler) windows(now time.Time, ws []Window) {
	for i, p := range h.periods {
		start, end := windowStart(p.name, now)
		ws[i] = Window{Size: p.size, Start: start, End: end, Limit: p.limit}
	}
}

func (h *handler) Access(ctx *plugins.Context) {
	now := time.Now()
	var wbuf [6]Window
	ws := wbuf[:len(h.periods)]
	h.windows(now, ws)
	var usage [6]Usage
	var kb [160]byte
	key := h.appendCounterKey(kb[:0], ctx.Plugin, h.identifier(ctx))
	allowed := h.store.Take(view(key), now, ws, h.policy, usage[:len(ws)])

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
		ctx.AddResponseHeader(h.periods[i].headerLimit, limitString(u.Limit, h.periods[i]))
		ctx.AddResponseHeaderInt(h.periods[i].headerRemaining, u.Remaining)
		if u.Remaining <= usage[best].Remaining {
			best = i
		}
	}
	ctx.AddResponseHeader("RateLimit-Limit", limitString(usage[best].Limit, h.periods[best]))
	ctx.AddResponseHeaderInt("RateLimit-Remaining", usage[best].Remaining)
	ctx.AddResponseHeaderInt("RateLimit-Reset", usage[best].Reset)
	if !allowed {
		ctx.Error(h.status, h.message, [2]string{"Retry-After", strconv.FormatInt(usage[best].Reset, 10)})
	}
}

// limitString avoids formatting the limit on every request unless a
// partition lowered it.
func limitString(limit int64, p period) string {
	if limit == p.limit {
		return p.limitS
	}
	return strconv.FormatInt(limit, 10)
}

// periodSize is Kong's nominal length of each period, which also tells
// apart the counters of one key's windows.
var periodSize = map[string]int64{"second": 1, "minute": 60, "hour": 3600, "day": 86400,
	"month": 2592000, "year": 31536000}

// windowStart returns the calendar window containing now (UTC) and its end.
func windowStart(p string, now time.Time) (start, end int64) {
	u := now.UTC()
	switch p {
	case "second":
		s := u.Unix()
		return s, s + 1
	case "minute":
		s := u.Unix() / 60 * 60
		return s, s + 60
	case "hour":
		s := u.Unix() / 3600 * 3600
		return s, s + 3600
	case "day":
		s := u.Unix() / 86400 * 86400
		return s, s + 86400
	case "month":
		t := time.Date(u.Year(), u.Month(), 1, 0, 0, 0, 0, time.UTC)
		return t.Unix(), t.AddDate(0, 1, 0).Unix()
	default: // year
		t := time.Date(u.Year(), 1, 1, 0, 0, 0, 0, time.UTC)
		return t.Unix(), t.AddDate(1, 0, 0).Unix()
	}
}
