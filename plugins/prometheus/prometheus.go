// Package prometheus is Kong's prometheus plugin: request metrics under
// Kong's names (kong_http_requests_total, kong_*_latency_ms,
// kong_bandwidth_bytes) and the node's own, served at /metrics on the
// Admin and Status APIs, so Kong's Grafana dashboards work unchanged.
package prometheus

import (
	"net/http"
	"time"

	prom "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gatehouse-gw/gatehouse/fsm/schema"
	"github.com/gatehouse-gw/gatehouse/plugins"
)

// Kong's histogram buckets, in milliseconds.
var (
	kongBuckets     = []float64{1, 2, 5, 7, 10, 15, 20, 30, 50, 75, 100, 200, 500, 750, 1000, 3000, 6000}
	upstreamBuckets = []float64{25, 50, 80, 100, 250, 400, 700, 1000, 2000, 5000, 10000, 30000, 60000}
)

// Metrics is one node's registry: what the plugin instances record and
// what /metrics serves.
type Metrics struct {
	reg       *prom.Registry
	requests  *prom.CounterVec
	kong      *prom.HistogramVec
	upstream  *prom.HistogramVec
	total     *prom.HistogramVec
	bandwidth *prom.CounterVec
}

// NodeInfo is what the always-present metrics report about the node.
type NodeInfo struct {
	NodeID, Version string
	// Requests is the proxy's request count since start
	// (kong_nginx_requests_total); Connections its open connections.
	Requests, Connections func() float64
	// Reachable reports whether the configuration store answers
	// (kong_datastore_reachable: here, whether the node has a leader).
	Reachable func() bool
}

// NewMetrics registers Kong's metrics for node.
func NewMetrics(node NodeInfo) *Metrics {
	m := &Metrics{reg: prom.NewRegistry()}
	m.requests = prom.NewCounterVec(prom.CounterOpts{Name: "kong_http_requests_total",
		Help: "HTTP status codes per consumer/service/route in Kong"},
		[]string{"service", "route", "code", "source", "workspace", "consumer"})
	m.kong = prom.NewHistogramVec(prom.HistogramOpts{Name: "kong_kong_latency_ms",
		Help: "Latency added by Kong and enabled plugins for each service/route in Kong", Buckets: kongBuckets},
		[]string{"service", "route", "workspace"})
	m.upstream = prom.NewHistogramVec(prom.HistogramOpts{Name: "kong_upstream_latency_ms",
		Help: "Latency added by upstream response for each service/route in Kong", Buckets: upstreamBuckets},
		[]string{"service", "route", "workspace"})
	m.total = prom.NewHistogramVec(prom.HistogramOpts{Name: "kong_request_latency_ms",
		Help: "Total latency incurred during requests for each service/route in Kong", Buckets: upstreamBuckets},
		[]string{"service", "route", "workspace"})
	m.bandwidth = prom.NewCounterVec(prom.CounterOpts{Name: "kong_bandwidth_bytes",
		Help: "Total bandwidth (ingress/egress) throughput in bytes"},
		[]string{"service", "route", "direction", "workspace", "consumer"})
	m.reg.MustRegister(m.requests, m.kong, m.upstream, m.total, m.bandwidth)
	info := prom.NewGaugeVec(prom.GaugeOpts{Name: "kong_node_info", Help: "Kong Node metadata information"},
		[]string{"node_id", "version"})
	info.WithLabelValues(node.NodeID, node.Version).Set(1)
	m.reg.MustRegister(info)
	if node.Requests != nil {
		m.reg.MustRegister(prom.NewCounterFunc(prom.CounterOpts{Name: "kong_nginx_requests_total",
			Help: "Number of requests total"}, node.Requests))
	}
	if node.Connections != nil {
		m.reg.MustRegister(prom.NewGaugeFunc(prom.GaugeOpts{Name: "kong_nginx_connections_total",
			Help: "Number of connections by subsystem", ConstLabels: prom.Labels{"node_id": node.NodeID,
				"subsystem": "http", "state": "active"}}, node.Connections))
	}
	if node.Reachable != nil {
		m.reg.MustRegister(prom.NewGaugeFunc(prom.GaugeOpts{Name: "kong_datastore_reachable",
			Help: "Datastore reachable from Kong, 0 is unreachable"}, func() float64 {
			if node.Reachable() {
				return 1
			}
			return 0
		}))
	}
	return m
}

// Handler serves the metrics in Prometheus' text format.
func (m *Metrics) Handler() http.Handler { return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}) }

// Definition returns the plugin definition recording into m.
func Definition(m *Metrics) *plugins.Definition {
	return &plugins.Definition{
		Name: "prometheus", Priority: 13, Version: "3.9.1",
		Config: &schema.Schema{Name: "prometheus", Fields: []*schema.Field{
			plugins.Bool("per_consumer", false),
			plugins.Bool("status_code_metrics", false),
			plugins.Bool("latency_metrics", false),
			plugins.Bool("bandwidth_metrics", false),
			plugins.Bool("upstream_health_metrics", false),
			plugins.Bool("ai_metrics", false),
		}},
		Compile: func(c map[string]any) (plugins.Handler, schema.Errors) {
			return &handler{m: m, perConsumer: plugins.Flag(c, "per_consumer"), status: plugins.Flag(c, "status_code_metrics"),
				latency: plugins.Flag(c, "latency_metrics"), bandwidth: plugins.Flag(c, "bandwidth_metrics")}, nil
		},
	}
}

type handler struct {
	m                                       *Metrics
	perConsumer, status, latency, bandwidth bool
}

var _ plugins.Logger = (*handler)(nil)

// Log records one request, as Kong's exporter does after the response.
func (h *handler) Log(ctx *plugins.Context) {
	if !h.status && !h.latency && !h.bandwidth {
		return
	}
	service, route := "", ""
	if ctx.Service != nil {
		service = ctx.Service.Name
		if service == "" {
			service = ctx.Service.ID
		}
	}
	if ctx.Route != nil {
		route = ctx.Route.Name
		if route == "" {
			route = ctx.Route.ID
		}
	}
	consumer := ""
	if h.perConsumer && ctx.Consumer != nil {
		consumer = ctx.Consumer.Username
	}
	if h.status && ctx.Resp != nil {
		h.m.requests.WithLabelValues(service, route, statusText(ctx.Resp.Status()), ctx.Source, "default", consumer).Inc()
	}
	if h.latency {
		total := time.Since(ctx.Start)
		h.m.total.WithLabelValues(service, route, "default").Observe(ms(total))
		if ctx.Source == "service" {
			h.m.upstream.WithLabelValues(service, route, "default").Observe(ms(ctx.Upstream))
		}
		h.m.kong.WithLabelValues(service, route, "default").Observe(ms(total - ctx.Upstream))
	}
	if h.bandwidth {
		h.m.bandwidth.WithLabelValues(service, route, "ingress", "default", consumer).Add(float64(len(ctx.Req.Body())))
		if ctx.Resp != nil {
			h.m.bandwidth.WithLabelValues(service, route, "egress", "default", consumer).Add(float64(len(ctx.Resp.Body())))
		}
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// statusText avoids strconv's allocation for the common codes.
func statusText(code int) string {
	if code >= 100 && code < 600 {
		return codes[code-100]
	}
	return "000"
}

var codes = func() []string {
	out := make([]string, 500)
	for i := range out {
		n := i + 100
		out[i] = string([]byte{byte('0' + n/100), byte('0' + n/10%10), byte('0' + n%10)})
	}
	return out
}()
