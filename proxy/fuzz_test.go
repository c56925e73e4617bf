package proxy

import (
	"bufio"
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/gatehouse-gw/gatehouse/fsm"
	"github.com/gatehouse-gw/gatehouse/plugins"
)

// FuzzProxyRequest feeds raw bytes to the proxy's listener, configured
// with one route to an upstream that is not there. Whatever arrives, the
// proxy must not panic and must answer with a well-formed HTTP response
// (or close the connection); it must never answer 2xx, since nothing can
// be proxied.
func FuzzProxyRequest(f *testing.F) {
	for _, seed := range []string{
		"GET /r1 HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST /r1 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
		"POST /r1 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
		"GET http://b/r1 HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /r1/%2e%2e/x?q=1 HTTP/1.1\r\nHost: a\r\nConnection: te\r\nTE: trailers\r\n\r\n",
		"get / HTTP/1.0\r\n\r\n",
		"\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	_, s, _ := config(f, 3)
	// Point the service at a closed port so that a routed request fails
	// fast with 502 instead of leaving the process.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	dead := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	fold := &fsm.Fold{Plugins: plugins.NewRegistry()}
	s, _, ferr := fold.Apply(s, s.Index+1, 0, &fsm.Command{Op: "update", Kind: fsm.Services, Key: uuid(0),
		Body: map[string]any{"host": "127.0.0.1", "port": float64(dead), "retries": 0.0, "connect_timeout": 200.0}})
	if ferr != nil {
		f.Fatal(ferr)
	}
	px := New(NewRuntime(plugins.NewRegistry(), s), time.Second)
	pl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	go px.Serve(pl)
	f.Cleanup(func() { px.Shutdown() })

	f.Fuzz(func(t *testing.T, raw []byte) {
		conn, err := net.DialTimeout("tcp", pl.Addr().String(), 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		conn.Write(raw)
		// End the request stream so an incomplete request fails at once
		// instead of waiting for the read timeout.
		conn.(*net.TCPConn).CloseWrite()
		var resp fasthttp.Response
		if err := resp.Read(bufio.NewReader(conn)); err != nil {
			return // closed without an answer: acceptable
		}
		if code := resp.StatusCode(); code >= 200 && code < 300 {
			t.Fatalf("status %d for %q", code, raw)
		}
		if !bytes.Contains(resp.Header.Peek("Content-Type"), []byte("json")) && resp.StatusCode() != 426 && len(resp.Body()) > 0 {
			t.Fatalf("error without a JSON body (%d): %q", resp.StatusCode(), resp.Body())
		}
	})
}
