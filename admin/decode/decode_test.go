package decode

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"
)

const (
	ctJSON = "application/json"
	ctForm = "application/x-www-form-urlencoded"
)

// mustJSON parses a JSON literal used as an expected value.
func mustJSON(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("bad expectation %s: %v", s, err)
	}
	return m
}

type bodyCase struct {
	name string
	ct   string
	body string
	want string // JSON object, when err is nil
	err  error
}

func runCases(t *testing.T, cases []bodyCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Body(tc.ct, strings.NewReader(tc.body), 1<<20)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("Body(%q, %q) error = %v, want %v", tc.ct, tc.body, err, tc.err)
				}
				if got != nil {
					t.Fatalf("Body returned %v alongside an error", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Body(%q, %q) error = %v", tc.ct, tc.body, err)
			}
			if want := mustJSON(t, tc.want); !reflect.DeepEqual(got, want) {
				t.Fatalf("Body(%q, %q)\n got %#v\nwant %#v", tc.ct, tc.body, got, want)
			}
		})
	}
}

func TestEmptyBodies(t *testing.T) {
	runCases(t, []bodyCase{
		{name: "no content type", ct: "", body: "", want: `{}`},
		{name: "empty form", ct: ctForm, body: "", want: `{}`},
		{name: "empty multipart", ct: "multipart/form-data; boundary=x", body: "", want: `{}`},
		{name: "empty with unsupported type", ct: "text/plain", body: "", want: `{}`},
		{name: "empty json", ct: ctJSON, body: "", err: ErrBadJSON},
		{name: "blank json", ct: ctJSON, body: " \n\t", err: ErrBadJSON},
		{name: "form of separators only", ct: ctForm, body: "&&&", want: `{}`},
	})
	got, err := Body("", nil, 10)
	if err != nil || got == nil || len(got) != 0 {
		t.Fatalf("Body with nil reader = %v, %v", got, err)
	}
}

func TestJSON(t *testing.T) {
	runCases(t, []bodyCase{
		{name: "object", ct: ctJSON, body: `{"name":"s1","port":8080,"tags":["a","b"],"tls":true,"x":null,"c":{"d":1.5}}`,
			want: `{"name":"s1","port":8080,"tags":["a","b"],"tls":true,"x":null,"c":{"d":1.5}}`},
		{name: "charset param", ct: "application/json; charset=utf-8", body: `{"a":"b"}`, want: `{"a":"b"}`},
		{name: "upper case type", ct: "Application/JSON", body: `{"a":"b"}`, want: `{"a":"b"}`},
		{name: "bad params fall back", ct: "application/json; charset", body: `{"a":"b"}`, want: `{"a":"b"}`},
		{name: "+json suffix", ct: "application/merge-patch+json", body: `{"a":null}`, want: `{"a":null}`},
		{name: "empty object", ct: ctJSON, body: `{}`, want: `{}`},
		{name: "surrounding whitespace", ct: ctJSON, body: " {\"a\":1}\n", want: `{"a":1}`},
		{name: "dotted keys stay literal", ct: ctJSON, body: `{"a.b":1}`, want: `{"a.b":1}`},
		{name: "brackets in strings do not count", ct: ctJSON, body: `{"a":"` + strings.Repeat("[{", 100) + `\"]"}`,
			want: `{"a":"` + strings.Repeat("[{", 100) + `\"]"}`},
		{name: "malformed", ct: ctJSON, body: `{"a":`, err: ErrBadJSON},
		{name: "trailing garbage", ct: ctJSON, body: `{"a":1} x`, err: ErrBadJSON},
		{name: "two objects", ct: ctJSON, body: `{}{}`, err: ErrBadJSON},
		{name: "array", ct: ctJSON, body: `[1,2]`, err: ErrBadJSON},
		{name: "string", ct: ctJSON, body: `"x"`, err: ErrBadJSON},
		{name: "null", ct: ctJSON, body: `null`, err: ErrBadJSON},
		{name: "number", ct: ctJSON, body: `1`, err: ErrBadJSON},
		{name: "number out of range", ct: ctJSON, body: `{"a":1e999}`, err: ErrBadJSON},
		{name: "form body sent as json", ct: ctJSON, body: `name=x`, err: ErrBadJSON},
	})
}

func TestJSONNumbersAreFloat64(t *testing.T) {
	got, err := Body(ctJSON, strings.NewReader(`{"n":3,"f":0.5}`), 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := got["n"].(float64); !ok {
		t.Fatalf("n is %T, want float64", got["n"])
	}
}

func nested(depth int) string {
	// depth containers: one object, then arrays.
	return `{"a":` + strings.Repeat("[", depth-1) + strings.Repeat("]", depth-1) + `}`
}

func TestJSONDepth(t *testing.T) {
	if _, err := Body(ctJSON, strings.NewReader(nested(MaxDepth)), 0); err != nil {
		t.Fatalf("depth %d: %v", MaxDepth, err)
	}
	if _, err := Body(ctJSON, strings.NewReader(nested(MaxDepth+1)), 0); err != ErrBadJSON {
		t.Fatalf("depth %d: err = %v, want ErrBadJSON", MaxDepth+1, err)
	}
	deepObj := strings.Repeat(`{"a":`, MaxDepth+1) + "1" + strings.Repeat("}", MaxDepth+1)
	if _, err := Body(ctJSON, strings.NewReader(deepObj), 0); err != ErrBadJSON {
		t.Fatalf("deep objects: err = %v, want ErrBadJSON", err)
	}
}

func TestForm(t *testing.T) {
	runCases(t, []bodyCase{
		{name: "flat", ct: ctForm, body: "name=s1&host=example.com&port=80",
			want: `{"name":"s1","host":"example.com","port":"80"}`},
		{name: "charset param", ct: ctForm + "; charset=UTF-8", body: "a=b", want: `{"a":"b"}`},
		{name: "escapes and plus", ct: ctForm, body: "a=hello+world%21&b%5Bc%5D=%2Fx", want: `{"a":"hello world!","b":{"c":"/x"}}`},
		{name: "no equals sign", ct: ctForm, body: "a&b=", want: `{"a":"","b":""}`},
		{name: "value with equals", ct: ctForm, body: "a=b=c", want: `{"a":"b=c"}`},
		{name: "semicolon is literal", ct: ctForm, body: "a=1;b=2", want: `{"a":"1;b=2"}`},
		{name: "dotted", ct: ctForm, body: "a.b.c=v", want: `{"a":{"b":{"c":"v"}}}`},
		{name: "bracketed", ct: ctForm, body: "a[b][c]=v", want: `{"a":{"b":{"c":"v"}}}`},
		{name: "kong plugin example", ct: ctForm, body: "name=rate-limiting&config.minute=5&config.policy=local",
			want: `{"name":"rate-limiting","config":{"minute":"5","policy":"local"}}`},
		{name: "mixed dot and bracket", ct: ctForm, body: "config.second=1&config[minute]=2",
			want: `{"config":{"second":"1","minute":"2"}}`},
		{name: "append", ct: ctForm, body: "paths[]=/x&paths[]=/y", want: `{"paths":["/x","/y"]}`},
		{name: "single append", ct: ctForm, body: "paths[]=/mock", want: `{"paths":["/mock"]}`},
		{name: "one-based index", ct: ctForm, body: "paths[1]=/x&paths[2]=/y", want: `{"paths":["/x","/y"]}`},
		{name: "zero-based index", ct: ctForm, body: "paths[0]=/x&paths[1]=/y", want: `{"paths":["/x","/y"]}`},
		{name: "index order wins", ct: ctForm, body: "paths[2]=/y&paths[1]=/x", want: `{"paths":["/x","/y"]}`},
		{name: "numeric index order", ct: ctForm, body: "a[10]=c&a[9]=b&a[1]=a", want: `{"a":["a","b","c"]}`},
		{name: "holes closed", ct: ctForm, body: "a[1]=x&a[5]=y", want: `{"a":["x","y"]}`},
		{name: "huge index", ct: ctForm, body: "a[99999999999999999999999]=y&a[1]=x", want: `{"a":["x","y"]}`},
		{name: "leading zeros", ct: ctForm, body: "a[01]=x&a[2]=y", want: `{"a":["x","y"]}`},
		{name: "repeated key", ct: ctForm, body: "hosts=a&hosts=b&hosts=c", want: `{"hosts":["a","b","c"]}`},
		{name: "repeated key order kept", ct: ctForm, body: "hosts=c&x=1&hosts=a", want: `{"hosts":["c","a"],"x":"1"}`},
		{name: "repeated key mixed with append", ct: ctForm, body: "hosts=a&hosts[]=b&hosts=c", want: `{"hosts":["a","b","c"]}`},
		{name: "indexed before plain", ct: ctForm, body: "hosts=b&hosts[1]=a", want: `{"hosts":["a","b"]}`},
		{name: "map key in brackets", ct: ctForm, body: "headers[x-foo]=bar&headers[x-bar]=baz",
			want: `{"headers":{"x-foo":"bar","x-bar":"baz"}}`},
		{name: "dots inside brackets literal", ct: ctForm, body: "config.headers[x.y]=1", want: `{"config":{"headers":{"x.y":"1"}}}`},
		{name: "numeric and named brackets make a map", ct: ctForm, body: "a[x]=1&a[2]=2", want: `{"a":{"x":"1","2":"2"}}`},
		{name: "dotted numeric is a name", ct: ctForm, body: "a.1=x", want: `{"a":{"1":"x"}}`},
		{name: "array of maps", ct: ctForm, body: "t[1][host]=a&t[2][host]=b&t[1][port]=1",
			want: `{"t":[{"host":"a","port":"1"},{"host":"b"}]}`},
		{name: "append maps", ct: ctForm, body: "t[][host]=a&t[][host]=b", want: `{"t":[{"host":"a"},{"host":"b"}]}`},
		{name: "nested arrays", ct: ctForm, body: "a[1][]=x&a[1][]=y&a[2][]=z", want: `{"a":[["x","y"],["z"]]}`},
		{name: "repeated index", ct: ctForm, body: "a[1]=x&a[1]=y", want: `{"a":[["x","y"]]}`},
		{name: "foreign key", ct: ctForm, body: "service.id=123&paths[]=/", want: `{"service":{"id":"123"},"paths":["/"]}`},
		{name: "leading dot literal", ct: ctForm, body: ".a=1", want: `{".a":"1"}`},
		{name: "trailing dot literal", ct: ctForm, body: "a.=1", want: `{"a.":"1"}`},
		{name: "double dot literal", ct: ctForm, body: "a..b=1", want: `{"a..b":"1"}`},
		{name: "unclosed bracket literal", ct: ctForm, body: "a[b=1", want: `{"a[b":"1"}`},
		{name: "junk after bracket literal", ct: ctForm, body: "a[b]c=1", want: `{"a[b]c":"1"}`},
		{name: "leading bracket literal", ct: ctForm, body: "[a]=1", want: `{"[a]":"1"}`},
		{name: "empty key", ct: ctForm, body: "=1", want: `{"":"1"}`},
		{name: "stray close bracket", ct: ctForm, body: "a]=1", want: `{"a]":"1"}`},
		{name: "conflict value then object", ct: ctForm, body: "a=1&a.b=2", err: ErrBadForm},
		{name: "conflict object then value", ct: ctForm, body: "a.b=2&a=1", err: ErrBadForm},
		{name: "conflict deep", ct: ctForm, body: "a.b=1&a.b.c=2", err: ErrBadForm},
		{name: "conflict append and name", ct: ctForm, body: "a[]=1&a[b]=2", err: ErrBadForm},
		{name: "conflict dotted and indexed", ct: ctForm, body: "a.1=x&a[1]=y&a[z]=w", err: ErrBadForm},
		{name: "conflict inside element", ct: ctForm, body: "a[1]=x&a[1][b]=y", err: ErrBadForm},
		{name: "bad escape", ct: ctForm, body: "a=%zz", err: ErrBadForm},
		{name: "bad escape in key", ct: ctForm, body: "%=1", err: ErrBadForm},
		{name: "too deep", ct: ctForm, body: "a" + strings.Repeat("[b]", MaxDepth) + "=1", err: ErrBadForm},
	})
	ok := "a" + strings.Repeat("[b]", MaxDepth-1) + "=1"
	if _, err := Body(ctForm, strings.NewReader(ok), 0); err != nil {
		t.Fatalf("key with %d segments: %v", MaxDepth, err)
	}
}

func TestBadFormMessage(t *testing.T) {
	_, err := Body(ctForm, strings.NewReader("a=1&a.b=2"), 0)
	if err == nil || !strings.HasPrefix(err.Error(), "invalid form body") {
		t.Fatalf("err = %v", err)
	}
}

func TestTooManyArgs(t *testing.T) {
	fields := func(n int) string {
		parts := make([]string, n)
		for i := range parts {
			parts[i] = fmt.Sprintf("k%d=v", i)
		}
		return strings.Join(parts, "&")
	}
	got, err := Body(ctForm, strings.NewReader(fields(MaxArgs)), 0)
	if err != nil || len(got) != MaxArgs {
		t.Fatalf("%d fields: len=%d err=%v", MaxArgs, len(got), err)
	}
	if _, err := Body(ctForm, strings.NewReader(fields(MaxArgs+1)), 0); err != ErrTooManyArgs {
		t.Fatalf("%d fields: err = %v, want ErrTooManyArgs", MaxArgs+1, err)
	}
	// Repeats of one key count too.
	if _, err := Body(ctForm, strings.NewReader(strings.Repeat("a=1&", MaxArgs+1)), 0); err != ErrTooManyArgs {
		t.Fatalf("repeated key: err = %v, want ErrTooManyArgs", err)
	}

	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for i := 0; i <= MaxArgs; i++ {
		mw.WriteField("a", "1")
	}
	mw.Close()
	if _, err := Body(mw.FormDataContentType(), &buf, 0); err != ErrTooManyArgs {
		t.Fatalf("multipart: err = %v, want ErrTooManyArgs", err)
	}

	v := url.Values{}
	for i := 0; i <= MaxArgs; i++ {
		v.Add("a", "1")
	}
	if _, err := Form(v); err != ErrTooManyArgs {
		t.Fatalf("Form: err = %v, want ErrTooManyArgs", err)
	}
}

func TestUnsupported(t *testing.T) {
	runCases(t, []bodyCase{
		{name: "text/plain", ct: "text/plain", body: "hello", err: ErrUnsupported},
		{name: "xml", ct: "application/xml", body: "<a/>", err: ErrUnsupported},
		{name: "no content type with body", ct: "", body: `{"a":1}`, err: ErrUnsupported},
		{name: "garbage content type", ct: ";;;", body: "x", err: ErrUnsupported},
		{name: "json-ish prefix", ct: "application/jsonx", body: "{}", err: ErrUnsupported},
	})
}

func TestTooLarge(t *testing.T) {
	body := `{"name":"abcdef"}` // 17 bytes
	if _, err := Body(ctJSON, strings.NewReader(body), int64(len(body))); err != nil {
		t.Fatalf("exactly maxBytes: %v", err)
	}
	for _, ct := range []string{ctJSON, ctForm, "text/plain", ""} {
		if _, err := Body(ct, strings.NewReader(body), int64(len(body)-1)); err != ErrTooLarge {
			t.Fatalf("%q over maxBytes: err = %v, want ErrTooLarge", ct, err)
		}
	}
	// The limit holds without reading an endless body.
	if _, err := Body(ctJSON, endless{}, 1024); err != ErrTooLarge {
		t.Fatalf("endless body: err = %v, want ErrTooLarge", err)
	}
	// http.MaxBytesReader's error is reported as ErrTooLarge as well.
	rec := httptest.NewRecorder()
	r := http.MaxBytesReader(rec, io.NopCloser(strings.NewReader(body)), 4)
	if _, err := Body(ctJSON, r, 0); err != ErrTooLarge {
		t.Fatalf("MaxBytesReader: err = %v, want ErrTooLarge", err)
	}
}

type endless struct{}

func (endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = ' '
	}
	return len(p), nil
}

type failing struct{}

func (failing) Read([]byte) (int, error) { return 0, errors.New("connection reset") }

func TestReadError(t *testing.T) {
	_, err := Body(ctJSON, failing{}, 0)
	if err == nil || errors.Is(err, ErrBadJSON) || !strings.Contains(err.Error(), "connection reset") {
		t.Fatalf("err = %v", err)
	}
}

func TestMultipart(t *testing.T) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	mw.WriteField("name", "svc")
	mw.WriteField("config.minute", "5")
	mw.WriteField("config[policy]", "local")
	mw.WriteField("paths[]", "/a")
	mw.WriteField("paths[]", "/b")
	mw.WriteField("hosts", "x")
	mw.WriteField("hosts", "y")
	fw, err := mw.CreateFormFile("cert", "cert.pem")
	if err != nil {
		t.Fatal(err)
	}
	fw.Write([]byte("-----BEGIN CERTIFICATE-----\nMII\n"))
	mw.Close()

	got, err := Body(mw.FormDataContentType(), &buf, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	want := mustJSON(t, `{"name":"svc","config":{"minute":"5","policy":"local"},"paths":["/a","/b"],
		"hosts":["x","y"],"cert":"-----BEGIN CERTIFICATE-----\nMII\n"}`)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %#v\nwant %#v", got, want)
	}
}

func TestMultipartRaw(t *testing.T) {
	const ct = "multipart/form-data; boundary=XyZ"
	runCases(t, []bodyCase{
		{name: "hand written", ct: ct,
			body: "--XyZ\r\nContent-Disposition: form-data; name=\"a.b\"\r\n\r\n1\r\n" +
				"--XyZ\r\nContent-Disposition: form-data; name=\"c[]\"\r\n\r\n\r\n--XyZ--\r\n",
			want: `{"a":{"b":"1"},"c":[""]}`},
		{name: "nameless part skipped", ct: ct,
			body: "--XyZ\r\nContent-Type: text/plain\r\n\r\nzzz\r\n--XyZ--\r\n", want: `{}`},
		{name: "closing delimiter only", ct: ct, body: "--XyZ--\r\n", want: `{}`},
		{name: "conflict", ct: ct,
			body: "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n" +
				"--XyZ\r\nContent-Disposition: form-data; name=\"a.b\"\r\n\r\n2\r\n--XyZ--\r\n",
			err: ErrBadForm},
		{name: "unterminated part", ct: ct,
			body: "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1", err: ErrBadForm},
		{name: "no boundary in body", ct: ct, body: "garbage", err: ErrBadForm},
		{name: "no boundary param", ct: "multipart/form-data", body: "--XyZ--\r\n", err: ErrBadForm},
	})
}

func TestMultipartRespectsMaxBytes(t *testing.T) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fw, _ := mw.CreateFormFile("f", "big.bin")
	fw.Write(bytes.Repeat([]byte("x"), 4096))
	mw.Close()
	if _, err := Body(mw.FormDataContentType(), &buf, 1024); err != ErrTooLarge {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
}

func TestFormValues(t *testing.T) {
	got, err := Form(url.Values{
		"tags":          {"b", "a"},
		"size":          {"10"},
		"config.minute": {"5"},
		"config[hour]":  {"7"},
		"paths[2]":      {"/y"},
		"paths[1]":      {"/x"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := mustJSON(t, `{"tags":["b","a"],"size":"10","config":{"minute":"5","hour":"7"},"paths":["/x","/y"]}`)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %#v\nwant %#v", got, want)
	}
	if _, err := Form(url.Values{"a": {"1"}, "a.b": {"2"}}); !errors.Is(err, ErrBadForm) {
		t.Fatalf("conflict: err = %v", err)
	}
	if got, err := Form(nil); err != nil || got == nil || len(got) != 0 {
		t.Fatalf("Form(nil) = %v, %v", got, err)
	}
}

func TestParseKey(t *testing.T) {
	tests := []struct {
		key  string
		want []segment
	}{
		{"a", []segment{{segName, "a"}}},
		{"a.b", []segment{{segName, "a"}, {segName, "b"}}},
		{"a[b].c[]", []segment{{segName, "a"}, {segName, "b"}, {segName, "c"}, {kind: segAppend}}},
		{"a[007]", []segment{{segName, "a"}, {segIndex, "7"}}},
		{"a[000]", []segment{{segName, "a"}, {segIndex, "0"}}},
		{"a[x.y][z]", []segment{{segName, "a"}, {segName, "x.y"}, {segName, "z"}}},
		{"a[[b]", []segment{{segName, "a"}, {segName, "[b"}}},
		{"a[b]]", []segment{{segName, "a[b]]"}}},
		{"a.", []segment{{segName, "a."}}},
		{"", []segment{{segName, ""}}},
	}
	for _, tt := range tests {
		if got := parseKey(tt.key); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("parseKey(%q) = %v, want %v", tt.key, got, tt.want)
		}
	}
}
