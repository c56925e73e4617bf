package router

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func mustNew(t testing.TB, routes ...*Route) *Router {
	t.Helper()
	r, err := New(routes...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func headers(kv ...string) func(string) (string, bool) {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[strings.ToLower(kv[i])] = kv[i+1]
	}
	return func(name string) (string, bool) {
		v, ok := m[name]
		return v, ok
	}
}

// step is one request against a router and the route ID it must select
// ("" = no match).
type step struct {
	name string
	req  Request
	want string
}

func runSteps(t *testing.T, r *Router, steps []step) {
	t.Helper()
	for _, s := range steps {
		req := s.req
		if req.Method == "" {
			req.Method = "GET"
		}
		if req.Path == "" {
			req.Path = "/"
		}
		m, ok := r.Match(&req)
		got := ""
		if ok {
			got = m.Route.ID
		}
		if got != s.want {
			t.Errorf("%s: matched %q, want %q", s.name, got, s.want)
		}
		// The host index must never change the answer.
		lm, lok := linearMatch(r, &req)
		if lok != ok || (ok && !reflect.DeepEqual(lm, m)) {
			t.Errorf("%s: index and linear scan disagree: %+v/%v vs %+v/%v", s.name, m, ok, lm, lok)
		}
	}
}

// allEntries lists every entry of r in priority order: the order a linear
// scan tries them in.
func allEntries(r *Router) []*entry {
	var all []*entry
	r.byID.Each(func(_ string, es []*entry) { all = append(all, es...) })
	slices.SortFunc(all, compareEntries)
	return all
}

// linearMatch is the reference the indexes must agree with: every entry,
// in priority order.
func linearMatch(r *Router, req *Request) (Match, bool) {
	return linearScan(allEntries(r), req)
}

func linearScan(all []*entry, req *Request) (Match, bool) {
	path, ok := NormalizePath(req.Path)
	if !ok {
		return Match{}, false
	}
	in := input{req: req, path: path, method: methodBit(req.Method)}
	in.host, in.port = splitHostPort(req.Host)
	if in.port < 0 {
		in.port = req.Port
	}
	for _, e := range all {
		if !strings.HasPrefix(path, e.prefix) {
			continue
		}
		if m, ok := e.match(&in); ok {
			return m, true
		}
	}
	return Match{}, false
}

// The "use-cases" block of Kong's 02-router_spec (behaviours 26-29, 37).
func TestKongUseCases(t *testing.T) {
	routes := []*Route{
		{ID: "1", Methods: []string{"GET"}},
		{ID: "2", Methods: []string{"POST", "PUT"}, Paths: []string{"/post", "/put"}},
		{ID: "3", Paths: []string{"/mock_upstream"}, StripPath: true},
		{ID: "4", Paths: []string{"/private"}},
		{ID: "5", Paths: []string{`~/users/\d+/profile`}, StripPath: true},
		{ID: "6", Hosts: []string{"serviceless-route-http.test"}},
		// Route 7 and 9 belong to disabled services: the caller leaves them
		// out, and matching must fall through to the next candidate.
		{ID: "8", Paths: []string{`~/enabled-service/\w+`}, StripPath: true},
	}
	r := mustNew(t, routes...)
	runSteps(t, r, []step{
		{"methods restrict POST", Request{Method: "POST", Path: "/post"}, "2"},
		{"methods restrict DELETE", Request{Method: "DELETE", Path: "/post"}, ""},
		{"method-only fallback", Request{Method: "GET", Path: "/get"}, "1"},
		{"no host header (HTTP/1.0)", Request{Method: "GET", Path: "/get", Host: ""}, "1"},
		{"strip prefix route", Request{Path: "/mock_upstream/201"}, "3"},
		{"private", Request{Path: "/private/passwd"}, "4"},
		{"regex no match", Request{Method: "POST", Path: "/users/foo/profile"}, ""},
		{"regex match", Request{Method: "POST", Path: "/users/123/profile"}, "5"},
		{"serviceless host", Request{Host: "serviceless-route-http.test"}, "6"},
		{"disabled service skipped", Request{Method: "DELETE", Path: "/disabled-service1"}, ""},
		{"falls through to regex", Request{Method: "DELETE", Path: "/enabled-service/disabled"}, "8"},
	})
	// Kong's test relies on the regex route outranking the longer prefix
	// of the disabled route; check that order explicitly.
	r2, err := r.Upsert(&Route{ID: "9", Paths: []string{"/enabled-service/disabled"}})
	if err != nil {
		t.Fatal(err)
	}
	runSteps(t, r2, []step{{"regex outranks prefix", Request{Method: "DELETE", Path: "/enabled-service/disabled"}, "8"}})
}

// Behaviours 30 and §2.2's regex rules.
func TestRegexPriority(t *testing.T) {
	r := mustNew(t,
		&Route{ID: "b", Paths: []string{"~/status/(?P<foo>re)"}, RegexPriority: 0},
		&Route{ID: "a", Paths: []string{"~/status/(re)"}, RegexPriority: 4},
		&Route{ID: "c", Paths: []string{"~/status/(ab)"}},
		&Route{ID: "d", Paths: []string{"~/status/(ab)c?"}},
		&Route{ID: "e", Paths: []string{"/status"}},
		&Route{ID: "f", Paths: []string{"~/neg"}, RegexPriority: -1},
		&Route{ID: "g", Paths: []string{"/neg"}},
		&Route{ID: "h", Paths: []string{"~/neg"}, RegexPriority: -5},
	)
	runSteps(t, r, []step{
		{"regex_priority 4 beats an earlier shorter regex", Request{Path: "/status/re"}, "a"},
		{"equal regex_priority: higher ID", Request{Path: "/status/ab"}, "d"},
		{"regex beats prefix", Request{Path: "/status/abc"}, "d"},
		{"prefix when no regex matches", Request{Path: "/status/zz"}, "e"},
		{"negative regex_priority still beats prefix, and -1 > -5", Request{Path: "/neg"}, "f"},
	})
}

// §2.2: "prioritizes longer URIs", "host over longer URIs", "do not match
// incomplete URIs" and the split of routes by path length.
func TestPathsAndMethodsAndHosts(t *testing.T) {
	r := mustNew(t,
		&Route{ID: "1", Methods: []string{"GET"}, Paths: []string{"/unrelated/longer/uri/that/should/not/match", "/root/fixture"}, Hosts: []string{"ahost.test"}, StripPath: true},
		&Route{ID: "2", Methods: []string{"GET"}, Paths: []string{"/root/fixture/get"}, Hosts: []string{"ahost.test"}, StripPath: true},
		&Route{ID: "3", Methods: []string{"GET"}, Paths: []string{"/root/fixture/get"}, Hosts: []string{"anotherhost.test"}, StripPath: true},
		&Route{ID: "4", Methods: []string{"GET"}, Paths: []string{"/root/fixture/get"}, Hosts: []string{"onemorehost.test"}, StripPath: true},
		&Route{ID: "5", Paths: []string{"/rest/devportal/api/v1", "/rest/devportal"}, Hosts: []string{"api.local"}},
		&Route{ID: "6", Paths: []string{"/rest/devportal/aux"}, Hosts: []string{"api.local"}},
		&Route{ID: "7", Paths: []string{"/rest/devportal/aux"}, Hosts: []string{"test-api.local"}},
		&Route{ID: "8", Paths: []string{"/rest/devportal/aux"}, Hosts: []string{"atest-api.local"}},
		&Route{ID: "9", Paths: []string{"/rest/devportal"}, Hosts: []string{"atest-api.local"}},
	)
	runSteps(t, r, []step{
		{"longer URI wins", Request{Path: "/root/fixture/get", Host: "ahost.test"}, "2"},
		{"shorter path of a split route", Request{Path: "/root/fixture/x", Host: "ahost.test"}, "1"},
		{"longer path of a split route", Request{Path: "/unrelated/longer/uri/that/should/not/match", Host: "ahost.test"}, "1"},
		{"host over longer URIs", Request{Path: "/root/fixture/get", Host: "anotherhost.test"}, "3"},
		{"incomplete URI", Request{Path: "/", Host: "ahost.test"}, ""},
		{"#5438 1", Request{Path: "/rest/devportal/api/v1", Host: "api.local"}, "5"},
		{"#5438 2", Request{Path: "/rest/devportal", Host: "api.local"}, "5"},
		{"#5438 3", Request{Path: "/rest/devportal/aux", Host: "api.local"}, "6"},
		{"#5438 4", Request{Path: "/rest/devportal/aux", Host: "test-api.local"}, "7"},
		{"#5438 5", Request{Path: "/rest/devportal/aux", Host: "atest-api.local"}, "8"},
		{"#5438 part 2", Request{Path: "/rest/devportal", Host: "atest-api.local"}, "9"},
		{"concatenated path", Request{Path: "/rest/devportal/status/418", Host: "api.local"}, "5"},
		{"method mismatch", Request{Method: "POST", Path: "/root/fixture/get", Host: "ahost.test"}, ""},
		{"host is case-insensitive", Request{Path: "/root/fixture/get", Host: "AnotherHost.TEST"}, "3"},
		{"host header port ignored", Request{Path: "/root/fixture/get", Host: "anotherhost.test:8000"}, "3"},
	})
}

// Behaviour 35 and Kong's [#headers] and [paths]+[#headers] blocks.
func TestHeaders(t *testing.T) {
	t.Run("matches by header", func(t *testing.T) {
		r := mustNew(t,
			&Route{ID: "1", Headers: map[string][]string{"version": {"v1", "v2"}}},
			&Route{ID: "2", Headers: map[string][]string{"version": {"v3"}}},
		)
		runSteps(t, r, []step{
			{"v1", Request{Header: headers("version", "v1")}, "1"},
			{"v2", Request{Header: headers("version", "v2")}, "1"},
			{"v3", Request{Header: headers("version", "v3")}, "2"},
			{"v4", Request{Header: headers("version", "v4")}, ""},
			{"absent", Request{Header: headers()}, ""},
			{"nil lookup", Request{}, ""},
		})
	})
	t.Run("case-insensitive values", func(t *testing.T) {
		r := mustNew(t,
			&Route{ID: "1", Headers: map[string][]string{"version": {"v1", "v2"}}},
			&Route{ID: "2", Headers: map[string][]string{"version": {"V3"}}},
		)
		runSteps(t, r, []step{
			{"V1", Request{Header: headers("version", "V1")}, "1"},
			{"v3", Request{Header: headers("version", "v3")}, "2"},
		})
	})
	t.Run("more headers win", func(t *testing.T) {
		r := mustNew(t,
			&Route{ID: "1", Headers: map[string][]string{"version": {"v1", "v2"}}},
			&Route{ID: "2", Headers: map[string][]string{"version": {"v3"}, "location": {"us-east"}}},
			&Route{ID: "3", Headers: map[string][]string{"version": {"v3"}}},
		)
		runSteps(t, r, []step{
			{"both headers", Request{Header: headers("version", "v3", "location", "us-east")}, "2"},
			{"one header", Request{Header: headers("version", "v3")}, "3"},
		})
	})
	t.Run("headers and paths", func(t *testing.T) {
		r := mustNew(t,
			&Route{ID: "1", Headers: map[string][]string{"version": {"v1", "v2"}}, Paths: []string{"/root"}},
			&Route{ID: "2", Headers: map[string][]string{"version": {"v1", "v2"}}, Paths: []string{"/root/fixture"}},
			&Route{ID: "3", Headers: map[string][]string{"version": {"v1", "v2"}, "location": {"us-east"}}, Paths: []string{"/root"}},
		)
		runSteps(t, r, []step{
			{"more headers beat longer path", Request{Path: "/root/fixture/get", Header: headers("version", "v2", "location", "us-east")}, "3"},
			{"same headers, longer path", Request{Path: "/root/fixture/get", Header: headers("version", "v2")}, "2"},
		})
	})
	t.Run("header regex", func(t *testing.T) {
		r := mustNew(t,
			&Route{ID: "1", Headers: map[string][]string{"x-version": {`~*^v\d+$`}}},
			&Route{ID: "2", Headers: map[string][]string{"x-version": {"~*beta"}}},
		)
		runSteps(t, r, []step{
			{"anchored", Request{Header: headers("x-version", "V12")}, "1"},
			{"unanchored search, case-insensitive", Request{Header: headers("x-version", "pre-BETA-2")}, "2"},
			{"none", Request{Header: headers("x-version", "v1x")}, ""},
		})
	})
	t.Run("caching does not ignore headers", func(t *testing.T) {
		r := mustNew(t,
			&Route{ID: "1", Hosts: []string{"example.test"}, Paths: []string{"/test"}, Headers: map[string][]string{"headertest": {"itsatest"}}},
			&Route{ID: "2", Hosts: []string{"example.test"}, Paths: []string{"/test"}},
		)
		runSteps(t, r, []step{
			{"with header", Request{Host: "example.test", Path: "/test", Header: headers("headertest", "itsatest")}, "1"},
			{"without", Request{Host: "example.test", Path: "/test"}, "2"},
			{"with header again", Request{Host: "example.test", Path: "/test", Header: headers("headertest", "itsatest")}, "1"},
		})
	})
}

// Behaviour 36 and §2.1's host rules.
func TestHosts(t *testing.T) {
	r := mustNew(t,
		&Route{ID: "suffix", Hosts: []string{"*.example.com"}},
		&Route{ID: "prefix", Hosts: []string{"example.*"}},
		&Route{ID: "plain", Hosts: []string{"foo.example.com"}},
		&Route{ID: "port", Hosts: []string{"ported.test:8443"}},
		&Route{ID: "wport", Hosts: []string{"*.wild.test:9000"}},
		&Route{ID: "mixed", Hosts: []string{"mixed.test", "*.mixed.test"}},
		&Route{ID: "preserved", Hosts: []string{"preserved.com", "preserved.com:123"}},
		&Route{ID: "grpc1", Hosts: []string{"grpc1", "grpc1:9080", "grpc1:9081"}},
	)
	runSteps(t, r, []step{
		{"plain beats wildcard", Request{Host: "foo.example.com"}, "plain"},
		{"suffix wildcard", Request{Host: "bar.example.com"}, "suffix"},
		{"suffix spans labels", Request{Host: "a.b.c.example.com"}, "suffix"},
		{"suffix needs a label", Request{Host: "example.com"}, "prefix"},
		{"prefix wildcard", Request{Host: "example.org"}, "prefix"},
		{"prefix spans labels", Request{Host: "example.co.uk"}, "prefix"},
		{"no match", Request{Host: "other.org"}, ""},
		{"wildcard case-insensitive", Request{Host: "BAR.Example.COM:80"}, "suffix"},
		{"route port from Host header", Request{Host: "ported.test:8443"}, "port"},
		{"route port from local port", Request{Host: "ported.test", Port: 8443}, "port"},
		{"route port mismatch", Request{Host: "ported.test:8000", Port: 8443}, ""},
		{"route port, local mismatch", Request{Host: "ported.test", Port: 8000}, ""},
		{"wildcard with port", Request{Host: "x.wild.test", Port: 9000}, "wport"},
		{"wildcard with wrong port", Request{Host: "x.wild.test:9001"}, ""},
		{"mixed plain", Request{Host: "mixed.test"}, "mixed"},
		{"mixed wildcard", Request{Host: "a.mixed.test"}, "mixed"},
		{"host without port", Request{Host: "preserved.com", Port: 8000}, "preserved"},
		{"host with other port", Request{Host: "preserved.com:80"}, "preserved"},
		{"grpc authority", Request{Host: "grpc1"}, "grpc1"},
		{"ipv6 host", Request{Host: "[::1]:8000"}, ""},
	})
}

func TestSNIs(t *testing.T) {
	r := mustNew(t,
		&Route{ID: "www", SNIs: []string{"www.example.org"}},
		&Route{ID: "apex", SNIs: []string{"example.org."}},
		&Route{ID: "wild", SNIs: []string{"*.wild.org"}},
	)
	runSteps(t, r, []step{
		{"www", Request{TLS: true, SNI: "www.example.org"}, "www"},
		{"apex, trailing dot ignored", Request{TLS: true, SNI: "example.org"}, "apex"},
		{"wildcard", Request{TLS: true, SNI: "a.wild.org"}, "wild"},
		{"unknown sni", Request{TLS: true, SNI: "nope.org"}, ""},
		// Over plain HTTP SNIs are not considered: every route matches and
		// the highest ID wins the tie.
		{"plain http ignores snis", Request{SNI: "nope.org"}, "www"},
	})
}

// Behaviour 32 and Kong's "URI normalization" block.
func TestRoutesOnNormalizedPath(t *testing.T) {
	r := mustNew(t,
		&Route{ID: "1", Paths: []string{"/foo/bar"}, StripPath: true},
		&Route{ID: "2", Paths: []string{"/hello"}, StripPath: true},
		&Route{ID: "3", Paths: []string{"/anything/world"}},
		&Route{ID: "4", Paths: []string{`~/re/(?<name>[a-z]+)/(\d+)?`}},
	)
	runSteps(t, r, []step{
		{"..", Request{Path: "/foo/a/../bar"}, "1"},
		{"//", Request{Path: "/foo//bar"}, "1"},
		{"/./", Request{Path: "/foo/./bar"}, "1"},
		{"percent-encoded", Request{Path: "/h%65llo"}, "2"},
		{"encoded dots", Request{Path: "/anything/%2e/a/%2E%2E/world"}, "3"},
		{"reserved stays encoded", Request{Path: "/foo%2Fbar"}, ""},
		{"regex on normalised path", Request{Path: "/re/./abc/"}, "4"},
		{"invalid path", Request{Path: "foo/bar"}, ""},
		{"encoded NUL", Request{Path: "/foo/bar%00"}, ""},
	})
	m, ok := r.Match(&Request{Path: "/anything/./a/../wor%6cd/a/../b"})
	if !ok || m.Path != "/anything/world/b" || m.MatchedPath != "/anything/world" || m.StripPrefix != "" || m.Captures != nil {
		t.Fatalf("got %+v", m)
	}
	m, ok = r.Match(&Request{Path: "/h%65llo/x"})
	if !ok || m.StripPrefix != "/hello" || m.Path != "/hello/x" {
		t.Fatalf("got %+v", m)
	}
}

func TestCaptures(t *testing.T) {
	r := mustNew(t, &Route{ID: "1", Paths: []string{`~/delay/(?<delay>[^\/]+)(/(x))?$`}, StripPath: true},
		&Route{ID: "2", Paths: []string{`~/nogroups/\d+`}})
	m, ok := r.Match(&Request{Path: "/delay/5"})
	if !ok {
		t.Fatal("no match")
	}
	want := map[string]string{"0": "/delay/5", "1": "5", "delay": "5"}
	if !reflect.DeepEqual(m.Captures, want) {
		t.Fatalf("captures = %v, want %v", m.Captures, want)
	}
	if m.MatchedPath != `~/delay/(?<delay>[^\/]+)(/(x))?$` || m.StripPrefix != "/delay/5" {
		t.Fatalf("got %+v", m)
	}
	m, _ = r.Match(&Request{Path: "/delay/5/x"})
	want = map[string]string{"0": "/delay/5/x", "1": "5", "delay": "5", "2": "/x", "3": "x"}
	if !reflect.DeepEqual(m.Captures, want) {
		t.Fatalf("captures = %v, want %v", m.Captures, want)
	}
	m, ok = r.Match(&Request{Path: "/nogroups/1"})
	if !ok || m.Captures != nil {
		t.Fatalf("got %+v", m)
	}
}

func TestRegexAnchoring(t *testing.T) {
	r := mustNew(t, &Route{ID: "1", Paths: []string{`~/a|/b`}}, &Route{ID: "0", Paths: []string{"/"}})
	runSteps(t, r, []step{
		{"first branch", Request{Path: "/a"}, "1"},
		{"second branch", Request{Path: "/b/c"}, "1"},
		{"second branch anchored too", Request{Path: "/x/b"}, "0"},
		{"end not anchored", Request{Path: "/ab"}, "1"},
	})
}

// §2.2 field by field, each pair differing in exactly one rank.
func TestPriorityOrder(t *testing.T) {
	cases := []struct {
		name        string
		high, low   *Route
		req         Request
		highWinsLex bool // both IDs are chosen so the ID tie-break favours low
	}{
		{"match weight beats plain host and length",
			&Route{Methods: []string{"GET"}, Hosts: []string{"*.x.test"}, Paths: []string{"/"}},
			&Route{Hosts: []string{"a.x.test"}, Paths: []string{"/long/path/here"}},
			Request{Host: "a.x.test", Path: "/long/path/here"}, true},
		{"plain hosts beat header count",
			&Route{Hosts: []string{"a.x.test"}, Headers: map[string][]string{"a": {"1"}}},
			&Route{Hosts: []string{"*.x.test"}, Headers: map[string][]string{"a": {"1"}, "b": {"2"}, "c": {"3"}}},
			Request{Host: "a.x.test", Header: headers("a", "1", "b", "2", "c", "3")}, true},
		{"header count beats regex",
			&Route{Paths: []string{"/"}, Headers: map[string][]string{"a": {"1"}, "b": {"2"}}},
			&Route{Paths: []string{"~/"}, Headers: map[string][]string{"a": {"1"}}},
			Request{Path: "/x", Header: headers("a", "1", "b", "2")}, true},
		{"regex beats prefix length",
			&Route{Paths: []string{"~/"}},
			&Route{Paths: []string{"/very/long/prefix"}},
			Request{Path: "/very/long/prefix"}, true},
		{"regex_priority",
			&Route{Paths: []string{"~/a"}, RegexPriority: 1},
			&Route{Paths: []string{"~/a/b/c"}},
			Request{Path: "/a/b/c"}, true},
		{"prefix length",
			&Route{Paths: []string{"/a/b"}},
			&Route{Paths: []string{"/a"}, RegexPriority: 100},
			Request{Path: "/a/b/c"}, true},
		{"wildcard counts as hosts for weight",
			&Route{Hosts: []string{"a.*"}, Paths: []string{"/"}},
			&Route{Paths: []string{"/aaaaaaaaa"}},
			Request{Host: "a.b", Path: "/aaaaaaaaa"}, true},
	}
	for _, c := range cases {
		c.high.ID, c.low.ID = "1-high", "2-low"
		for _, order := range [][]*Route{{c.high, c.low}, {c.low, c.high}} {
			r := mustNew(t, order...)
			runSteps(t, r, []step{{c.name, c.req, "1-high"}})
		}
	}
}

func TestTieBreakByID(t *testing.T) {
	a := &Route{ID: "0b6a8e6e-0000-4000-8000-000000000001", Paths: []string{"/same"}}
	b := &Route{ID: "f1d0c1a2-0000-4000-8000-000000000002", Paths: []string{"/same"}}
	for _, order := range [][]*Route{{a, b}, {b, a}} {
		runSteps(t, mustNew(t, order...), []step{{"higher uuid", Request{Path: "/same"}, b.ID}})
	}
}

func TestPrefixSemantics(t *testing.T) {
	r := mustNew(t,
		&Route{ID: "mock", Paths: []string{"/mock"}},
		&Route{ID: "fixture", Paths: []string{"/root/fixture"}},
		&Route{ID: "root", Paths: []string{"/"}, StripPath: true},
		&Route{ID: "foobar", Paths: []string{"/foobar"}, StripPath: true},
	)
	runSteps(t, r, []step{
		{"prefix is not segment-aligned", Request{Path: "/mockery"}, "mock"},
		{"catch-all", Request{Path: "/get"}, "root"},
		{"longer beats catch-all", Request{Path: "/foobar/get"}, "foobar"},
		{"fixture needs its prefix", Request{Path: "/root"}, "root"},
	})
	empty := mustNew(t, &Route{ID: "fixture", Paths: []string{"/root/fixture"}})
	runSteps(t, empty, []step{{"/root/fixture does not match /", Request{Path: "/"}, ""}})
}

func TestNewErrors(t *testing.T) {
	if _, err := New(&Route{ID: "1", Paths: []string{"~/users/(foo/profile"}}); err == nil ||
		!strings.HasPrefix(err.Error(), "invalid regex: '/users/(foo/profile' (") {
		t.Fatalf("err = %v", err)
	}
	if _, err := New(&Route{ID: "1", Headers: map[string][]string{"x": {"~*("}}}); err == nil ||
		!strings.HasPrefix(err.Error(), "invalid regex: '(' (") {
		t.Fatalf("err = %v", err)
	}
	r := mustNew(t, &Route{ID: "1", Paths: []string{"/a"}})
	if _, err := r.Upsert(&Route{ID: "2", Paths: []string{"~/("}}); err == nil {
		t.Fatal("expected an error")
	}
	if r.Len() != 1 {
		t.Fatal("failed upsert changed the router")
	}
}

func TestDuplicateIDsLastWins(t *testing.T) {
	r := mustNew(t, &Route{ID: "1", Paths: []string{"/a"}}, &Route{ID: "1", Paths: []string{"/b"}})
	if r.Len() != 1 {
		t.Fatalf("Len = %d", r.Len())
	}
	runSteps(t, r, []step{{"first dropped", Request{Path: "/a"}, ""}, {"last kept", Request{Path: "/b"}, "1"}})
}

func TestUpsertDeleteImmutability(t *testing.T) {
	r0 := mustNew(t,
		&Route{ID: "a", Paths: []string{"/a"}},
		&Route{ID: "h", Hosts: []string{"h.test"}},
	)
	r1, err := r0.Upsert(&Route{ID: "b", Paths: []string{"/a/b"}})
	if err != nil {
		t.Fatal(err)
	}
	r2, err := r1.Upsert(&Route{ID: "a", Paths: []string{"/x"}})
	if err != nil {
		t.Fatal(err)
	}
	r3, err := r2.Upsert(&Route{ID: "h", Hosts: []string{"other.test"}})
	if err != nil {
		t.Fatal(err)
	}
	r4 := r3.Delete("b")
	r5 := r4.Delete("h")
	if r5.Delete("missing") != r5 {
		t.Fatal("deleting a missing id should return the same router")
	}

	for _, c := range []struct {
		r    *Router
		n    int
		want map[string]string // path or host -> id
	}{
		{r0, 2, map[string]string{"/a/b": "a", "/x": "", "h.test": "h", "other.test": ""}},
		{r1, 3, map[string]string{"/a/b": "b", "/a": "a", "/x": "", "h.test": "h"}},
		{r2, 3, map[string]string{"/a/b": "b", "/a": "", "/x": "a", "h.test": "h"}},
		{r3, 3, map[string]string{"/a/b": "b", "/x": "a", "h.test": "", "other.test": "h"}},
		{r4, 2, map[string]string{"/a/b": "", "/x": "a", "other.test": "h"}},
		{r5, 1, map[string]string{"/x": "a", "other.test": ""}},
	} {
		if c.r.Len() != c.n {
			t.Errorf("Len = %d, want %d", c.r.Len(), c.n)
		}
		var steps []step
		for k, id := range c.want {
			req := Request{Path: k}
			if !strings.HasPrefix(k, "/") {
				req = Request{Host: k}
			}
			steps = append(steps, step{k, req, id})
		}
		runSteps(t, c.r, steps)
	}

	var nilRouter *Router
	if _, ok := nilRouter.Match(&Request{Path: "/"}); ok || nilRouter.Len() != 0 {
		t.Fatal("nil router matched")
	}
	if r, err := nilRouter.Upsert(&Route{ID: "x"}); err != nil || r.Len() != 1 {
		t.Fatal("upsert on nil router")
	}
	if nilRouter.Delete("x").Len() != 0 {
		t.Fatal("delete on nil router")
	}
}

// Upsert shares the compiled entries of untouched routes instead of
// recompiling them.
func TestUpsertCompilesOnlyTheChangedRoute(t *testing.T) {
	r0 := mustNew(t, &Route{ID: "a", Paths: []string{"~/a"}}, &Route{ID: "b", Paths: []string{"/b"}})
	r1, err := r0.Upsert(&Route{ID: "c", Paths: []string{"/c"}})
	if err != nil {
		t.Fatal(err)
	}
	find := func(r *Router, id string) *entry {
		for _, e := range allEntries(r) {
			if e.c.route.ID == id {
				return e
			}
		}
		return nil
	}
	if find(r0, "a") != find(r1, "a") || find(r0, "b") != find(r1, "b") {
		t.Fatal("entries of unchanged routes were rebuilt")
	}
}

// randomRoute draws from a small vocabulary so that routes collide on
// hosts, paths and priorities often.
func randomRoute(rng *rand.Rand, id string) *Route {
	pick := func(xs ...string) string { return xs[rng.IntN(len(xs))] }
	rt := &Route{ID: id, StripPath: rng.IntN(2) == 0, RegexPriority: rng.IntN(3) - 1}
	if rng.IntN(3) == 0 {
		rt.Methods = []string{pick("GET", "POST")}
	}
	for range rng.IntN(3) {
		rt.Hosts = append(rt.Hosts, pick("a.test", "b.test", "A.test", "*.test", "a.*", "a.test:8000", "c.b.test", "b.test:9000"))
	}
	for range rng.IntN(3) {
		rt.Paths = append(rt.Paths, pick("/", "/a", "/a/b", "/ab", "/b", "~/a", `~/a/\w+`, "~/(?<x>b)", "~/a|/b",
			"/a/b/c", "/a/bc", "/abc", "/a/b/", `~/a/b\d`, `~/ab+`, `~(?i)/A`))
	}
	if rng.IntN(4) == 0 {
		rt.Headers = map[string][]string{"v": {pick("1", "2", "~*^[12]$")}}
		if rng.IntN(2) == 0 {
			rt.Headers["w"] = []string{"x"}
		}
	}
	if rng.IntN(6) == 0 {
		rt.SNIs = []string{pick("a.test", "*.test")}
	}
	return rt
}

func randomRequest(rng *rand.Rand) *Request {
	pick := func(xs ...string) string { return xs[rng.IntN(len(xs))] }
	return &Request{
		Method: pick("GET", "POST", "PUT"),
		Host:   pick("", "a.test", "A.TEST", "b.test", "a.test:8000", "b.test:9000", "c.b.test", "a.org", "x.test", "zzz"),
		Port:   []int{8000, 9000, 80}[rng.IntN(3)],
		Path: pick("/", "/a", "/a/b", "/ab", "/b", "/a/b/c", "/a/./b", "/%61", "/b/../a/x",
			"/a/b/c/d", "/a/bc", "/abc/x", "/a/b1", "/a/b/", "/abbb", "/A"),
		Header: []func(string) (string, bool){nil, headers("v", "1"), headers("v", "2", "w", "X"), headers("w", "x")}[rng.IntN(4)],
		TLS:    rng.IntN(3) == 0,
		SNI:    pick("a.test", "b.test", ""),
	}
}

// The host index must select exactly what a linear scan over all entries
// selects, including after incremental updates.
func TestIndexMatchesLinearScan(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		var routes []*Route
		for i := range rng.IntN(30) + 1 {
			routes = append(routes, randomRoute(rng, fmt.Sprintf("%02d", i)))
		}
		r := mustNew(t, routes...)
		// Mutate incrementally, then compare with a router built from
		// scratch from the same final set.
		final := map[string]*Route{}
		for _, rt := range routes {
			final[rt.ID] = rt
		}
		for range rng.IntN(10) {
			id := fmt.Sprintf("%02d", rng.IntN(40))
			if rng.IntN(3) == 0 {
				r = r.Delete(id)
				delete(final, id)
				continue
			}
			rt := randomRoute(rng, id)
			var err error
			if r, err = r.Upsert(rt); err != nil {
				t.Fatal(err)
			}
			final[id] = rt
		}
		var list []*Route
		for _, rt := range final {
			list = append(list, rt)
		}
		fresh := mustNew(t, list...)
		if r.Len() != fresh.Len() || len(allEntries(r)) != len(allEntries(fresh)) {
			t.Fatalf("round %d: incremental router has %d routes/%d entries, fresh %d/%d",
				round, r.Len(), len(allEntries(r)), fresh.Len(), len(allEntries(fresh)))
		}
		for range 200 {
			req := randomRequest(rng)
			m1, ok1 := r.Match(req)
			m2, ok2 := linearMatch(r, req)
			m3, ok3 := fresh.Match(req)
			if ok1 != ok2 || ok1 != ok3 || !reflect.DeepEqual(m1, m2) || !reflect.DeepEqual(m1, m3) {
				t.Fatalf("round %d, request %+v:\nindexed %v %+v\nlinear  %v %+v\nfresh   %v %+v",
					round, req, ok1, m1, ok2, m2, ok3, m3)
			}
		}
	}
}

// The same at the scale and in the mix of the benchmark, with every
// route's requests and priority ties: the routes of one service share
// paths, so equal priorities are decided by route ID.
func TestIndexMatchesLinearScanAtScale(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	routes, reqs := scaleRoutes(4000, rng)
	// Ties: copies of routes under other IDs, same conditions.
	for i := range 200 {
		rt := *routes[rng.IntN(len(routes))]
		rt.ID = fmt.Sprintf("ffffffff-0000-4000-8000-%012x", i)
		routes = append(routes, &rt)
	}
	// Overlaps: shorter prefixes of existing paths, some with a method,
	// so a request has candidates under several keys and the merge by
	// priority decides.
	for i := range 300 {
		rt := routes[rng.IntN(len(routes))]
		p := rt.Paths[0]
		if strings.HasPrefix(p, "~") || len(p) < 2 {
			continue
		}
		short := &Route{ID: fmt.Sprintf("eeeeeeee-0000-4000-8000-%012x", i), Paths: []string{p[:1+rng.IntN(len(p)-1)]}}
		if i%3 == 0 {
			short.Methods = []string{"GET"}
		}
		routes = append(routes, short)
	}
	r := mustNew(t, routes...)
	all := allEntries(r)
	for i, req := range reqs {
		m1, ok1 := r.Match(req)
		m2, ok2 := linearScan(all, req)
		if ok1 != ok2 || !reflect.DeepEqual(m1, m2) {
			t.Fatalf("request %d %+v:\nindexed %v %+v\nlinear  %v %+v", i, req, ok1, m1, ok2, m2)
		}
	}
}

func TestMatchDoesNotAllocate(t *testing.T) {
	var routes []*Route
	for i := range 1000 {
		routes = append(routes,
			&Route{ID: fmt.Sprintf("h%04d", i), Hosts: []string{fmt.Sprintf("svc%d.example.com", i)}, Paths: []string{fmt.Sprintf("/api/v%d", i%7)}},
			&Route{ID: fmt.Sprintf("p%04d", i), Paths: []string{fmt.Sprintf("/path%d/", i)}, Methods: []string{"GET"}, StripPath: true},
		)
	}
	r := mustNew(t, routes...)
	reqs := []*Request{
		{Method: "GET", Host: "svc42.example.com:8000", Path: "/api/v0/users/42"},
		{Method: "GET", Host: "unknown.test", Path: "/path999/items.json"},
		{Method: "GET", Host: "unknown.test", Path: "/nothing/here", Header: headers("x", "y")},
	}
	for _, req := range reqs {
		allocs := testing.AllocsPerRun(100, func() { r.Match(req) })
		if allocs != 0 {
			t.Errorf("%s%s: %v allocs per Match", req.Host, req.Path, allocs)
		}
	}
}

// The literal-prefix shortcut must never reject a path its regex accepts.
func TestRegexPrefilter(t *testing.T) {
	patterns := []string{`~/users/\d+/profile`, `~/a|/b`, `~/[0]?route`, `~/status/(?<foo>re)`,
		`~/x+`, `~/ab?c`, `~/(?i:ABC)/d`, `~/\x41`, `~/caf\x{e9}`, `~/a{2}`, `~/(a|ab)(c|bcd)`}
	paths := []string{"/", "/users/1/profile", "/a", "/b", "/route", "/0route", "/status/re", "/x", "/xx",
		"/ac", "/abc", "/abc/d", "/ABC/d", "/A", "/caf\u00e9", "/aa", "/abcd", "/acd"}
	for _, p := range patterns {
		r := mustNew(t, &Route{ID: "1", Paths: []string{p}})
		re := regexp.MustCompile("^(?:" + strings.Replace(p[1:], "(?<", "(?P<", 1) + ")")
		for _, path := range paths {
			_, got := r.Match(&Request{Path: path})
			if want := re.MatchString(path); got != want {
				t.Errorf("%s on %q: matched %v, regex says %v", p, path, got, want)
			}
		}
	}
}

// Readers keep using an old router while updates derive new ones; run with
// -race to check that no update writes to memory a published router uses.
func TestConcurrentReadersDuringUpdates(t *testing.T) {
	base := mustNew(t,
		&Route{ID: "a", Hosts: []string{"a.test"}, Paths: []string{"/"}},
		&Route{ID: "b", Paths: []string{"/b"}},
	)
	done := make(chan struct{})
	go func() {
		defer close(done)
		r := base
		for i := range 500 {
			var err error
			id := fmt.Sprint(i % 20)
			if r, err = r.Upsert(&Route{ID: id, Hosts: []string{"a.test"}, Paths: []string{"/" + id}}); err != nil {
				t.Error(err)
				return
			}
			r = r.Delete(fmt.Sprint((i + 7) % 20))
		}
	}()
	for {
		select {
		case <-done:
			return
		default:
		}
		if m, ok := base.Match(&Request{Host: "a.test", Path: "/b"}); !ok || m.Route.ID != "a" {
			t.Fatalf("base router changed: %+v %v", m, ok)
		}
	}
}
