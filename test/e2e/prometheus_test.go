package e2e

import (
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/test/echo"
	"github.com/gatehouse-gw/gatehouse/test/harness"
)

// metric returns the value of the sample whose name and labels (in the
// exposition's sorted order) match, -1 if there is none.
func metric(text, sample string) float64 {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(sample) + ` ([0-9.e+]+)$`)
	m := re.FindStringSubmatch(text)
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// TestPrometheusPlugin checks Kong's metric names and labels at /metrics
// on the Admin and Status APIs: requests by code and source (the
// upstream, a plugin's exit, the proxy's own error), latencies,
// bandwidth, per-consumer labels, and the node's own metrics.
func TestPrometheusPlugin(t *testing.T) {
	n := harness.Start(t, harness.Options{NodeID: "prom"})
	up := echo.StartT(t, "echo-prom")
	a := admin{n}
	a.create(t, "/services", map[string]any{"name": "svc", "url": up.URL})
	a.create(t, "/services/svc/routes", map[string]any{"name": "open", "paths": []string{"/open"}})
	a.create(t, "/services", map[string]any{"name": "down", "url": "http://127.0.0.1:1"})
	a.create(t, "/services/down/routes", map[string]any{"name": "gone", "paths": []string{"/gone"}})
	a.create(t, "/services/svc/routes", map[string]any{"name": "locked", "paths": []string{"/locked"}})
	a.create(t, "/routes/locked/plugins", map[string]any{"name": "key-auth"})
	a.create(t, "/consumers", map[string]any{"username": "ana"})
	a.create(t, "/consumers/ana/key-auth", map[string]any{"key": "ana-key"})
	a.create(t, "/plugins", map[string]any{"name": "prometheus", "config": map[string]any{"per_consumer": true,
		"status_code_metrics": true, "latency_metrics": true, "bandwidth_metrics": true}})

	waitProxy(t, n, "/open through the prometheus plugin", "/open", func(r *harness.Response) bool {
		return r.Status == 200 && metric(harness.Get(t, n.Admin("/metrics")).Text(), `kong_http_requests_total{code="200",consumer="",route="open",service="svc",source="service",workspace="default"}`) >= 1
	})
	before := metric(harness.Get(t, n.Admin("/metrics")).Text(), `kong_http_requests_total{code="200",consumer="",route="open",service="svc",source="service",workspace="default"}`)
	for i := 0; i < 3; i++ {
		harness.ExpectStatus(t, proxyGet(t, n, "/open"), 200)
	}
	harness.ExpectStatus(t, proxyGet(t, n, "/locked"), 401)
	harness.ExpectStatus(t, proxyGet(t, n, "/locked", "apikey", "ana-key"), 200)
	if r := proxyGet(t, n, "/gone"); r.Status != 502 && r.Status != 504 {
		t.Errorf("/gone: %s, want 502", r)
	}

	var text string
	harness.Eventually(t, 5*time.Second, 50*time.Millisecond, "metrics recorded", func() (bool, string) {
		text = harness.Get(t, n.Admin("/metrics")).Text()
		return metric(text, `kong_http_requests_total{code="200",consumer="",route="open",service="svc",source="service",workspace="default"}`) == before+3, text
	})
	for _, want := range []string{
		`kong_http_requests_total{code="401",consumer="",route="locked",service="svc",source="exit",workspace="default"}`,
		`kong_http_requests_total{code="200",consumer="ana",route="locked",service="svc",source="service",workspace="default"}`,
		`kong_http_requests_total{code="502",consumer="",route="gone",service="down",source="error",workspace="default"}`,
		`kong_kong_latency_ms_count{route="open",service="svc",workspace="default"}`,
		`kong_upstream_latency_ms_count{route="open",service="svc",workspace="default"}`,
		`kong_request_latency_ms_bucket{route="open",service="svc",workspace="default",le="+Inf"}`,
		`kong_node_info{node_id="prom",version="3.9.1"}`,
		`kong_datastore_reachable`,
	} {
		if v := metric(text, want); v < 1 {
			t.Errorf("/metrics lacks %s (value %v)", want, v)
		}
	}
	if v := metric(text, `kong_bandwidth_bytes{consumer="",direction="egress",route="open",service="svc",workspace="default"}`); v <= 0 {
		t.Errorf("no egress bandwidth recorded for /open: %v", v)
	}
	if v := metric(text, "kong_nginx_requests_total"); v < 6 {
		t.Errorf("kong_nginx_requests_total = %v, want at least 6", v)
	}
	// The Status API serves the same registry.
	st := harness.Get(t, n.Status("/metrics"))
	harness.ExpectStatus(t, st, http.StatusOK)
	if !strings.Contains(st.Text(), `kong_http_requests_total{code="401"`) {
		t.Errorf("/metrics on the Status API differs: %.300s", st.Text())
	}
}
