package e2e

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/test/echo"
	"github.com/gatehouse-gw/gatehouse/test/harness"
)

// TestRequestTransformer: Kong's request-transformer rewrites what the
// upstream receives, in Kong's order, for headers, query string, form and
// JSON bodies, method and path; and refuses Lua templates it cannot run.
func TestRequestTransformer(t *testing.T) {
	n := harness.Start(t, harness.Options{NodeID: "request-transformer"})
	up := echo.StartT(t, "echo-rt")
	a := admin{n}
	a.create(t, "/services", map[string]any{"name": "svc", "url": up.URL})
	a.create(t, "/services/svc/routes", map[string]any{"name": "rt", "paths": []string{"/rt"}})

	r := a.json(t, http.MethodPost, "/routes/rt/plugins", map[string]any{"name": "request-transformer",
		"config": map[string]any{"add": map[string]any{"headers": []string{"x-user:$(headers.user)"}}}})
	harness.ExpectStatus(t, r, http.StatusBadRequest)
	if !strings.Contains(r.String(), "templates") {
		t.Errorf("a Lua template is refused without saying why: %s", r)
	}
	harness.ExpectStatus(t, a.json(t, http.MethodPost, "/routes/rt/plugins", map[string]any{"name": "request-transformer",
		"config": map[string]any{"rename": map[string]any{"headers": []string{"no-colon"}}}}), http.StatusBadRequest)

	a.create(t, "/routes/rt/plugins", map[string]any{"name": "request-transformer", "config": map[string]any{
		"http_method": "POST",
		"remove":      map[string]any{"headers": []string{"x-drop"}, "querystring": []string{"drop"}, "body": []string{"secret"}},
		"rename":      map[string]any{"headers": []string{"x-old:x-new"}, "querystring": []string{"old:new"}, "body": []string{"a:b"}},
		"replace": map[string]any{"headers": []string{"x-keep:replaced", "x-absent:never"}, "querystring": []string{"q:replaced"},
			"body": []string{"n:42"}, "uri": "/rewritten"},
		"add": map[string]any{"headers": []string{"x-added:yes", "x-keep:not-this"}, "querystring": []string{"added:1"},
			"body": []string{"flag:true"}},
		"append": map[string]any{"headers": []string{"x-multi:two"}, "querystring": []string{"multi:two"}, "body": []string{"list:x"}},
	}})

	body := `{"secret":"s","a":1,"n":"7","keep":"k"}`
	var er *echo.Request
	harness.Eventually(t, 5*time.Second, 50*time.Millisecond, "transformer active", func() (bool, string) {
		resp, err := harness.Try(harness.Request{Method: http.MethodGet, URL: n.Proxy("/rt?drop=1&old=v&q=orig&multi=one"),
			Header: harness.Headers("X-Drop", "1", "X-Old", "o", "X-Keep", "k", "X-Multi", "one"),
			Body:   []byte(body), ContentType: "application/json"})
		if err != nil {
			return false, err.Error()
		}
		if resp.Status != 200 {
			return false, resp.String()
		}
		er = echo.Parse(t, resp.Body)
		return er.Method == "POST", resp.String()
	})
	if er.Path != "/rewritten" {
		t.Errorf("upstream path %q, want /rewritten", er.Path)
	}
	for h, want := range map[string]string{"X-Drop": "", "X-Old": "", "X-New": "o", "X-Keep": "replaced", "X-Absent": "",
		"X-Added": "yes", "X-Multi": "one, two"} {
		if got := er.Header(h); got != want {
			t.Errorf("upstream header %s = %q, want %q", h, got, want)
		}
	}
	q, _ := url.ParseQuery(er.RawQuery)
	for k, want := range map[string]string{"drop": "", "old": "", "new": "v", "q": "replaced", "added": "1"} {
		if got := q.Get(k); got != want {
			t.Errorf("upstream query %s = %q, want %q (%s)", k, got, want, er.RawQuery)
		}
	}
	if got := q["multi"]; len(got) != 2 || got[1] != "two" {
		t.Errorf("upstream query multi = %v, want [one two]", got)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(er.Body), &got); err != nil {
		t.Fatalf("upstream body %q: %v", er.Body, err)
	}
	if _, has := got["secret"]; has || got["b"] != 1.0 || got["n"] != "42" || got["flag"] != "true" || got["keep"] != "k" {
		t.Errorf("upstream JSON body %v", got)
	}
	if l, _ := got["list"].([]any); len(l) != 1 || l[0] != "x" {
		t.Errorf("appended body list %v", got["list"])
	}

	// A form body.
	resp := harness.Form(t, http.MethodPost, n.Proxy("/rt"), url.Values{"secret": {"s"}, "a": {"1"}, "n": {"7"}})
	if harness.CheckStatus(t, resp, 200) {
		e := echo.Parse(t, resp.Body)
		form, _ := url.ParseQuery(e.Body)
		if form.Has("secret") || form.Get("b") != "1" || form.Get("n") != "42" || form.Get("flag") != "true" || form.Get("list") != "x" {
			t.Errorf("upstream form body %q", e.Body)
		}
	}
}
