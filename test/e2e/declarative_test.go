package e2e

import (
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/test/echo"
	"github.com/gatehouse-gw/gatehouse/test/harness"
)

// kongYAML is a kong.yaml as decK writes one: nesting, a given id, names
// as references, a credential, an upstream with a target, a global plugin.
const kongYAML = `_format_version: "3.0"
services:
- name: orders
  id: 0b0c2b3e-1111-4a4a-8b8b-000000000001
  host: 127.0.0.1
  port: %d
  protocol: http
  routes:
  - name: orders-route
    paths: [/orders]
    plugins:
    - name: key-auth
  plugins:
  - name: rate-limiting
    config:
      minute: 100
      policy: local
- name: billing
  url: http://billing.internal:8080/v1
consumers:
- username: alice
  keyauth_credentials:
  - key: alice-secret-key
  basicauth_credentials:
  - username: alice-login
    password: alice-password
upstreams:
- name: pool
  targets:
  - target: 127.0.0.1:9001
    weight: 50
routes:
- name: loose
  paths: [/loose]
  service: billing
plugins:
- name: proxy-cache
  config:
    strategy: memory
`

func TestDeclarativeConfigRoundTrip(t *testing.T) {
	n := harness.Start(t, harness.Options{NodeID: "declarative"})
	up := echo.StartT(t, "echo-orders")
	a := admin{n}
	doc := fmt.Sprintf(kongYAML, up.Port)

	r := harness.Raw(t, http.MethodPost, n.Admin("/config"), "application/yaml", []byte(doc))
	harness.ExpectStatus(t, r, http.StatusCreated)
	loaded := r.JSON(t)
	if got := len(loaded["services"].([]any)); got != 2 {
		t.Errorf("POST /config answered %d services, want 2: %s", got, r.Text())
	}
	index := r.ConfigIndex(t)

	// The proxy serves it: key-auth on the nested route, with the
	// nested credential.
	harness.Eventually(t, 5*time.Second, 20*time.Millisecond, "route /orders with key-auth", func() (bool, string) {
		r := harness.Get(t, n.Proxy("/orders"), "apikey", "alice-secret-key")
		return r.Status == 200, r.String()
	})
	if r := harness.Get(t, n.Proxy("/orders")); r.Status != 401 {
		t.Errorf("/orders without a key: %s, want 401", r)
	}

	// A dump gives back the document: the given id, the nesting, every
	// field as written.
	dump := a.get(t, "/config").JSON(t)
	svc := findNamed(t, dump["services"], "name", "orders")
	if svc["id"] != "0b0c2b3e-1111-4a4a-8b8b-000000000001" || svc["port"] != float64(up.Port) {
		t.Errorf("dumped service %v", svc)
	}
	route := findNamed(t, svc["routes"], "name", "orders-route")
	if p, _ := route["paths"].([]any); len(p) != 1 || p[0] != "/orders" {
		t.Errorf("dumped nested route %v", route)
	}
	if pl := findNamed(t, route["plugins"], "name", "key-auth"); pl == nil {
		t.Errorf("route plugin missing from the dump")
	}
	if pl := findNamed(t, svc["plugins"], "name", "rate-limiting"); harness.Str(pl, "config.policy") != "local" {
		t.Errorf("service plugin dumped as %v", pl)
	}
	alice := findNamed(t, dump["consumers"], "username", "alice")
	if k := findNamed(t, alice["keyauth_credentials"], "key", "alice-secret-key"); k == nil {
		t.Errorf("credential missing from the dump: %v", alice)
	}
	// A basic-auth password is stored (and dumped) hashed, as Kong does.
	if b := findNamed(t, alice["basicauth_credentials"], "username", "alice-login"); b == nil ||
		len(harness.Str(b, "password")) != 40 || b["password"] == "alice-password" {
		t.Errorf("basic-auth credential dumped as %v", b)
	}
	pool := findNamed(t, dump["upstreams"], "name", "pool")
	if tg := findNamed(t, pool["targets"], "target", "127.0.0.1:9001"); tg["weight"] != 50.0 {
		t.Errorf("target dumped as %v", tg)
	}
	// A top-level route naming its service comes back nested in it.
	billing := findNamed(t, dump["services"], "name", "billing")
	if loose := findNamed(t, billing["routes"], "name", "loose"); loose["service"] != nil {
		t.Errorf("nested route still carries its service: %v", loose)
	}
	if billing["host"] != "billing.internal" || billing["path"] != "/v1" {
		t.Errorf("service url not expanded: %v", billing)
	}

	// The same document again changes nothing and appends nothing; with
	// check_hash=1 the answer is 304.
	r = harness.Raw(t, http.MethodPost, n.Admin("/config"), "application/yaml", []byte(doc))
	harness.ExpectStatus(t, r, http.StatusCreated)
	if got := r.ConfigIndex(t); got != index {
		t.Errorf("re-applying the same document moved the index from %d to %d", index, got)
	}
	// So does the dump, posted back: a dump is a document.
	r = harness.Raw(t, http.MethodPost, n.Admin("/config"), "application/json", a.get(t, "/config").Body)
	harness.ExpectStatus(t, r, http.StatusCreated)
	if got := r.ConfigIndex(t); got != index {
		t.Errorf("posting the dump back moved the index from %d to %d", index, got)
	}
	r = harness.Raw(t, http.MethodPost, n.Admin("/config?check_hash=1"), "application/yaml", []byte(doc))
	harness.ExpectStatus(t, r, http.StatusNotModified)
	// Generated ids are stable: the consumer keeps its id.
	if again := findNamed(t, a.get(t, "/config").JSON(t)["consumers"], "username", "alice"); again["id"] != alice["id"] {
		t.Errorf("consumer id changed across applies: %v then %v", alice["id"], again["id"])
	}

	// A smaller document (as JSON) replaces everything: what it lacks goes.
	small := fmt.Sprintf(`{"_format_version":"3.0","services":[{"name":"orders","id":"0b0c2b3e-1111-4a4a-8b8b-000000000001","host":"127.0.0.1","port":%d,"routes":[{"name":"orders-route","paths":["/orders"]}]}]}`, up.Port)
	r = harness.Raw(t, http.MethodPost, n.Admin("/config"), "application/json", []byte(small))
	harness.ExpectStatus(t, r, http.StatusCreated)
	dump = a.get(t, "/config").JSON(t)
	if dump["consumers"] != nil || dump["upstreams"] != nil || dump["plugins"] != nil || len(dump["services"].([]any)) != 1 {
		t.Errorf("after a smaller document the config is %v", dump)
	}
	harness.Eventually(t, 5*time.Second, 20*time.Millisecond, "route /orders without key-auth", func() (bool, string) {
		r := harness.Get(t, n.Proxy("/orders"))
		return r.Status == 200, r.String()
	})
}

func TestDeclarativeConfigInvalidChangesNothing(t *testing.T) {
	n := harness.Start(t, harness.Options{NodeID: "declarative-bad"})
	a := admin{n}
	a.create(t, "/services", map[string]any{"name": "keep-me", "url": "http://127.0.0.1:1"})
	cases := []struct {
		name, doc, want string
		flatField       string
	}{
		{"unknown field", `{"_format_version":"3.0","services":[{"name":"s","host":"h","colour":"red"}]}`, "unknown field", "colour"},
		{"bad reference", `{"_format_version":"3.0","routes":[{"name":"r","paths":["/x"],"service":"nowhere"}]}`, "nowhere", "service"},
		{"duplicate name", `{"_format_version":"3.0","services":[{"name":"twin","host":"a"},{"name":"twin","host":"b"}]}`, "already declared", ""},
		{"no format version", `{"services":[]}`, "_format_version", ""},
		{"not a document", `services: [`, "failed parsing", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := harness.NotAppended(t, n, func() *harness.Response {
				return harness.Raw(t, http.MethodPost, n.Admin("/config?flatten_errors=1"), "application/json", []byte(c.doc))
			})
			body := r.JSON(t)
			if r.Status != 400 || body["code"] != 14.0 || body["name"] != "invalid declarative configuration" {
				t.Errorf("want Kong's 400 declarative error, got %s", r)
			}
			if !strings.Contains(r.Text(), c.want) {
				t.Errorf("error does not mention %q: %s", c.want, r.Text())
			}
			if c.flatField != "" {
				flat, _ := body["flattened_errors"].([]any)
				got := ""
				if len(flat) > 0 {
					errs, _ := flat[0].(map[string]any)["errors"].([]any)
					if len(errs) > 0 {
						got, _ = errs[0].(map[string]any)["field"].(string)
					}
				}
				if got != c.flatField {
					t.Errorf("flattened error names field %q, want %q: %s", got, c.flatField, r.Text())
				}
			}
		})
	}
	if r := a.get(t, "/services/keep-me"); r.Status != 200 {
		t.Errorf("an invalid document removed an existing service: %s", r)
	}
}

// findNamed returns the element of list whose field equals value.
func findNamed(t *testing.T, list any, field, value string) map[string]any {
	t.Helper()
	l, _ := list.([]any)
	for _, e := range l {
		if m, ok := e.(map[string]any); ok && m[field] == value {
			return m
		}
	}
	t.Errorf("no element with %s=%q in %v", field, value, list)
	return map[string]any{}
}

// TestDeclarativeSelectTags: with _info.select_tags a document owns only
// the entities carrying its tags, so two teams can each apply their own
// file without deleting the other's.
func TestDeclarativeSelectTags(t *testing.T) {
	n := harness.Start(t, harness.Options{NodeID: "select-tags"})
	a := admin{n}
	a.create(t, "/services", map[string]any{"name": "untagged", "url": "http://127.0.0.1:9/"})
	apply := func(doc string) {
		t.Helper()
		r := harness.Raw(t, http.MethodPost, n.Admin("/config"), "application/yaml", []byte(doc))
		harness.ExpectStatus(t, r, http.StatusCreated)
	}
	apply(`_format_version: "3.0"
_info: {select_tags: [team-a]}
services:
- {name: a1, url: "http://127.0.0.1:9/a1"}
- {name: a2, url: "http://127.0.0.1:9/a2"}
`)
	apply(`_format_version: "3.0"
_info: {select_tags: [team-b]}
services:
- {name: b1, url: "http://127.0.0.1:9/b1"}
`)
	names := func() map[string][]any {
		out := map[string][]any{}
		for _, s := range a.get(t, "/services").Data(t) {
			tags, _ := s["tags"].([]any)
			out[s["name"].(string)] = tags
		}
		return out
	}
	got := names()
	for _, want := range []string{"untagged", "a1", "a2", "b1"} {
		if _, ok := got[want]; !ok {
			t.Errorf("after both teams applied, service %s is missing: %v", want, got)
		}
	}
	if fmt.Sprint(got["a1"]) != "[team-a]" || fmt.Sprint(got["b1"]) != "[team-b]" {
		t.Errorf("select tags not added to the entities: %v", got)
	}
	// Team A drops a2: only team A's entities are replaced.
	apply(`_format_version: "3.0"
_info: {select_tags: [team-a]}
services:
- {name: a1, url: "http://127.0.0.1:9/a1"}
`)
	got = names()
	if _, ok := got["a2"]; ok {
		t.Errorf("a2 survived its team's new file: %v", got)
	}
	for _, want := range []string{"untagged", "a1", "b1"} {
		if _, ok := got[want]; !ok {
			t.Errorf("team A's apply removed %s: %v", want, got)
		}
	}
}

// TestDeclarativeAnswerIsWhatTheAPIShows: POST /config answers with every
// entity it loaded, as GET shows it. The answer is written from the
// entities' encodings (and, when the apply took the admin's plan, from
// the plan's entities); both paths are checked: a first load, then a
// document that changes one entity of many, which the apply folds again.
func TestDeclarativeAnswerIsWhatTheAPIShows(t *testing.T) {
	n := harness.Start(t, harness.Options{NodeID: "declarative-answer"})
	endpoints := map[string]string{"services": "/services/", "routes": "/routes/", "consumers": "/consumers/",
		"upstreams": "/upstreams/", "plugins": "/plugins/", "keyauth_credentials": "/key-auths/",
		"basicauth_credentials": "/basic-auths/"}
	check := func(what string, r *harness.Response) {
		t.Helper()
		harness.ExpectStatus(t, r, http.StatusCreated)
		checked := 0
		for kind, list := range r.JSON(t) {
			ep, ok := endpoints[kind]
			if !ok {
				continue // targets: no endpoint of their own
			}
			for _, v := range list.([]any) {
				answered := v.(map[string]any)
				shown := harness.Get(t, n.Admin(ep+harness.Str(answered, "id"))).JSON(t)
				if !reflect.DeepEqual(answered, shown) {
					t.Errorf("%s: %s answered\n%v\nGET shows\n%v", what, kind, answered, shown)
				}
				checked++
			}
		}
		if checked < 10 {
			t.Errorf("%s: only %d entities checked: %s", what, checked, r.Text())
		}
	}
	doc := fmt.Sprintf(kongYAML, 9) + "- name: request-transformer\n  config:\n    add:\n      headers: [\"x-a:<&>\", \"x-b:\u00e9\"]\n"
	var extra strings.Builder
	extra.WriteString("- username: many-0\n")
	for i := 1; i < 30; i++ {
		fmt.Fprintf(&extra, "- username: many-%d\n  custom_id: \"c<%d>&\"\n  tags: [t%d, shared]\n  keyauth_credentials:\n  - key: many-key-%d\n", i, i, i, i)
	}
	doc = strings.Replace(doc, "consumers:\n", "consumers:\n"+extra.String(), 1)
	check("first load", harness.Raw(t, http.MethodPost, n.Admin("/config"), "application/yaml", []byte(doc)))
	changed := strings.Replace(doc, "url: http://billing.internal:8080/v1", "url: http://billing.internal:8081/v2", 1)
	check("one change", harness.Raw(t, http.MethodPost, n.Admin("/config"), "application/yaml", []byte(changed)))
}
