package conformance

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/gatehouse-gw/gatehouse/test/echo"
	"github.com/gatehouse-gw/gatehouse/test/harness"
)

// TestProxyHeaders covers behaviours 38–42: forwarded headers, hop-by-hop
// headers, the gateway's response headers, Via and X-Kong-Request-Id.
func TestProxyHeaders(t *testing.T) {
	n := harness.Start(t, harness.Options{NodeID: "conf-headers"})
	up := echo.StartT(t, "headers-echo")
	svc := service(t, n, up, nil)
	route(t, n, idOf(svc), map[string]any{"paths": []any{"/xf"}})
	route(t, n, idOf(svc), map[string]any{"paths": []any{"/xf-nostrip"}, "strip_path": false})
	route(t, n, idOf(svc), map[string]any{"paths": []any{"/hop"}})
	route(t, n, idOf(svc), map[string]any{"paths": []any{"/hdr"}})
	waitProxied(t, n, get("/hdr/anything"))
	_, proxyPort, _ := strings.Cut(n.ProxyAddr, ":")

	version := strings.TrimPrefix(harness.Get(t, n.Admin("/")).Header.Get("Server"), "kong/")

	t.Run("B38_forwarded_headers_untrusted_client", func(t *testing.T) {
		spoof := []string{
			"X-Forwarded-For", "1.2.3.4",
			"X-Forwarded-Proto", "https",
			"X-Forwarded-Host", "evil.test",
			"X-Forwarded-Port", "1234",
			"X-Forwarded-Path", "/evil",
			"X-Forwarded-Prefix", "/evil",
			"X-Real-IP", "9.9.9.9",
		}
		_, er := waitProxied(t, n, withHost("xf.test:5555", "/xf/anything", spoof...))
		want := map[string]string{
			"X-Forwarded-For":    "1.2.3.4, 127.0.0.1",
			"X-Forwarded-Proto":  "http",
			"X-Forwarded-Host":   "xf.test",
			"X-Forwarded-Port":   proxyPort,
			"X-Forwarded-Path":   "/xf/anything",
			"X-Forwarded-Prefix": "/xf",
			"X-Real-IP":          "127.0.0.1",
		}
		for h, w := range want {
			if got := er.Header(h); got != w {
				t.Errorf("stripped route: upstream %s = %q, want %q", h, got, w)
			}
		}

		// Nothing stripped: no X-Forwarded-Prefix, and the client's is dropped.
		_, er = waitProxied(t, n, get("/xf-nostrip/anything", spoof...))
		if er.HasHeader("X-Forwarded-Prefix") {
			t.Errorf("strip_path=false: upstream X-Forwarded-Prefix = %q, want none", er.Header("X-Forwarded-Prefix"))
		}
		if got := er.Header("X-Forwarded-Host"); got != "127.0.0.1" {
			t.Errorf("upstream X-Forwarded-Host = %q, want 127.0.0.1", got)
		}

		// Without client headers.
		_, er = waitProxied(t, n, get("/xf/anything"))
		if got := er.Header("X-Forwarded-For"); got != "127.0.0.1" {
			t.Errorf("upstream X-Forwarded-For = %q, want 127.0.0.1", got)
		}
	})

	t.Run("B39_hop_by_hop_headers", func(t *testing.T) {
		req := "GET /hop/anything HTTP/1.1\r\n" +
			"Host: " + n.ProxyAddr + "\r\n" +
			"Connection: close, X-Hop-One\r\n" +
			"X-Hop-One: 1\r\n" +
			"Keep-Alive: timeout=5\r\n" +
			"Proxy-Connection: keep-alive\r\n" +
			"Upgrade: websocket\r\n" +
			"TE: trailers\r\n" +
			"X-Normal: yes\r\n\r\n"
		rr := harness.RawHTTP(t, n.ProxyAddr, req)
		if rr.Status != 200 {
			t.Fatalf("status %d: %s", rr.Status, rr.Body)
		}
		er := echo.Parse(t, rr.Body)
		if er.Header("X-Normal") != "yes" {
			t.Errorf("end-to-end header X-Normal lost")
		}
		for _, h := range []string{"X-Hop-One", "Keep-Alive", "Proxy-Connection", "Upgrade"} {
			if er.HasHeader(h) {
				t.Errorf("hop-by-hop request header %s reached the upstream (%q)", h, er.Header(h))
			}
		}
		if c := strings.ToLower(er.Header("Connection")); strings.Contains(c, "x-hop-one") || strings.Contains(c, "upgrade") {
			t.Errorf("upstream Connection = %q still names client hop-by-hop headers", c)
		}
		if te := er.Header("TE"); te != "trailers" {
			t.Errorf("upstream TE = %q, want trailers (requested by the client)", te)
		}

		// And from the upstream to the client.
		target := "/hop/response-headers?Connection=X-Resp-Hop&X-Resp-Hop=1&Keep-Alive=timeout%3D9&X-Normal-Resp=1"
		rr = rawGet(t, n, target)
		if rr.Status != 200 {
			t.Fatalf("status %d: %s", rr.Status, rr.Body)
		}
		if rr.Header.Get("X-Normal-Resp") != "1" {
			t.Errorf("end-to-end response header X-Normal-Resp lost: %v", rr.Header)
		}
		if v := rr.Header.Get("X-Resp-Hop"); v != "" {
			t.Errorf("response header named in the upstream's Connection reached the client: %q", v)
		}
		if v := rr.Header.Get("Keep-Alive"); v == "timeout=9" {
			t.Errorf("the upstream's Keep-Alive reached the client")
		}
	})

	t.Run("B40_response_headers", func(t *testing.T) {
		r := proxy(t, n, get("/hdr/anything"))
		harness.ExpectStatus(t, r, 200)
		intHeader(t, r.Header, "X-Kong-Upstream-Latency")
		intHeader(t, r.Header, "X-Kong-Proxy-Latency")
		if !strings.Contains(r.Header.Get("Via"), "kong/") {
			t.Errorf("proxied response Via = %q, want kong/…", r.Header.Get("Via"))
		}
		// The echo upstream sends no Server header, so the gateway's shows.
		if s := r.Header.Get("Server"); s != "kong/"+version {
			t.Errorf("proxied response without upstream Server: Server = %q, want kong/%s", s, version)
		}
		r = proxy(t, n, get("/hdr/response-headers?Server=upstream-server"))
		if s := r.Header.Get("Server"); s != "upstream-server" {
			t.Errorf("upstream Server header replaced: %q, want upstream-server", s)
		}

		// A gateway-generated response.
		r = proxy(t, n, get("/b40-no-route"))
		harness.CheckStatus(t, r, 404)
		if s := r.Header.Get("Server"); s != "kong/"+version {
			t.Errorf("404: Server = %q, want kong/%s", s, version)
		}
		intHeader(t, r.Header, "X-Kong-Response-Latency")
		if r.Header.Get("X-Kong-Upstream-Latency") != "" {
			t.Errorf("404 from the gateway carries X-Kong-Upstream-Latency")
		}
	})

	t.Run("B41_via", func(t *testing.T) {
		r, er := waitProxied(t, n, get("/hdr/anything", "Via", "1.1 client-proxy"))
		if got, want := er.Header("Via"), "1.1 client-proxy, 1.1 kong/"+version; got != want {
			t.Errorf("upstream Via = %q, want %q", got, want)
		}
		_ = r
		_, er = waitProxied(t, n, get("/hdr/anything"))
		if got, want := er.Header("Via"), "1.1 kong/"+version; got != want {
			t.Errorf("upstream Via without a client Via = %q, want %q", got, want)
		}
		r = proxy(t, n, get("/hdr/response-headers?Via=1.0%20upstream-proxy"))
		if got, want := r.Header.Get("Via"), "1.0 upstream-proxy, 1.1 kong/"+version; got != want {
			t.Errorf("response Via = %q, want %q", got, want)
		}
		r = proxy(t, n, get("/hdr/anything"))
		if got, want := r.Header.Get("Via"), "1.1 kong/"+version; got != want {
			t.Errorf("response Via without an upstream Via = %q, want %q", got, want)
		}
	})

	t.Run("B42_request_id", func(t *testing.T) {
		seen := map[string]bool{}
		for i := 0; i < 5; i++ {
			r, er := waitProxied(t, n, get("/hdr/anything"))
			id := r.Header.Get("X-Kong-Request-Id")
			if id == "" {
				t.Fatalf("proxied response without X-Kong-Request-Id")
			}
			if got := er.Header("X-Kong-Request-Id"); got != id {
				t.Errorf("upstream got X-Kong-Request-Id %q, client got %q", got, id)
			}
			if seen[id] {
				t.Errorf("request id %q repeated", id)
			}
			seen[id] = true
		}
		for _, p := range []string{"/b42-no-route", "/b42-other"} {
			r := proxy(t, n, get(p))
			id := r.Header.Get("X-Kong-Request-Id")
			if r.Status != 404 || id == "" {
				t.Errorf("%s: status %d, X-Kong-Request-Id %q; want 404 with an id", p, r.Status, id)
			}
			if seen[id] {
				t.Errorf("request id %q repeated", id)
			}
			seen[id] = true
		}
		// A client-supplied value does not become the gateway's id.
		r, er := waitProxied(t, n, get("/hdr/anything", "X-Kong-Request-Id", "client-chosen"))
		if got := r.Header.Get("X-Kong-Request-Id"); got == "client-chosen" || got == "" {
			t.Errorf("response X-Kong-Request-Id = %q, want the gateway's own id", got)
		}
		if got := er.Header("X-Kong-Request-Id"); got != r.Header.Get("X-Kong-Request-Id") {
			t.Errorf("upstream X-Kong-Request-Id = %q, want the gateway's id %q", got, r.Header.Get("X-Kong-Request-Id"))
		}
	})

	t.Run("X_upstream_errors", func(t *testing.T) {
		// Upstream statuses pass through unchanged.
		for _, code := range []int{201, 404, 500, 503} {
			r := proxy(t, n, get(fmt.Sprintf("/hdr/status/%d", code)))
			if r.Status != code || r.Header.Get("X-Upstream-Name") == "" {
				t.Errorf("upstream %d: got %s", code, r)
			}
		}
		// An upstream that is not listening: 502.
		dead, err := harness.FreePorts(1)
		if err != nil {
			t.Fatal(err)
		}
		s := create(t, n, "/services", map[string]any{"url": "http://127.0.0.1:" + strconv.Itoa(dead[0]), "retries": 0})
		route(t, n, idOf(s), map[string]any{"paths": []any{"/dead"}})
		// Accept selects the JSON error format (the default type is text/plain).
		r := waitFor(t, n, "route to a dead upstream", get("/dead", "Accept", "application/json"), func(r *harness.Response) bool { return r.Status != 404 })
		harness.CheckMessage(t, r, http.StatusBadGateway, "An invalid response was received from the upstream server")
		// A slow upstream beyond read_timeout: 504.
		s = service(t, n, up, map[string]any{"read_timeout": 300, "retries": 0})
		route(t, n, idOf(s), map[string]any{"paths": []any{"/slow"}})
		r = waitFor(t, n, "route to a slow upstream", get("/slow/delay/2000", "Accept", "application/json"), func(r *harness.Response) bool { return r.Status != 404 })
		harness.CheckMessage(t, r, http.StatusGatewayTimeout, "The upstream server is timing out")
	})
}
