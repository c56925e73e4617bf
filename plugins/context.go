package plugins

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/gatehouse-gw/gatehouse/fsm"
)

// Request is the in-flight request as plugins see it, independent of the
// HTTP engine underneath (fasthttp today; a net/http listener for HTTP/2
// can implement the same interface).
type Request interface {
	Method() string
	Path() string // as received, without the query string
	Host() string
	Header(name string) (string, bool)
	// HeaderView is Header without the copy: the string shares the
	// request's buffer, so it is only for a lookup, valid until the
	// request's headers change or the phase returns. Never keep it.
	HeaderView(name string) (string, bool)
	SetHeader(name, value string) // on the request sent upstream
	AddHeader(name, value string) // another value, after any there are
	DelHeader(name string)
	Query(name string) (string, bool)
	QueryCount(name string) int
	SetQuery(name, value string)
	AddQuery(name, value string)
	DelQuery(name string)
	SetMethod(method string)  // the method sent upstream
	SetUpstreamPath(p string) // the path sent upstream, instead of the routed one
	VisitQuery(fn func(key, value string))
	VisitHeaders(fn func(key, value string))
	ContentType() string
	Body() []byte
	SetBody(b []byte)
	ClientIP() string
}

// Response is the response on its way to the client: the upstream's, or
// the one a plugin produced with Exit.
type Response interface {
	Status() int
	Header(name string) (string, bool)
	SetHeader(name, value string)
	DelHeader(name string)
	VisitHeaders(fn func(key, value string))
	Body() []byte
}

// Exit is a response produced by a plugin instead of proxying.
type Exit struct {
	Status  int
	Headers [][2]string
	Body    []byte
	// Message is set for Kong's standard error bodies; the proxy formats
	// it (JSON, with the request id) when Body is nil.
	Message string
}

// Credentials looks up the entities an auth plugin needs on every
// request; each method answers as State would.
type Credentials interface {
	KeyAuth(key string) *fsm.Entity
	Consumer(id string) *fsm.Entity
}

// Context carries one request through the plugin phases. The proxy reuses
// contexts across requests; plugins must not keep references to it.
type Context struct {
	Req   Request
	Resp  Response // set for the header, body and log phases
	State *fsm.State
	// Credentials, when set, finds key-auth credentials and consumers of
	// State by hash, faster than State's own lookups at scale.
	Credentials Credentials
	Route       *fsm.Route
	Service     *fsm.Service
	Consumer    *fsm.Consumer
	// Plugin is the instance whose handler is running, set by the proxy
	// before each call (rate-limiting keys counters by its scope).
	Plugin *fsm.Plugin
	// CredentialID is the id of the credential that authenticated the
	// consumer, if any.
	CredentialID string
	RequestID    string
	Start        time.Time
	// Upstream is how long the upstream took (zero when it was not
	// reached); Source says who produced the response, as Kong's
	// kong.response.get_source does: "service", "exit" (a plugin) or
	// "error" (the proxy). Both are set for the log phase.
	Upstream time.Duration
	Source   string
	// TLS is whether the client connected over TLS.
	TLS bool

	exit        *Exit
	respHeaders []ResponseHeader
	vars        [4]struct {
		owner any
		val   any
	}
}

// Reset clears the context for reuse.
func (c *Context) Reset() {
	c.Req, c.Resp, c.State, c.Route, c.Service, c.Consumer, c.Plugin = nil, nil, nil, nil, nil, nil, nil
	c.Credentials = nil
	c.CredentialID, c.RequestID, c.Source, c.Upstream, c.TLS = "", "", "", 0, false
	c.exit = nil
	c.respHeaders = c.respHeaders[:0]
	c.vars = [4]struct {
		owner any
		val   any
	}{}
}

// KeyAuth returns the key-auth credential with key k, by Credentials
// when the proxy set it, else from State.
func (c *Context) KeyAuth(k string) *fsm.Entity {
	if c.Credentials != nil {
		return c.Credentials.KeyAuth(k)
	}
	return c.State.FindUnique(fsm.KeyAuths, "key", k)
}

// ConsumerEntity returns the consumer with that id, likewise.
func (c *Context) ConsumerEntity(id string) *fsm.Entity {
	if c.Credentials != nil {
		return c.Credentials.Consumer(id)
	}
	return c.State.Get(fsm.Consumers, id)
}

// Exit ends the request with a response; later access-phase plugins do not
// run and nothing is proxied.
func (c *Context) Exit(e *Exit) { c.exit = e }

// Error ends the request with Kong's standard error body.
func (c *Context) Error(status int, message string, headers ...[2]string) {
	c.exit = &Exit{Status: status, Message: message, Headers: headers}
}

// ExitJSON ends the request with v as a JSON body (Kong's exits with a
// table, e.g. the jwt plugin's claim errors).
func (c *Context) ExitJSON(status int, v any, headers ...[2]string) {
	b, err := json.Marshal(v)
	if err != nil {
		c.Error(500, "An unexpected error occurred")
		return
	}
	headers = append(headers, [2]string{"Content-Type", "application/json; charset=utf-8"})
	c.exit = &Exit{Status: status, Body: b, Headers: headers}
}

// Exited returns the exit set by a plugin, or nil.
func (c *Context) Exited() *Exit { return c.exit }

// ResponseHeader is a header added with AddResponseHeader or
// AddResponseHeaderInt.
type ResponseHeader struct {
	Name, Value string
	Int         int64
	IsInt       bool
}

// AppendValue appends the header's value to b.
func (h *ResponseHeader) AppendValue(b []byte) []byte {
	if h.IsInt {
		return strconv.AppendInt(b, h.Int, 10)
	}
	return append(b, h.Value...)
}

// AddResponseHeader sets a header on the client response whether the
// request is proxied or ended by a plugin (rate-limit headers).
func (c *Context) AddResponseHeader(name, value string) {
	c.respHeaders = append(c.respHeaders, ResponseHeader{Name: name, Value: value})
}

// AddResponseHeaderInt is AddResponseHeader for a number. It is written
// straight into the response, where formatting it first would allocate a
// string on every request (rate-limit counts).
func (c *Context) AddResponseHeaderInt(name string, v int64) {
	c.respHeaders = append(c.respHeaders, ResponseHeader{Name: name, Int: v, IsInt: true})
}

// ResponseHeaders lists headers added with AddResponseHeader and
// AddResponseHeaderInt.
func (c *Context) ResponseHeaders() []ResponseHeader { return c.respHeaders }

// Set stores a per-request value for owner (usually the plugin handler),
// to carry state from one phase to a later one without allocating a map.
func (c *Context) Set(owner, val any) {
	for i := range c.vars {
		if c.vars[i].owner == nil || c.vars[i].owner == owner {
			c.vars[i].owner, c.vars[i].val = owner, val
			return
		}
	}
}

// Get returns the value stored by Set for owner.
func (c *Context) Get(owner any) any {
	for i := range c.vars {
		if c.vars[i].owner == owner {
			return c.vars[i].val
		}
	}
	return nil
}

// SetConsumer records the authenticated consumer and sets Kong's upstream
// consumer headers.
func (c *Context) SetConsumer(cons *fsm.Consumer, credentialID string) {
	c.Consumer = cons
	c.CredentialID = credentialID
	if cons == nil {
		return
	}
	c.Req.SetHeader("X-Consumer-ID", cons.ID)
	if cons.CustomID != "" {
		c.Req.SetHeader("X-Consumer-Custom-ID", cons.CustomID)
	} else {
		c.Req.DelHeader("X-Consumer-Custom-ID")
	}
	if cons.Username != "" {
		c.Req.SetHeader("X-Consumer-Username", cons.Username)
	} else {
		c.Req.DelHeader("X-Consumer-Username")
	}
	if credentialID != "" {
		c.Req.SetHeader("X-Credential-Identifier", credentialID)
	}
	c.Req.DelHeader("X-Anonymous-Consumer")
}

// SetAnonymous is an authentication plugin's fallback when its
// credentials are missing or wrong and its config names an anonymous
// consumer (by id or username): the request goes on as that consumer,
// marked X-Anonymous-Consumer. A missing consumer is a 500, as in Kong.
func (c *Context) SetAnonymous(key string) {
	anon := c.State.Find(fsm.Consumers, key)
	if anon == nil {
		c.Error(500, "anonymous consumer "+key+" is configured but doesn't exist")
		return
	}
	c.SetConsumer(anon.View.(*fsm.Consumer), "")
	c.Req.SetHeader("X-Anonymous-Consumer", "true")
}
