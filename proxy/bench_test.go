package proxy

import (
	"net"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/gatehouse-gw/gatehouse/fsm"
	"github.com/gatehouse-gw/gatehouse/plugins"
	"github.com/gatehouse-gw/gatehouse/plugins/keyauth"
	"github.com/gatehouse-gw/gatehouse/plugins/ratelimiting"
)

// BenchmarkProxy is issue 8's allocation budget: one routed request through
// the proxy's handler, to a real upstream on loopback, without plugins and
// with key-auth + rate-limiting. allocs/op counts every allocation on the
// request's path, fasthttp's client and server included; -memprofile shows
// which are Gatehouse's own.
func BenchmarkProxy(b *testing.B) {
	up := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString(`{"ok":true}`) }}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go up.Serve(ln)
	defer up.Shutdown()
	port := ln.Addr().(*net.TCPAddr).Port

	reg := plugins.NewRegistry(keyauth.Definition(), ratelimiting.Definition(ratelimiting.NewStore(1<<16)))
	fold := &fsm.Fold{Plugins: reg}
	cmds := []*fsm.Command{
		{Op: "create", Kind: fsm.Services, NewID: uuid(0), Body: map[string]any{"name": "bench", "host": "127.0.0.1", "port": float64(port)}},
		{Op: "create", Kind: fsm.Routes, NewID: uuid(1), Body: map[string]any{"paths": []any{"/plain"}, "service": map[string]any{"id": uuid(0)}}},
		{Op: "create", Kind: fsm.Routes, NewID: uuid(2), Body: map[string]any{"paths": []any{"/plugins"}, "service": map[string]any{"id": uuid(0)}}},
		{Op: "create", Kind: fsm.Plugins, NewID: uuid(3), Body: map[string]any{"name": "key-auth", "route": map[string]any{"id": uuid(2)}}},
		{Op: "create", Kind: fsm.Plugins, NewID: uuid(4), Body: map[string]any{"name": "rate-limiting", "route": map[string]any{"id": uuid(2)},
			"config": map[string]any{"hour": 1e9, "policy": "local"}}},
		{Op: "create", Kind: fsm.Consumers, NewID: uuid(5), Body: map[string]any{"username": "bench"}},
		{Op: "create", Kind: fsm.KeyAuths, NewID: uuid(6), Body: map[string]any{"key": "benchkey", "consumer": map[string]any{"id": uuid(5)}}},
	}
	s, _, ferr := fold.ApplyAll(fsm.Empty(), 1, time.Now().UnixNano(), cmds)
	if ferr != nil {
		b.Fatal(ferr, ferr.Fields)
	}
	px := New(NewRuntime(reg, s), time.Second)
	defer px.Shutdown()
	remote := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}

	for _, c := range []struct{ name, path, key string }{
		{"no-plugins", "/plain", ""},
		{"key-auth+rate-limiting", "/plugins", "benchkey"},
	} {
		b.Run(c.name, func(b *testing.B) {
			var req fasthttp.Request
			req.SetRequestURI(c.path)
			req.Header.SetHost("gw.test")
			if c.key != "" {
				req.Header.Set("apikey", c.key)
			}
			var ctx fasthttp.RequestCtx
			b.ReportAllocs()
			for b.Loop() {
				ctx.Init(&req, remote, nil)
				px.handle(&ctx)
				if code := ctx.Response.StatusCode(); code != 200 {
					b.Fatalf("%s answered %d: %s", c.path, code, ctx.Response.Body())
				}
			}
		})
	}
}

func TestHostOnlyIsSplitHostPort(t *testing.T) {
	for _, h := range []string{"gw.test", "gw.test:8000", "gw.test:", "gw.test:abc", "127.0.0.1", "127.0.0.1:80",
		"[::1]:80", "[::1]", "[::1]x", "::1", "a:b:c", "[::1]:80:90", "", ":80", "[]:1"} {
		want := h
		if hh, _, err := net.SplitHostPort(h); err == nil {
			want = hh
		}
		if got := hostOnly(h); got != want {
			t.Errorf("hostOnly(%q) = %q, SplitHostPort gives %q", h, got, want)
		}
	}
}
