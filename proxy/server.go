// Package proxy is Gatehouse's data path: it matches requests to routes,
// runs the plugin chain, balances over targets and forwards with fasthttp.
package proxy

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/valyala/fasthttp"

	"github.com/gatehouse-gw/gatehouse/fsm"
	"github.com/gatehouse-gw/gatehouse/plugins"
	"github.com/gatehouse-gw/gatehouse/proxy/router"
)

// KongVersion is the version advertised in Via and Server headers.
const KongVersion = "3.9.1"

const (
	serverToken = "kong/" + KongVersion
	viaToken    = "1.1 " + serverToken
)

// Proxy serves proxied traffic from the runtime's current snapshot.
type Proxy struct {
	rt        *Runtime
	clientsMu sync.RWMutex
	clients   map[clientKey]*fasthttp.HostClient
	idPre     string
	idSeq     atomic.Uint64
	pool      sync.Pool

	total  atomic.Uint64
	server *fasthttp.Server
}

// New returns a proxy reading configuration from rt. readTimeout bounds
// how long a client may take to send a whole request (slow clients are
// answered 408 and disconnected); 0 means 60 s, nginx's default.
func New(rt *Runtime, readTimeout time.Duration) *Proxy {
	if readTimeout <= 0 {
		readTimeout = 60 * time.Second
	}
	var b [8]byte
	rand.Read(b[:])
	p := &Proxy{rt: rt, idPre: hex.EncodeToString(b[:]), clients: map[clientKey]*fasthttp.HostClient{}}
	p.pool.New = newReqState
	p.server = &fasthttp.Server{
		Handler:               p.handle,
		Name:                  serverToken,
		NoDefaultServerHeader: true,
		NoDefaultContentType:  true,
		ReadTimeout:           readTimeout,
		IdleTimeout:           60 * time.Second,
		MaxRequestBodySize:    maxBodyBytes,
		ReadBufferSize:        maxHeaderBytes,
		ErrorHandler:          parseError,
	}
	return p
}

// Serve accepts connections on ln until Shutdown.
func (p *Proxy) Serve(ln net.Listener) error { return p.server.Serve(ln) }

// Shutdown stops accepting and waits for in-flight requests.
func (p *Proxy) Shutdown() error { return p.server.Shutdown() }

// Stats returns Kong-style server counters for /status.
func (p *Proxy) Stats() map[string]any {
	open := p.server.GetOpenConnectionsCount()
	return map[string]any{
		"total_requests": p.total.Load(), "connections_active": open, "connections_accepted": open,
		"connections_handled": open, "connections_reading": 0, "connections_writing": open,
		"connections_waiting": 0,
	}
}

// Requests is how many requests the proxy has handled since it started.
func (p *Proxy) Requests() float64 { return float64(p.total.Load()) }

// OpenConnections is how many client connections are open.
func (p *Proxy) OpenConnections() float64 { return float64(p.server.GetOpenConnectionsCount()) }

// reqState is the pooled per-request working set.
type reqState struct {
	pctx plugins.Context
	req  fastRequest
	resp fastResponse
	ran  []*fsm.Plugin
	// logged are the plugins after the one that ended the request in
	// its access phase: Kong still runs their log phase (the prometheus
	// plugin counts the 401 an auth plugin answered).
	logged []*fsm.Plugin
	rreq   router.Request
}

func newReqState() any {
	rs := &reqState{}
	// Bound once per pooled object, so matching allocates no closure.
	rs.rreq.Header = func(name string) (string, bool) {
		v := rs.req.ctx.Request.Header.Peek(name)
		return b2s(v), v != nil
	}
	return rs
}

func (p *Proxy) release(rs *reqState) {
	rs.pctx.Reset()
	rs.req = fastRequest{}
	rs.resp = fastResponse{}
	rs.ran = rs.ran[:0]
	rs.logged = rs.logged[:0]
	p.pool.Put(rs)
}

func (p *Proxy) requestID() string {
	var b [16]byte
	n := p.idSeq.Add(1)
	const hexd = "0123456789abcdef"
	for i := 15; i >= 0; i-- {
		b[i] = hexd[n&0xf]
		n >>= 4
	}
	return p.idPre + string(b[:])
}

// b2s views b as a string without copying. Only for values used while the
// request is being handled: fasthttp reuses its buffers afterwards.
func b2s(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

func (p *Proxy) handle(ctx *fasthttp.RequestCtx) {
	p.total.Add(1)
	start := time.Now()
	reqID := p.requestID()
	sn := p.rt.load()

	if status, msg := screen(ctx); status != 0 {
		kongError(ctx, start, reqID, status, msg)
		ctx.SetConnectionClose()
		return
	}

	rs := p.pool.Get().(*reqState)
	defer p.release(rs)
	rs.req.ctx = ctx

	port := 0
	if a, ok := ctx.LocalAddr().(*net.TCPAddr); ok {
		port = a.Port
	}
	host := b2s(ctx.Request.Header.Host())
	rawPath := b2s(ctx.Request.URI().PathOriginal())
	rr := &rs.rreq
	rr.Method, rr.Host, rr.Port, rr.Path = b2s(ctx.Method()), host, port, rawPath
	m, ok := sn.router.Match(rr)
	if !ok {
		if _, valid := router.NormalizePath(rawPath); !valid {
			// nginx rejects such paths before Kong's router sees them.
			kongError(ctx, start, reqID, 400, "Bad request")
			return
		}
		kongError(ctx, start, reqID, 404, "no Route matched with those values")
		return
	}
	route := m.Route.Payload.(*fsm.Route)
	if ctx.IsTLS() {
		if !allows(route, "https") {
			kongError(ctx, start, reqID, 404, "no Route matched with those values")
			return
		}
	} else if !allows(route, "http") {
		// An https-only route reached over plain HTTP: Kong answers 426
		// or redirects, per the route.
		httpsRedirect(ctx, start, reqID, route, host)
		return
	}
	ri := sn.info(p.rt.plugins, route)
	if ri.service == nil {
		kongError(ctx, start, reqID, 503, "no Service found with those values")
		return
	}

	pc := &rs.pctx
	pc.Req, pc.State, pc.Route, pc.Service, pc.RequestID, pc.Start = &rs.req, sn.state, route, ri.service, reqID, start
	pc.Credentials = sn.creds
	pc.TLS = ctx.IsTLS()

	// Access phase, in priority order; a consumer found by an auth plugin
	// may select consumer-scoped instances for the plugins after it.
	for _, l := range ri.chain {
		pl := l.plugin
		if sn.consumerPlugins && pc.Consumer != nil {
			pl = resolve(sn.state, l.def.Name, route.ID, route.ServiceID, pc.Consumer.ID)
		}
		if pl == nil {
			continue
		}
		if pc.Exited() != nil {
			if _, ok := pl.Compiled.(plugins.Logger); ok {
				rs.logged = append(rs.logged, pl)
			}
			continue
		}
		rs.ran = append(rs.ran, pl)
		if a, ok := pl.Compiled.(plugins.Accessor); ok {
			pc.Plugin = pl
			a.Access(pc)
		}
	}

	rs.resp.resp = &ctx.Response
	pc.Resp = &rs.resp
	if ex := pc.Exited(); ex != nil {
		writeExit(ctx, ex, reqID)
		pc.Source = "exit"
		p.responsePhases(rs, pc)
		ctx.Response.Header.Set("X-Kong-Response-Latency", strconv.FormatInt(time.Since(start).Milliseconds(), 10))
		ctx.Response.Header.Set("X-Kong-Request-Id", reqID)
		return
	}

	upStart := time.Now()
	status, msg := p.forward(ctx, sn, ri, m, host, port, rawPath, reqID, &rs.req)
	upDone := time.Now()
	if status != 0 {
		kongError(ctx, start, reqID, status, msg)
		pc.Source = "error"
		p.logPhase(rs, pc)
		return
	}
	rh := &ctx.Response.Header
	stripHopByHop(rh)
	pc.Source, pc.Upstream = "service", upDone.Sub(upStart)
	p.responsePhases(rs, pc)
	if len(rh.Peek("Server")) == 0 {
		rh.Set("Server", serverToken)
	}
	if via := rh.Peek("Via"); len(via) > 0 {
		rh.Set("Via", string(via)+", "+viaToken)
	} else {
		rh.Set("Via", viaToken)
	}
	rh.Set("X-Kong-Upstream-Latency", strconv.FormatInt(upDone.Sub(upStart).Milliseconds(), 10))
	rh.Set("X-Kong-Proxy-Latency", strconv.FormatInt(upStart.Sub(start).Milliseconds(), 10))
	rh.Set("X-Kong-Request-Id", reqID)
}

// responsePhases applies plugin response headers and runs the header and
// body filters of the plugins that ran.
func (p *Proxy) responsePhases(rs *reqState, pc *plugins.Context) {
	var vb [20]byte // an int64's digits
	hs := pc.ResponseHeaders()
	for i := range hs {
		if hs[i].IsInt {
			rs.resp.resp.Header.SetBytesV(hs[i].Name, hs[i].AppendValue(vb[:0]))
		} else {
			rs.resp.resp.Header.Set(hs[i].Name, hs[i].Value)
		}
	}
	for _, pl := range rs.ran {
		pc.Plugin = pl
		if f, ok := pl.Compiled.(plugins.HeaderFilter); ok {
			f.HeaderFilter(pc)
		}
		if f, ok := pl.Compiled.(plugins.BodyFilter); ok {
			f.BodyFilter(pc)
		}
	}
	p.logPhase(rs, pc)
}

// logPhase runs the log phase of the plugins that ran, once the response
// is final (also for the proxy's own errors, which Kong logs too).
func (p *Proxy) logPhase(rs *reqState, pc *plugins.Context) {
	for _, list := range [2][]*fsm.Plugin{rs.ran, rs.logged} {
		for _, pl := range list {
			if f, ok := pl.Compiled.(plugins.Logger); ok {
				pc.Plugin = pl
				f.Log(pc)
			}
		}
	}
}

func allows(r *fsm.Route, proto string) bool {
	for _, p := range r.Protocols {
		if p == proto {
			return true
		}
	}
	return false
}

func httpsRedirect(ctx *fasthttp.RequestCtx, start time.Time, reqID string, r *fsm.Route, host string) {
	if r.HTTPSRedirect == 426 || r.HTTPSRedirect == 0 {
		kongError(ctx, start, reqID, 426, "Please use HTTPS protocol")
		ctx.Response.Header.Set("Connection", "Upgrade")
		ctx.Response.Header.Set("Upgrade", "TLS/1.2, HTTP/1.1")
		return
	}
	kongError(ctx, start, reqID, r.HTTPSRedirect, "Moved")
	ctx.Response.Header.Set("Location", "https://"+host+string(ctx.RequestURI()))
}

func writeExit(ctx *fasthttp.RequestCtx, ex *plugins.Exit, reqID string) {
	resp := &ctx.Response
	resp.Reset()
	resp.SetStatusCode(ex.Status)
	if ex.Body != nil {
		resp.SetBody(ex.Body)
	} else {
		resp.Header.SetContentType("application/json; charset=utf-8")
		resp.SetBodyString(errorBody(ex.Message, reqID))
	}
	for _, h := range ex.Headers {
		resp.Header.Set(h[0], h[1])
	}
	if len(resp.Header.Peek("Server")) == 0 {
		resp.Header.Set("Server", serverToken)
	}
}

// errorBody is Kong's default JSON error template.
func errorBody(msg, reqID string) string {
	var b strings.Builder
	b.WriteString("{\n  \"message\":")
	b.WriteString(strconv.Quote(msg))
	b.WriteString(",\n  \"request_id\":\"")
	b.WriteString(reqID)
	b.WriteString("\"\n}")
	return b.String()
}

func kongError(ctx *fasthttp.RequestCtx, start time.Time, reqID string, status int, msg string) {
	resp := &ctx.Response
	resp.Reset()
	resp.SetStatusCode(status)
	resp.Header.SetContentType("application/json; charset=utf-8")
	resp.Header.Set("Server", serverToken)
	resp.Header.Set("X-Kong-Response-Latency", strconv.FormatInt(time.Since(start).Milliseconds(), 10))
	resp.Header.Set("X-Kong-Request-Id", reqID)
	resp.SetBodyString(errorBody(msg, reqID))
}

var comma, newline = []byte(","), []byte("\n")

var hopByHop = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate",
	"TE", "Trailer", "Transfer-Encoding", "Upgrade"}

// connectionTokens calls del for each header named in a Connection header
// value (those are hop-by-hop too), except the close/keep-alive tokens.
// It walks the value in place: splitting it allocated on every request.
func connectionTokens(c []byte, del func([]byte)) {
	for len(c) > 0 {
		var n []byte
		n, c, _ = bytes.Cut(c, comma)
		if n = bytes.TrimSpace(n); len(n) > 0 && !bytes.EqualFold(n, []byte("close")) && !bytes.EqualFold(n, []byte("keep-alive")) {
			del(n)
		}
	}
}

func stripHopByHopReq(h *fasthttp.RequestHeader) {
	connectionTokens(h.Peek("Connection"), h.DelBytes)
	// TE is hop-by-hop, but a client asking for trailers keeps that
	// request upstream (Kong does the same).
	te := h.Peek("TE")
	wantsTrailers := len(te) > 0 && bytes.Contains(bytes.ToLower(te), []byte("trailers"))
	for _, n := range hopByHop {
		h.Del(n)
	}
	if wantsTrailers {
		h.Set("TE", "trailers")
	}
}

func stripHopByHop(h *fasthttp.ResponseHeader) {
	connectionTokens(h.Peek("Connection"), h.DelBytes)
	for _, n := range hopByHop {
		h.Del(n)
	}
	h.ResetConnectionClose()
}

// forward sends the request upstream, retrying other peers on connection
// failures. It returns a Kong error status and message, or 0 on success.
func (p *Proxy) forward(ctx *fasthttp.RequestCtx, sn *snapshot, ri *routeInfo, m router.Match,
	host string, port int, rawPath, reqID string, fr *fastRequest) (int, string) {
	svc := ri.service
	req := &ctx.Request

	upPath := router.UpstreamPath(svc.Path, m)
	if fr.upPath != "" {
		upPath = fr.upPath
	}
	query := ctx.URI().QueryString()
	if fr.queryDirty {
		query = ctx.QueryArgs().QueryString()
	}
	uri := upPath
	if len(query) > 0 {
		uri = upPath + "?" + string(query)
	}

	// Forwarded headers: Gatehouse trusts no client's X-Forwarded-* yet
	// (Kong's trusted_ips is empty by default), so they are replaced.
	clientIP := fr.appendClientIP(fr.ipBuf[:0])
	h := &req.Header
	if xff := h.Peek("X-Forwarded-For"); len(xff) > 0 {
		h.Set("X-Forwarded-For", string(xff)+", "+string(clientIP))
	} else {
		h.SetBytesV("X-Forwarded-For", clientIP)
	}
	h.SetBytesV("X-Real-IP", clientIP)
	if ctx.IsTLS() {
		h.Set("X-Forwarded-Proto", "https")
	} else {
		h.Set("X-Forwarded-Proto", "http")
	}
	h.Set("X-Forwarded-Host", hostOnly(host))
	h.SetBytesV("X-Forwarded-Port", strconv.AppendInt(fr.portBuf[:0], int64(port), 10))
	h.Set("X-Forwarded-Path", rawPath)
	if m.StripPrefix != "" && m.StripPrefix != "/" && ri.route.StripPath {
		h.Set("X-Forwarded-Prefix", router.EscapePath(m.StripPrefix))
	} else {
		h.Del("X-Forwarded-Prefix")
	}
	if via := h.Peek("Via"); len(via) > 0 {
		h.Set("Via", string(via)+", "+viaToken)
	} else {
		h.Set("Via", viaToken)
	}
	h.Set("X-Kong-Request-Id", reqID)
	stripHopByHopReq(h)

	tls := svc.Protocol == "https"
	var bal *balancer
	if ri.upstream != nil {
		bal = p.rt.bal.get(sn.state, ri.upstream.ID)
	}
	hostHeader := host
	if !ri.route.PreserveHost {
		hostHeader = ri.hostHeader
	}

	var failed []string
	tries := svc.Retries + 1
	for attempt := 0; attempt < tries; attempt++ {
		addr := ri.addr
		if bal != nil {
			addr = bal.next(failed)
			if addr == "" {
				if len(failed) > 0 {
					return 502, "An invalid response was received from the upstream server"
				}
				return 503, "failure to get a peer from the ring-balancer"
			}
		}
		req.SetRequestURI(uri)
		req.Header.SetHost(hostHeader)
		req.UseHostHeader = true
		if tls {
			req.URI().SetScheme("https")
		} else {
			req.URI().SetScheme("http")
		}
		err := p.client(addr, tls, svc, sn.state).Do(req, &ctx.Response)
		if err == nil {
			return 0, ""
		}
		if errors.Is(err, fasthttp.ErrTimeout) || errors.Is(err, os.ErrDeadlineExceeded) {
			return 504, "The upstream server is timing out"
		}
		if !retryable(err) {
			return 502, "An invalid response was received from the upstream server"
		}
		failed = append(failed, addr)
	}
	return 502, "An invalid response was received from the upstream server"
}

// retryable reports failures that happened before the upstream saw the
// request, so retrying cannot repeat a side effect.
func retryable(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	return errors.Is(err, fasthttp.ErrDialTimeout) || errors.Is(err, syscall.ECONNREFUSED)
}

func hostWithPort(h string, port int, tls bool) string {
	if (!tls && port == 80) || (tls && port == 443) {
		return h
	}
	return net.JoinHostPort(h, strconv.Itoa(port))
}

type clientKey struct {
	addr                   string
	tls                    bool
	connect, read, written time.Duration
	// Upstream TLS: the client certificate's view (a new one on every
	// change of the entity), verification, and the trusted CAs' views.
	cert   *fsm.Certificate
	verify bool
	cas    string
}

// client returns the connection pool for one upstream address and one set
// of service timeouts.
func (p *Proxy) client(addr string, tls bool, svc *fsm.Service, st *fsm.State) *fasthttp.HostClient {
	key := clientKey{addr: addr, tls: tls, connect: svc.ConnectTimeout, read: svc.ReadTimeout, written: svc.WriteTimeout}
	var cas []*fsm.CACertificate
	if tls {
		if e := st.Get(fsm.Certificates, svc.ClientCertificateID); e != nil {
			key.cert = e.View.(*fsm.Certificate)
		}
		key.verify = svc.TLSVerify
		for _, id := range svc.CACertificateIDs {
			if e := st.Get(fsm.CACertificates, id); e != nil {
				ca := e.View.(*fsm.CACertificate)
				cas = append(cas, ca)
				key.cas += fmt.Sprintf("%p,", ca)
			}
		}
	}
	p.clientsMu.RLock()
	c := p.clients[key]
	p.clientsMu.RUnlock()
	if c != nil {
		return c
	}
	p.clientsMu.Lock()
	defer p.clientsMu.Unlock()
	if c = p.clients[key]; c != nil {
		return c
	}
	connect := svc.ConnectTimeout
	c = &fasthttp.HostClient{
		Addr:                      addr,
		IsTLS:                     tls,
		Dial:                      func(a string) (net.Conn, error) { return fasthttp.DialTimeout(a, connect) },
		MaxConns:                  1024,
		MaxIdleConnDuration:       60 * time.Second,
		NoDefaultUserAgentHeader:  true,
		DisablePathNormalizing:    true,
		MaxIdemponentCallAttempts: 1,
		// fasthttp bounds the whole response read and request write;
		// Kong's timeouts bound the gaps between reads and writes. For
		// the request sizes a gateway sees the two agree.
		ReadTimeout:  svc.ReadTimeout,
		WriteTimeout: svc.WriteTimeout,
	}
	if tls {
		c.TLSConfig = upstreamTLS(svc, key, cas)
	}
	p.clients[key] = c
	return c
}

// hostOnly is the host of a Host header value, as net.SplitHostPort gives
// it, or the whole value where SplitHostPort fails (no port, a bare IPv6
// address). SplitHostPort allocates its error, and most Host headers have
// no port.
func hostOnly(h string) string {
	if strings.HasPrefix(h, "[") {
		if i := strings.IndexByte(h, ']'); i > 0 && i+1 < len(h) && h[i+1] == ':' && strings.IndexByte(h[i+2:], ':') < 0 {
			return h[1:i]
		}
		return h
	}
	if i := strings.LastIndexByte(h, ':'); i >= 0 && strings.IndexByte(h[:i], ':') < 0 {
		return h[:i]
	}
	return h
}
