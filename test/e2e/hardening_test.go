package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/test/echo"
	"github.com/gatehouse-gw/gatehouse/test/harness"
)

// TestProxyRejectsHostileRequests sends requests that a gateway must answer
// itself: smuggling shapes, oversized parts, bad methods and absolute-form
// targets naming another host. Each gets a clear error and none reaches
// the upstream.
func TestProxyRejectsHostileRequests(t *testing.T) {
	n := harness.Start(t, harness.Options{NodeID: "hardening"})
	up := echo.StartT(t, "hardening-echo")
	a := admin{n}
	a.create(t, "/services", map[string]any{"name": "guarded", "url": up.URL})
	a.create(t, "/services/guarded/routes", map[string]any{"paths": []any{"/"}})
	// Sanity: a normal request is proxied, so the rejections below are the
	// proxy's doing.
	ok := harness.RawHTTP(t, n.ProxyAddr, "GET /anything HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
	if ok.Status != 200 || ok.Header.Get("X-Kong-Upstream-Latency") == "" {
		t.Fatalf("baseline request not proxied: %d", ok.Status)
	}

	many := strings.Builder{}
	for i := 0; i < 150; i++ {
		many.WriteString("X-Filler-" + strings.Repeat("a", 3) + string(rune('a'+i%26)) + string(rune('a'+i/26)) + ": v\r\n")
	}
	cases := []struct {
		name, req string
		status    int
	}{
		{"content-length with chunked", "POST /anything HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n", 400},
		{"duplicate content-length", "POST /anything HTTP/1.1\r\nHost: a.test\r\nContent-Length: 1\r\nContent-Length: 2\r\nConnection: close\r\n\r\nab", 400},
		{"unsupported transfer-encoding", "POST /anything HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: gzip\r\nConnection: close\r\n\r\n", 400},
		{"lower-case method", "get /anything HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n", 400},
		{"absolute-form for another host", "GET http://other.test/anything HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n", 400},
		{"URI too long", "GET /" + strings.Repeat("a", 9000) + " HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n", 414},
		{"too many headers", "GET /anything HTTP/1.1\r\nHost: a.test\r\n" + many.String() + "Connection: close\r\n\r\n", 431},
		{"header block too large", "GET /anything HTTP/1.1\r\nHost: a.test\r\nX-Big: " + strings.Repeat("a", 40000) + "\r\nConnection: close\r\n\r\n", 431},
		{"body too large", "POST /anything HTTP/1.1\r\nHost: a.test\r\nContent-Length: 9000000\r\nConnection: close\r\n\r\n", 413},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := up.Requests()
			r := harness.RawHTTP(t, n.ProxyAddr, c.req)
			if got := up.Requests(); got != before {
				t.Errorf("the upstream received %d request(s)", got-before)
			}
			if r.Status != c.status {
				t.Fatalf("status %d, want %d (body %s)", r.Status, c.status, r.Body)
			}
			if !strings.Contains(string(r.Body), `"message"`) {
				t.Errorf("no Kong-style error body: %s", r.Body)
			}
			if r.Header.Get("X-Kong-Upstream-Latency") != "" {
				t.Error("rejected request reached the upstream")
			}
		})
	}
}

// TestAdminRejectsOversizedInput checks the Admin API's own limits: a body
// over 8 MiB and JSON nested deeper than 64 levels are refused with Kong's
// error shape, and neither appends anything to the log.
func TestAdminRejectsOversizedInput(t *testing.T) {
	n := harness.Start(t, harness.Options{NodeID: "admin-limits"})
	big := `{"username":"` + strings.Repeat("a", 9<<20) + `"}`
	r := harness.NotAppended(t, n, func() *harness.Response {
		return harness.Raw(t, "POST", n.AdminURL+"/consumers", "application/json", []byte(big))
	})
	harness.CheckMessage(t, r, 413, "request body too large")

	deep := `{"username":"deep","tags":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`
	r = harness.NotAppended(t, n, func() *harness.Response {
		return harness.Raw(t, "POST", n.AdminURL+"/consumers", "application/json", []byte(deep))
	})
	harness.CheckMessage(t, r, 400, "Cannot parse JSON body")
}

// TestSlowClientIsCutOff holds a connection open with a request that never
// finishes: the proxy answers 408 and closes once its read timeout passes,
// instead of waiting forever.
func TestSlowClientIsCutOff(t *testing.T) {
	n := harness.Start(t, harness.Options{NodeID: "slow-client", Args: []string{"--proxy-read-timeout", "1s"}})
	conn, err := net.DialTimeout("tcp", n.ProxyAddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("GET /anything HTTP/1.1\r\nHost: a.test\r\nX-Slow: ")); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, _ := io.ReadAll(conn)
	if waited := time.Since(start); waited > 5*time.Second {
		t.Fatalf("connection held for %v", waited)
	}
	if !strings.HasPrefix(string(b), "HTTP/1.1 408") {
		t.Fatalf("want a 408 before the close, got %q", b)
	}
}

// The admin write timeout bounds answers, not work: with a timeout far
// below what a large declarative document takes to apply, and a backup to
// stream, both are still answered whole.
func TestBulkWritesOutlastTheAdminWriteTimeout(t *testing.T) {
	const timeout, consumers = 200 * time.Millisecond, 10_000
	n := harness.Start(t, harness.Options{NodeID: "slow-bulk", Args: []string{"--admin-write-timeout", timeout.String()}})
	var doc strings.Builder
	doc.WriteString(`{"_format_version":"3.0","consumers":[`)
	for i := range consumers {
		if i > 0 {
			doc.WriteByte(',')
		}
		fmt.Fprintf(&doc, `{"username":"c%d","keyauth_credentials":[{"key":"k%d"}]}`, i, i)
	}
	doc.WriteString(`]}`)
	start := time.Now()
	r := harness.Do(t, harness.Request{Method: http.MethodPost, URL: n.Admin("/config"),
		Body: []byte(doc.String()), ContentType: "application/json"})
	took := time.Since(start)
	harness.ExpectStatus(t, r, http.StatusCreated)
	var out struct {
		Consumers []map[string]any `json:"consumers"`
	}
	r.Decode(t, &out)
	if len(out.Consumers) != consumers {
		t.Fatalf("the answer lists %d consumers, want %d", len(out.Consumers), consumers)
	}
	if took < timeout {
		t.Logf("the load took %v, under the %v timeout: this run did not exercise it", took, timeout)
	}

	file := t.TempDir() + "/slow.backup"
	start = time.Now()
	if out, err := exec.Command(harness.Binary(t), "backup", "--admin", n.AdminURL, "--out", file).CombinedOutput(); err != nil {
		t.Fatalf("backup: %v\n%s", err, out)
	}
	t.Logf("load %v, backup %v", took, time.Since(start))
}
