package proxy

import (
	"github.com/valyala/fasthttp"
	"net/netip"

	"github.com/gatehouse-gw/gatehouse/plugins"
)

// fastRequest adapts a fasthttp request to plugins.Request. Strings it
// returns are copies: plugins may keep them (rate-limit keys).
type fastRequest struct {
	ctx        *fasthttp.RequestCtx
	queryDirty bool
	clientIP   string
	upPath     string // set by a plugin: the upstream path to use
	// portBuf holds X-Forwarded-Port's digits: fasthttp copies them, and
	// a buffer of the pooled request state does not allocate.
	portBuf [8]byte
	ipBuf   [46]byte // the client address's text, likewise
}

var _ plugins.Request = (*fastRequest)(nil)

func (r *fastRequest) Method() string { return string(r.ctx.Method()) }
func (r *fastRequest) Path() string   { return string(r.ctx.Request.URI().PathOriginal()) }
func (r *fastRequest) Host() string   { return string(r.ctx.Request.Header.Host()) }

func (r *fastRequest) Header(name string) (string, bool) {
	v := r.ctx.Request.Header.Peek(name)
	if v == nil {
		return "", false
	}
	return string(v), true
}

func (r *fastRequest) HeaderView(name string) (string, bool) {
	v := r.ctx.Request.Header.Peek(name)
	if v == nil {
		return "", false
	}
	return b2s(v), true
}

func (r *fastRequest) SetHeader(name, value string) { r.ctx.Request.Header.Set(name, value) }
func (r *fastRequest) DelHeader(name string)        { r.ctx.Request.Header.Del(name) }
func (r *fastRequest) AddHeader(name, value string) { r.ctx.Request.Header.Add(name, value) }
func (r *fastRequest) SetMethod(m string)           { r.ctx.Request.Header.SetMethod(m) }
func (r *fastRequest) SetUpstreamPath(p string)     { r.upPath = p }

func (r *fastRequest) SetQuery(name, value string) {
	r.ctx.QueryArgs().Set(name, value)
	r.queryDirty = true
}

func (r *fastRequest) AddQuery(name, value string) {
	r.ctx.QueryArgs().Add(name, value)
	r.queryDirty = true
}

func (r *fastRequest) Query(name string) (string, bool) {
	args := r.ctx.QueryArgs()
	if !args.Has(name) {
		return "", false
	}
	return string(args.Peek(name)), true
}

func (r *fastRequest) QueryCount(name string) int { return len(r.ctx.QueryArgs().PeekMulti(name)) }

func (r *fastRequest) DelQuery(name string) {
	r.ctx.QueryArgs().Del(name)
	r.queryDirty = true
}

func (r *fastRequest) VisitQuery(fn func(key, value string)) {
	r.ctx.QueryArgs().VisitAll(func(k, v []byte) { fn(string(k), string(v)) })
}

func (r *fastRequest) VisitHeaders(fn func(key, value string)) {
	r.ctx.Request.Header.VisitAll(func(k, v []byte) { fn(string(k), string(v)) })
}

func (r *fastRequest) ContentType() string { return string(r.ctx.Request.Header.ContentType()) }
func (r *fastRequest) Body() []byte        { return r.ctx.Request.Body() }
func (r *fastRequest) SetBody(b []byte)    { r.ctx.Request.SetBody(b) }

// appendClientIP is ClientIP's text in buf, without making a string
// unless a plugin already asked for one.
func (r *fastRequest) appendClientIP(buf []byte) []byte {
	if r.clientIP != "" {
		return append(buf, r.clientIP...)
	}
	if a, ok := netip.AddrFromSlice(r.ctx.RemoteIP()); ok {
		return a.Unmap().AppendTo(buf)
	}
	return append(buf, r.ClientIP()...)
}

func (r *fastRequest) ClientIP() string {
	if r.clientIP == "" {
		r.clientIP = r.ctx.RemoteIP().String()
	}
	return r.clientIP
}

// fastResponse adapts the fasthttp response being sent to the client.
type fastResponse struct{ resp *fasthttp.Response }

var _ plugins.Response = (*fastResponse)(nil)

func (r *fastResponse) Status() int { return r.resp.StatusCode() }

func (r *fastResponse) Header(name string) (string, bool) {
	v := r.resp.Header.Peek(name)
	if v == nil {
		return "", false
	}
	return string(v), true
}

func (r *fastResponse) SetHeader(name, value string) { r.resp.Header.Set(name, value) }
func (r *fastResponse) DelHeader(name string)        { r.resp.Header.Del(name) }

func (r *fastResponse) VisitHeaders(fn func(key, value string)) {
	r.resp.Header.VisitAll(func(k, v []byte) { fn(string(k), string(v)) })
}

func (r *fastResponse) Body() []byte { return r.resp.Body() }
