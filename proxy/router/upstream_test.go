package router

import (
	"fmt"
	"testing"
)

// pathHandlingRow is one row of Kong's router path handling fixture
// (spec/fixtures/router_path_handling_tests.lua). strip and handling list
// every value the row applies to.
type pathHandlingRow struct {
	service  string
	route    string // "" = the route matches by host only
	strip    []bool
	handling []string
	request  string
	want     string
}

var (
	both   = []bool{false, true}
	yes    = []bool{true}
	no     = []bool{false}
	v0v1   = []string{"v0", "v1"}
	onlyV0 = []string{"v0"}
	onlyV1 = []string{"v1"}
)

// The rows of the current fixture, in its order.
var pathHandlingRows = []pathHandlingRow{
	{"/", "/", both, v0v1, "/", "/"},
	{"/", "/", both, v0v1, "/route", "/route"},
	{"/", "/", both, v0v1, "/route/", "/route/"},
	{"/", "/", both, v0v1, "/routereq", "/routereq"},
	{"/", "/", both, v0v1, "/route/req", "/route/req"},
	// 5
	{"/", "/route", no, v0v1, "/route", "/route"},
	{"/", "/route", no, v0v1, "/route/", "/route/"},
	{"/", "/route", no, v0v1, "/routereq", "/routereq"},
	{"/", "/route", yes, v0v1, "/route", "/"},
	{"/", "/route", yes, v0v1, "/route/", "/"},
	{"/", "/route", yes, v0v1, "/routereq", "/req"},
	// 11
	{"/", "/route/", no, v0v1, "/route/", "/route/"},
	{"/", "/route/", no, v0v1, "/route/req", "/route/req"},
	{"/", "/route/", yes, v0v1, "/route/", "/"},
	{"/", "/route/", yes, v0v1, "/route/req", "/req"},
	// 15
	{"/srv", "/rou", no, onlyV0, "/roureq", "/srv/roureq"},
	{"/srv", "/rou", no, onlyV1, "/roureq", "/srvroureq"},
	{"/srv", "/rou", yes, onlyV0, "/roureq", "/srv/req"},
	{"/srv", "/rou", yes, onlyV1, "/roureq", "/srvreq"},
	// 19
	{"/srv/", "/rou", no, v0v1, "/rou", "/srv/rou"},
	{"/srv/", "/rou", yes, onlyV0, "/rou", "/srv"},
	{"/srv/", "/rou", yes, onlyV1, "/rou", "/srv/"},
	// 22
	{"/service", "/", both, v0v1, "/", "/service"},
	{"/service", "/", both, onlyV0, "/route", "/service/route"},
	{"/service", "/", both, onlyV1, "/route", "/serviceroute"},
	{"/service", "/", both, onlyV0, "/route/", "/service/route/"},
	{"/service", "/", both, onlyV1, "/route/", "/serviceroute/"},
	// 27
	{"/service", "/", both, onlyV0, "/routereq", "/service/routereq"},
	{"/service", "/", both, onlyV1, "/routereq", "/serviceroutereq"},
	{"/service", "/", both, onlyV0, "/route/req", "/service/route/req"},
	{"/service", "/", both, onlyV1, "/route/req", "/serviceroute/req"},
	// 31
	{"/service", "/route", no, onlyV0, "/route", "/service/route"},
	{"/service", "/route", no, onlyV1, "/route", "/serviceroute"},
	{"/service", "/route", no, onlyV0, "/route/", "/service/route/"},
	{"/service", "/route", no, onlyV1, "/route/", "/serviceroute/"},
	{"/service", "/route", no, onlyV0, "/routereq", "/service/routereq"},
	{"/service", "/route", no, onlyV1, "/routereq", "/serviceroutereq"},
	{"/service", "/route", yes, v0v1, "/route", "/service"},
	{"/service", "/route", yes, v0v1, "/route/", "/service/"},
	{"/service", "/route", yes, onlyV0, "/routereq", "/service/req"},
	{"/service", "/route", yes, onlyV1, "/routereq", "/servicereq"},
	// 41
	{"/service", "/route/", no, onlyV0, "/route/", "/service/route/"},
	{"/service", "/route/", no, onlyV1, "/route/", "/serviceroute/"},
	{"/service", "/route/", no, onlyV0, "/route/req", "/service/route/req"},
	{"/service", "/route/", no, onlyV1, "/route/req", "/serviceroute/req"},
	{"/service", "/route/", yes, onlyV0, "/route/", "/service/"},
	{"/service", "/route/", yes, onlyV1, "/route/", "/service"},
	{"/service", "/route/", yes, onlyV0, "/route/req", "/service/req"},
	{"/service", "/route/", yes, onlyV1, "/route/req", "/servicereq"},
	// 49
	{"/service/", "/", both, onlyV0, "/route/", "/service/route/"},
	{"/service/", "/", both, onlyV1, "/route/", "/service/route/"},
	{"/service/", "/", both, v0v1, "/", "/service/"},
	{"/service/", "/", both, v0v1, "/route", "/service/route"},
	{"/service/", "/", both, v0v1, "/routereq", "/service/routereq"},
	{"/service/", "/", both, v0v1, "/route/req", "/service/route/req"},
	// 55
	{"/service/", "/route", no, v0v1, "/route", "/service/route"},
	{"/service/", "/route", no, v0v1, "/route/", "/service/route/"},
	{"/service/", "/route", no, v0v1, "/routereq", "/service/routereq"},
	{"/service/", "/route", yes, onlyV0, "/route", "/service"},
	{"/service/", "/route", yes, onlyV1, "/route", "/service/"},
	{"/service/", "/route", yes, v0v1, "/route/", "/service/"},
	{"/service/", "/route", yes, v0v1, "/routereq", "/service/req"},
	// 62
	{"/service/", "/route/", no, v0v1, "/route/", "/service/route/"},
	{"/service/", "/route/", no, v0v1, "/route/req", "/service/route/req"},
	{"/service/", "/route/", yes, v0v1, "/route/", "/service/"},
	{"/service/", "/route/", yes, v0v1, "/route/req", "/service/req"},
	// 66: matched by host, not by path
	{"/", "", both, v0v1, "/", "/"},
	{"/", "", both, v0v1, "/route", "/route"},
	{"/", "", both, v0v1, "/route/", "/route/"},
	// 69
	{"/service", "", both, v0v1, "/", "/service"},
	{"/service", "", both, onlyV0, "/route", "/service/route"},
	{"/service", "", both, onlyV1, "/route", "/serviceroute"},
	{"/service", "", both, onlyV0, "/route/", "/service/route/"},
	{"/service", "", both, onlyV1, "/route/", "/serviceroute/"},
	// 74
	{"/service/", "", both, v0v1, "/", "/service/"},
	{"/service/", "", both, v0v1, "/route", "/service/route"},
	{"/service/", "", both, v0v1, "/route/", "/service/route/"},
}

// Rows beyond the fixture: the reference's %2E%2E row, Kong's
// normalisation integration tests, a service without a path and
// re-encoding of decoded characters.
var extraPathHandlingRows = []pathHandlingRow{
	{"/service", "/route", yes, onlyV0, "/route%2E%2E/req", "/service/req"},
	{"/service", "/route", yes, onlyV0, "/route%2e%2e", "/service"},
	{"/", "/hello", yes, onlyV0, "/h%65llo/anything/a/../b", "/anything/b"},
	{"/", "/anything/world", no, onlyV0, "/anything/./a/../wor%6cd/a/../b", "/anything/world/b"},
	{"/", "/anything/world", no, onlyV0, "/anything/world/cat%20and%20dog", "/anything/world/cat%20and%20dog"},
	{"/", "/foo/bar", yes, onlyV0, "/foo//bar", "/"},
	{"", "/route", yes, onlyV0, "/route/req", "/req"},
	{"", "/route", no, onlyV0, "/route/req", "/route/req"},
	{"", "", yes, onlyV0, "/x", "/x"},
	{"/status", "/mock_upstream", yes, onlyV0, "/mock_upstream/201", "/status/201"},
	{"/basic-auth/", "/private", no, onlyV0, "/private/passwd", "/basic-auth/private/passwd"},
	{"/", "/a", yes, onlyV0, "/a%2Fb", "/%2Fb"},
	{"/s", "/a", yes, onlyV0, "/a/%C3%B8", "/s/%C3%B8"},
}

// regexOf turns a prefix route path into an equivalent regex path, the
// way Kong's integration test does ("/route" -> "~/[0]?route").
func regexOf(p string) string { return "~/[0]?" + p[1:] }

func TestUpstreamPathFixture(t *testing.T) {
	rows := append(append([]pathHandlingRow{}, pathHandlingRows...), extraPathHandlingRows...)
	n := 0
	for i, row := range rows {
		for _, strip := range row.strip {
			for _, h := range row.handling {
				kinds := []string{"plain"}
				if row.route != "" {
					kinds = append(kinds, "regex")
				}
				for _, kind := range kinds {
					rt := &Route{ID: "r", Hosts: []string{"localbin.test"}, StripPath: strip, PathHandling: h}
					if row.route != "" {
						rt.Paths = []string{row.route}
						if kind == "regex" {
							rt.Paths = []string{regexOf(row.route)}
						}
					}
					name := fmt.Sprintf("%d/%s/%s/strip=%v/%s%s", i, kind, row.service, strip, h, row.request)
					rtr, err := New(rt)
					if err != nil {
						t.Fatal(err)
					}
					m, ok := rtr.Match(&Request{Method: "GET", Host: "localbin.test", Path: row.request})
					if !ok {
						t.Errorf("%s: no match", name)
						continue
					}
					if got := UpstreamPath(row.service, m); got != row.want {
						t.Errorf("%s: UpstreamPath = %q, want %q (match %+v)", name, got, row.want, m)
					}
					n++
				}
			}
		}
	}
	// Every expanded fixture row, plain and regex, must have run.
	if n < 250 {
		t.Fatalf("only %d cases ran", n)
	}
}

// The selected rows printed in kong-reference.md §2.3, checked directly.
func TestUpstreamPathReferenceTable(t *testing.T) {
	cases := []struct {
		service, route string
		strip          bool
		request        string
		v0, v1         string
	}{
		{"/", "/route", false, "/routereq", "/routereq", "/routereq"},
		{"/", "/route", true, "/route", "/", "/"},
		{"/", "/route", true, "/routereq", "/req", "/req"},
		{"/srv", "/rou", false, "/roureq", "/srv/roureq", "/srvroureq"},
		{"/srv", "/rou", true, "/roureq", "/srv/req", "/srvreq"},
		{"/srv/", "/rou", true, "/rou", "/srv", "/srv/"},
		{"/service", "/route", true, "/route/", "/service/", "/service/"},
		{"/service", "/", false, "/route", "/service/route", "/serviceroute"},
		{"/service", "/", true, "/route", "/service/route", "/serviceroute"},
		{"/service/", "/route/", true, "/route/req", "/service/req", "/service/req"},
		{"/service", "", false, "/", "/service", "/service"},
		{"/service", "", true, "/", "/service", "/service"},
		{"/service", "/route", true, "/route%2E%2E/req", "/service/req", "/servicereq"},
	}
	for _, c := range cases {
		for _, h := range []string{"v0", "v1"} {
			rt := &Route{ID: "x", Methods: []string{"GET"}, StripPath: c.strip, PathHandling: h}
			if c.route != "" {
				rt.Paths = []string{c.route}
			}
			r, err := New(rt)
			if err != nil {
				t.Fatal(err)
			}
			m, ok := r.Match(&Request{Method: "GET", Path: c.request})
			if !ok {
				t.Fatalf("%+v: no match", c)
			}
			want := c.v0
			if h == "v1" {
				want = c.v1
			}
			if got := UpstreamPath(c.service, m); got != want {
				t.Errorf("%s %+v: got %q, want %q", h, c, got, want)
			}
		}
	}
}

func TestUpstreamPathEmptyPathHandlingIsV0(t *testing.T) {
	m := Match{Route: &Route{StripPath: true}, Path: "/rou", MatchedPath: "/rou", StripPrefix: "/rou"}
	if got := UpstreamPath("/srv/", m); got != "/srv" {
		t.Fatalf("got %q", got)
	}
}

func TestUpstreamPathRegexStripsWholeMatch(t *testing.T) {
	r, err := New(&Route{ID: "a", Paths: []string{`~/users/\d+`}, StripPath: true})
	if err != nil {
		t.Fatal(err)
	}
	m, ok := r.Match(&Request{Path: "/users/123/profile"})
	if !ok {
		t.Fatal("no match")
	}
	if m.StripPrefix != "/users/123" {
		t.Fatalf("StripPrefix = %q", m.StripPrefix)
	}
	if got := UpstreamPath("/anything", m); got != "/anything/profile" {
		t.Fatalf("got %q", got)
	}
}
