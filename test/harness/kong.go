package harness

import (
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// UUIDRe matches a canonical lowercase-or-uppercase UUID.
var UUIDRe = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// IsUUID reports whether v is a string holding a UUID.
func IsUUID(v any) bool {
	s, ok := v.(string)
	return ok && UUIDRe.MatchString(s)
}

// CheckAdminHeaders checks the headers every Gatehouse Admin API response
// carries: Server: kong/<ver> and a numeric X-Gatehouse-Config-Index; for a
// successful write also X-Gatehouse-Request-Id.
func CheckAdminHeaders(t testing.TB, r *Response, write bool) {
	t.Helper()
	if s := r.Header.Get("Server"); !strings.HasPrefix(s, "kong/") {
		t.Errorf("admin response Server = %q, want kong/<version>: %s %s", s, r.Method, r.URL)
	}
	if v := r.Header.Get("X-Gatehouse-Config-Index"); v == "" {
		t.Errorf("admin response without X-Gatehouse-Config-Index: %s %s", r.Method, r.URL)
	} else if _, err := strconv.ParseUint(v, 10, 64); err != nil {
		t.Errorf("X-Gatehouse-Config-Index %q not numeric: %s %s", v, r.Method, r.URL)
	}
	if write && r.Status < 300 && r.Header.Get("X-Gatehouse-Request-Id") == "" {
		t.Errorf("admin write response without X-Gatehouse-Request-Id: %s %s", r.Method, r.URL)
	}
}

// NotAppended runs a request that must fail and checks that it changed
// nothing: the config index of a following GET / equals the one before.
// It returns the failing response for further checks.
func NotAppended(t testing.TB, n *Node, do func() *Response) *Response {
	t.Helper()
	before := n.ConfigIndex(t)
	r := do()
	if r.Status < 400 {
		t.Errorf("expected a failing request, got: %s", r)
	}
	after := n.ConfigIndex(t)
	if after != before {
		t.Errorf("config index moved from %d to %d after a rejected request: %s", before, after, r)
	}
	return r
}

// CheckKongError checks a Kong DAO error body: status, code, name and (if
// not empty) message.
func CheckKongError(t testing.TB, r *Response, status int, code int, name, message string) map[string]any {
	t.Helper()
	if r.Status != status {
		t.Errorf("want status %d, got: %s", status, r)
	}
	m := map[string]any{}
	if err := jsonUnmarshal(r.Body, &m); err != nil {
		t.Errorf("error body is not a JSON object: %s", r)
		return m
	}
	if c, _ := m["code"].(float64); int(c) != code {
		t.Errorf("want code %d, got %v: %s", code, m["code"], r)
	}
	if name != "" && m["name"] != name {
		t.Errorf("want name %q, got %v: %s", name, m["name"], r)
	}
	if message != "" && m["message"] != message {
		t.Errorf("want message %q, got %v", message, m["message"])
	}
	return m
}

// CheckMessage checks a plain {"message": …} body (Kong's non-DAO errors
// and proxy errors, which may carry extra keys such as request_id).
func CheckMessage(t testing.TB, r *Response, status int, message string) {
	t.Helper()
	if r.Status != status {
		t.Errorf("want status %d, got: %s", status, r)
	}
	m := map[string]any{}
	if err := jsonUnmarshal(r.Body, &m); err != nil {
		t.Errorf("body is not a JSON object: %s", r)
		return
	}
	if m["message"] != message {
		t.Errorf("want message %q, got %q (%s)", message, m["message"], r)
	}
}

// Proxied reports whether a proxy response came from an upstream (it
// carries X-Kong-Upstream-Latency) rather than from the gateway itself.
func Proxied(h http.Header) bool { return h.Get("X-Kong-Upstream-Latency") != "" }
