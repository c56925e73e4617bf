package harness

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/url"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// RequestTimeout bounds every HTTP request the helpers make.
const RequestTimeout = 10 * time.Second

// Client is the HTTP client of all helpers: 10 s timeout, no proxy from the
// environment, no redirects followed, no transparent compression and no
// connection reuse (so a restarted node never meets a stale connection).
var Client = &http.Client{
	Timeout: RequestTimeout,
	Transport: &http.Transport{
		Proxy:              nil,
		DisableKeepAlives:  true,
		DisableCompression: true,
		DialContext:        (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
	},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// Response is a fully read HTTP response.
type Response struct {
	Method string
	URL    string
	Status int
	Header http.Header
	Body   []byte
}

// String describes the exchange for failure messages.
func (r *Response) String() string {
	body := string(r.Body)
	if len(body) > 4000 {
		body = body[:4000] + "…"
	}
	return fmt.Sprintf("%s %s -> %d %s", r.Method, r.URL, r.Status, body)
}

// Text returns the body as a string.
func (r *Response) Text() string { return string(r.Body) }

// JSON decodes the body as a JSON object; the test fails if it is not one.
func (r *Response) JSON(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("body is not a JSON object (%v): %s", err, r)
	}
	return m
}

// Decode decodes the JSON body into v; the test fails on error.
func (r *Response) Decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decoding body into %T: %v: %s", v, err, r)
	}
}

// Data decodes a Kong collection page and returns its "data" array.
func (r *Response) Data(t testing.TB) []map[string]any {
	t.Helper()
	var page struct {
		Data []map[string]any `json:"data"`
	}
	r.Decode(t, &page)
	return page.Data
}

// ConfigIndex parses X-Gatehouse-Config-Index; the test fails if it is
// missing or not a number.
func (r *Response) ConfigIndex(t testing.TB) uint64 {
	t.Helper()
	v := r.Header.Get("X-Gatehouse-Config-Index")
	i, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		t.Fatalf("X-Gatehouse-Config-Index %q is not numeric: %s", v, r)
	}
	return i
}

// Request is a request for Do.
type Request struct {
	Method string
	URL    string
	// Host overrides the Host header.
	Host   string
	Header http.Header
	Body   []byte
	// ContentType sets Content-Type when Body is set.
	ContentType string
}

// Do sends the request and reads the whole response. Transport errors fail
// the test.
func Do(t testing.TB, rq Request) *Response {
	t.Helper()
	r, err := Try(rq)
	if err != nil {
		t.Fatalf("%s %s: %v", rq.Method, rq.URL, err)
	}
	return r
}

// Try is Do without a test: it returns transport errors.
func Try(rq Request) (*Response, error) {
	if rq.Method == "" {
		rq.Method = http.MethodGet
	}
	ctx, cancel := context.WithTimeout(context.Background(), RequestTimeout)
	defer cancel()
	var body io.Reader
	if rq.Body != nil {
		body = bytes.NewReader(rq.Body)
	}
	req, err := http.NewRequestWithContext(ctx, rq.Method, rq.URL, body)
	if err != nil {
		return nil, err
	}
	for k, vs := range rq.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if rq.ContentType != "" {
		req.Header.Set("Content-Type", rq.ContentType)
	}
	if rq.Host != "" {
		req.Host = rq.Host
	}
	resp, err := Client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return nil, fmt.Errorf("reading body: %w", err)
	}
	return &Response{Method: rq.Method, URL: rq.URL, Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

// Get sends a GET; headers are given as name, value pairs.
func Get(t testing.TB, u string, headers ...string) *Response {
	t.Helper()
	return Do(t, Request{Method: http.MethodGet, URL: u, Header: Headers(headers...)})
}

// Method sends a request without a body.
func Method(t testing.TB, method, u string, headers ...string) *Response {
	t.Helper()
	return Do(t, Request{Method: method, URL: u, Header: Headers(headers...)})
}

// Headers builds a header from name, value pairs.
func Headers(kv ...string) http.Header {
	if len(kv)%2 != 0 {
		panic("harness.Headers: odd number of arguments")
	}
	h := http.Header{}
	for i := 0; i < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

// JSON sends body encoded as JSON (Content-Type: application/json). A nil
// body sends no body at all.
func JSON(t testing.TB, method, u string, body any) *Response {
	t.Helper()
	rq := Request{Method: method, URL: u}
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatalf("encoding JSON body: %v", err)
		}
		rq.Body = b
		rq.ContentType = "application/json"
	}
	return Do(t, rq)
}

// Form sends vals as application/x-www-form-urlencoded, like curl --data.
func Form(t testing.TB, method, u string, vals url.Values) *Response {
	t.Helper()
	return Do(t, Request{Method: method, URL: u, Body: []byte(vals.Encode()), ContentType: "application/x-www-form-urlencoded"})
}

// Multipart sends vals as multipart/form-data, like curl --form.
func Multipart(t testing.TB, method, u string, vals url.Values) *Response {
	t.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	keys := make([]string, 0, len(vals))
	for k := range vals {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		for _, v := range vals[k] {
			if err := w.WriteField(k, v); err != nil {
				t.Fatalf("multipart: %v", err)
			}
		}
	}
	if err := w.Close(); err != nil {
		t.Fatalf("multipart: %v", err)
	}
	return Do(t, Request{Method: method, URL: u, Body: buf.Bytes(), ContentType: w.FormDataContentType()})
}

// Raw sends body as-is with the given content type.
func Raw(t testing.TB, method, u, contentType string, body []byte) *Response {
	t.Helper()
	return Do(t, Request{Method: method, URL: u, Body: body, ContentType: contentType})
}

// Encoding is one of the request body encodings the Admin API accepts.
type Encoding string

const (
	EncJSON      Encoding = "json"
	EncForm      Encoding = "form"
	EncMultipart Encoding = "multipart"
)

// Encodings are the three body types Kong's Admin API accepts; Kong's own
// admin tests run each case in all of them.
var Encodings = []Encoding{EncJSON, EncForm, EncMultipart}

// Send sends body in the given encoding. For form and multipart the body is
// flattened Kong-style (see FlattenForm).
func Send(t testing.TB, enc Encoding, method, u string, body map[string]any) *Response {
	t.Helper()
	switch enc {
	case EncJSON:
		if body == nil {
			body = map[string]any{}
		}
		return JSON(t, method, u, body)
	case EncForm:
		vals, err := FlattenForm(body)
		if err != nil {
			t.Fatalf("form-encoding %v: %v", body, err)
		}
		return Form(t, method, u, vals)
	case EncMultipart:
		vals, err := FlattenForm(body)
		if err != nil {
			t.Fatalf("multipart-encoding %v: %v", body, err)
		}
		return Multipart(t, method, u, vals)
	}
	t.Fatalf("unknown encoding %q", enc)
	return nil
}

// FlattenForm turns a JSON-like body into Kong form keys: records become
// dotted keys (config.minute=5), arrays become repeated `key[]` entries
// (paths[]=/a&paths[]=/b), nil becomes "" (which Kong reads as null).
// Empty arrays and arrays of objects cannot be expressed and are errors.
func FlattenForm(body map[string]any) (url.Values, error) {
	vals := url.Values{}
	var walk func(prefix string, v any) error
	walk = func(prefix string, v any) error {
		switch x := v.(type) {
		case nil:
			vals.Add(prefix, "")
		case string:
			vals.Add(prefix, x)
		case bool:
			vals.Add(prefix, strconv.FormatBool(x))
		case int:
			vals.Add(prefix, strconv.Itoa(x))
		case int64:
			vals.Add(prefix, strconv.FormatInt(x, 10))
		case float64:
			vals.Add(prefix, strconv.FormatFloat(x, 'f', -1, 64))
		case map[string]any:
			for k, vv := range x {
				if err := walk(prefix+"."+k, vv); err != nil {
					return err
				}
			}
		default:
			rv := reflect.ValueOf(v)
			if rv.Kind() != reflect.Slice {
				return fmt.Errorf("%s: cannot form-encode %T", prefix, v)
			}
			if rv.Len() == 0 {
				return fmt.Errorf("%s: cannot form-encode an empty array", prefix)
			}
			for i := 0; i < rv.Len(); i++ {
				e := rv.Index(i).Interface()
				switch e.(type) {
				case map[string]any, []any:
					return fmt.Errorf("%s: cannot form-encode nested %T", prefix, e)
				}
				if err := walk(prefix+"[]", e); err != nil {
					return err
				}
			}
		}
		return nil
	}
	for k, v := range body {
		if err := walk(k, v); err != nil {
			return nil, err
		}
	}
	return vals, nil
}

// ExpectStatus fails the test now if r.Status is not want.
func ExpectStatus(t testing.TB, r *Response, want int) {
	t.Helper()
	if r.Status != want {
		t.Fatalf("want status %d, got: %s", want, r)
	}
}

// CheckStatus reports (without stopping) a status other than want.
func CheckStatus(t testing.TB, r *Response, want int) bool {
	t.Helper()
	if r.Status != want {
		t.Errorf("want status %d, got: %s", want, r)
		return false
	}
	return true
}

// JSONEqual compares a JSON body with the expected JSON text, ignoring
// formatting and key order.
func JSONEqual(t testing.TB, r *Response, want string) {
	t.Helper()
	var got, exp any
	if err := json.Unmarshal(r.Body, &got); err != nil {
		t.Errorf("body is not JSON (%v): %s", err, r)
		return
	}
	if err := json.Unmarshal([]byte(want), &exp); err != nil {
		t.Fatalf("bad expected JSON %q: %v", want, err)
	}
	if !reflect.DeepEqual(got, exp) {
		t.Errorf("body mismatch\n got: %s\nwant: %s\n(%s %s -> %d)", r.Body, want, r.Method, r.URL, r.Status)
	}
}

// Field walks a decoded JSON value along a dotted path ("config.minute",
// "healthchecks.active.healthy.http_statuses"). ok is false when a step is
// missing; a present JSON null gives (nil, true).
func Field(v any, path string) (any, bool) {
	cur := v
	for _, p := range strings.Split(path, ".") {
		m, isMap := cur.(map[string]any)
		if !isMap {
			return nil, false
		}
		next, present := m[p]
		if !present {
			return nil, false
		}
		cur = next
	}
	return cur, true
}

// Str returns the string at path, or "" (for messages and ids).
func Str(v any, path string) string {
	x, _ := Field(v, path)
	s, _ := x.(string)
	return s
}

// Eventually polls cond every interval until it returns true or timeout
// passes (at most 1000 tries). cond's message explains the last failure.
func Eventually(t testing.TB, timeout, interval time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	if !Poll(timeout, interval, cond) {
		_, msg := cond()
		t.Fatalf("%s: not reached within %v: %s", what, timeout, msg)
	}
}

// Poll is Eventually without a test; it reports success.
func Poll(timeout, interval time.Duration, cond func() (bool, string)) bool {
	deadline := time.Now().Add(timeout)
	for i := 0; i < 1000; i++ {
		if ok, _ := cond(); ok {
			return true
		}
		if time.Now().Add(interval).After(deadline) {
			return false
		}
		time.Sleep(interval)
	}
	return false
}

// RawResponse is a response read from a raw connection.
type RawResponse struct {
	Status int
	Header http.Header
	Body   []byte
}

// RawHTTP writes a hand-made HTTP/1.1 request to addr (host:port) and reads
// one response. Use it when the exact request bytes matter (hop-by-hop
// headers, dot segments, duplicate headers). The request must include the
// final blank line; "Connection: close" is advisable.
func RawHTTP(t testing.TB, addr, request string) *RawResponse {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(RequestTimeout))
	if _, err := io.WriteString(conn, request); err != nil {
		t.Fatalf("write raw request: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("read raw response: %v\nrequest:\n%s", err, request)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		t.Fatalf("read raw body: %v", err)
	}
	return &RawResponse{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// WaitFreshMinute sleeps until the next minute starts if fewer than need
// remain in the current one, so that a fixed-window rate-limit sequence
// does not straddle a window boundary. It sleeps at most need + 1 s.
func WaitFreshMinute(t testing.TB, need time.Duration) {
	t.Helper()
	now := time.Now()
	next := now.Truncate(time.Minute).Add(time.Minute)
	if next.Sub(now) < need {
		d := next.Sub(now) + 300*time.Millisecond
		t.Logf("waiting %v for a fresh rate-limit minute", d.Round(time.Millisecond))
		time.Sleep(d)
	}
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
