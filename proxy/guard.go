package proxy

import (
	"bytes"
	"errors"
	"net"

	"github.com/valyala/fasthttp"
)

// Limits on what the proxy accepts from clients. A request over a limit is
// answered by the proxy and never reaches an upstream.
const (
	maxHeaderBytes = 32 << 10 // request line plus headers (fasthttp's read buffer)
	maxHeaders     = 100
	maxURIBytes    = 8 << 10
	maxBodyBytes   = 8 << 20
)

// parseError answers requests fasthttp could not parse, in Kong's error
// shape (nginx answers these itself in Kong).
func parseError(ctx *fasthttp.RequestCtx, err error) {
	var small *fasthttp.ErrSmallBuffer
	var ne *net.OpError
	switch {
	case errors.As(err, &small):
		plainError(ctx, 431, "Request header fields too large")
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		plainError(ctx, 413, "Request body too large")
	case errors.As(err, &ne) && ne.Timeout():
		plainError(ctx, 408, "Request timeout")
	default:
		plainError(ctx, 400, "Bad request")
	}
}

func plainError(ctx *fasthttp.RequestCtx, status int, msg string) {
	resp := &ctx.Response
	resp.Reset()
	resp.SetStatusCode(status)
	resp.Header.SetContentType("application/json; charset=utf-8")
	resp.Header.Set("Server", serverToken)
	resp.SetBodyString(errorBody(msg, ""))
}

// screen rejects requests that parse but must not be proxied: request
// smuggling shapes, unknown method syntax, absolute-form URIs that name
// another host, and oversized URIs or header counts. It returns 0 when
// the request may go on.
func screen(ctx *fasthttp.RequestCtx) (int, string) {
	h := &ctx.Request.Header
	if h.Len() > maxHeaders {
		return 431, "Too many request headers"
	}
	if len(h.RequestURI()) > maxURIBytes {
		return 414, "Request-URI too long"
	}
	for _, c := range h.Method() {
		if c < 'A' || c > 'Z' {
			return 400, "Bad request: invalid method"
		}
	}
	// fasthttp lets Transfer-Encoding win over Content-Length; a request
	// carrying both is a smuggling attempt, refused outright.
	if cl, te := framingHeaders(h.RawHeaders()); cl && te {
		return 400, "Bad request: both Content-Length and Transfer-Encoding"
	}
	if uri := h.RequestURI(); len(uri) > 0 && uri[0] != '/' && uri[0] != '*' {
		// Absolute form: its authority must agree with the Host header.
		u := ctx.Request.URI()
		if !bytes.EqualFold(u.Host(), h.Host()) {
			return 400, "Bad request: request target and Host header disagree"
		}
	}
	return 0, ""
}

// framingHeaders reports whether the raw header block has Content-Length
// and Transfer-Encoding fields (fasthttp has already de-chunked the body
// and dropped the losing header by the time the handler runs).
func framingHeaders(raw []byte) (cl, te bool) {
	for len(raw) > 0 {
		var line []byte
		line, raw, _ = bytes.Cut(raw, newline)
		if len(line) > 0 && (line[0]|0x20 == 'c' || line[0]|0x20 == 't') {
			cl = cl || fieldIs(line, "content-length")
			te = te || fieldIs(line, "transfer-encoding")
		}
	}
	return cl, te
}

func fieldIs(line []byte, name string) bool {
	return len(line) > len(name) && line[len(name)] == ':' && bytes.EqualFold(line[:len(name)], []byte(name))
}
