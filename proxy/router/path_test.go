package router

import (
	"regexp"
	"strings"
	"testing"
)

func TestNormalizePath(t *testing.T) {
	cases := []struct {
		in, want string
		ok       bool
	}{
		// Kong's kong.tools.uri unit tests (with merge_slashes, as the router uses it).
		{"/", "/", true},
		{"/a", "/a", true},
		{"/a/", "/a/", true},
		{"/a/b/c", "/a/b/c", true},
		{"/a/b/c/", "/a/b/c/", true},
		{"/a%2Fb%2Fc/", "/a%2Fb%2Fc/", true},
		{"/%21%23%24%25%26%27%28%29%2A%2B%2C%2F%3A%3B%3D%3F%40%5B%5D", "/%21%23%24%25%26%27%28%29%2A%2B%2C%2F%3A%3B%3D%3F%40%5B%5D", true},
		{"/%20%21", "/ %21", true},
		{"/a%2fb%2fc/", "/a%2Fb%2Fc/", true},
		{"/f%6f%6f", "/foo", true},
		{"/%6B%6f%6e%67", "/kong", true},
		{"/%2E", "/", true},
		{"//", "/", true},
		{"/./", "/", true},
		{"/.", "/", true},
		{"/..", "/", true},
		{"/../", "/", true},
		{"/////", "/", true},
		{"/./.././../", "/", true},
		{"/a/b/c/./../../g", "/a/g", true},
		{"/a//b//", "/a/b/", true},
		{"/endel%C3%B8st", "/endel\xc3\xb8st", true},
		{"/t/Abc%20123%C3%B8/parent/../test/.", "/t/Abc 123\xc3\xb8/test/", true},
		{"/ä/a/%2e./a%2E//a/%2e/./a/../a/%2e%2E/%5f%99%af%2f%2F", "/ä/a./a/_\x99\xaf%2F%2F", true},
		// Router integration cases.
		{"/foo/a/../bar", "/foo/bar", true},
		{"/foo//bar", "/foo/bar", true},
		{"/foo/./bar", "/foo/bar", true},
		{"/h%65llo", "/hello", true},
		{"/route%2E%2E/req", "/route../req", true},
		// Edge cases.
		{"/a/.", "/a/", true},
		{"/a/..", "/", true},
		{"/a/b/..", "/a/", true},
		{"/.well-known/x.json", "/.well-known/x.json", true},
		{"/...", "/...", true},
		{"/a/.../b", "/a/.../b", true},
		{"/a/..b/", "/a/..b/", true},
		{"/%252E", "/%252E", true},
		{"/%2e%2e/%2e%2e/x", "/x", true},
		{"/.//a", "/a", true},
		{"/a//../b", "/b", true},
		// Not routable.
		{"", "", false},
		{"a/b", "", false},
		{"*", "", false},
		{"/a%00b", "", false},
		{"/a\x00b", "", false},
		{"/%zz", "", false},
		{"/a%", "", false},
		{"/a%4", "", false},
		{"/a%4g", "", false},
		{"/%6%31dmin", "", false},
	}
	for _, c := range cases {
		got, ok := NormalizePath(c.in)
		if got != c.want || ok != c.ok {
			t.Errorf("NormalizePath(%q) = %q, %v; want %q, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}

func TestNormalizePathDoesNotAllocateWhenClean(t *testing.T) {
	for _, p := range []string{"/", "/api/v1/users/42", "/.well-known/openid-configuration", "/file.tar.gz"} {
		if n := testing.AllocsPerRun(100, func() { NormalizePath(p) }); n != 0 {
			t.Errorf("%q: %v allocs", p, n)
		}
	}
}

func TestValidatePath(t *testing.T) {
	cases := []struct{ in, err string }{
		{"/", ""},
		{"/abcd~user~2", ""},
		{"/ovo/", ""},
		{"/abcd\xaa\x10\xff\xAA\xFF", ""},
		{"/a%2Fb", ""},
		{`~/users/\d+/profile`, ""},
		{"~/status/(?<foo>re)", ""},
		{"~/delay/(?<delay>[^\\/]+)$", ""},
		{"", "length must be at least 1"},
		{"foo", "should start with: / (fixed path) or ~/ (regex path)"},
		{"~foo", "should start with: / (fixed path) or ~/ (regex path)"},
		{"/foo//bar", "must not have empty segments"},
		{"/foo/bar//", "must not have empty segments"},
		{"//foo/bar", "must not have empty segments"},
		{"/some%2words", "invalid url-encoded value: '%2w'"},
		{"/some%0Xwords", "invalid url-encoded value: '%0X'"},
		{"/some%2Gwords", "invalid url-encoded value: '%2G'"},
		{"/some%20words%", "invalid url-encoded value: '%'"},
		{"/some%20words%a", "invalid url-encoded value: '%a'"},
		{"/some%20words%ax", "invalid url-encoded value: '%ax'"},
		{"/a%%20", "invalid url-encoded value: '%__'"},
		{"/a/../b", "non-normalized path, consider use '/b' instead"},
		{"/a/./b", "non-normalized path, consider use '/a/b' instead"},
		{"/f%6fo", "non-normalized path, consider use '/foo' instead"},
		{"/a%2fb", "non-normalized path, consider use '/a%2Fb' instead"},
		{"/a%00", "invalid url-encoded value: '%00'"},
		{"/a\x00", "must not contain a NUL byte"},
		{"~/users/(foo/profile", "invalid regex: '/users/(foo/profile' (missing closing ): `/users/(foo/profile`)"},
		{"~/a(?<=b)", "invalid regex: '/a(?<=b)' ("},
		{"~/a{2,1}", "invalid regex: '/a{2,1}' ("},
	}
	for _, c := range cases {
		err := ValidatePath(c.in)
		switch {
		case c.err == "" && err != nil:
			t.Errorf("ValidatePath(%q) = %v, want ok", c.in, err)
		case c.err != "" && err == nil:
			t.Errorf("ValidatePath(%q) = ok, want %q", c.in, c.err)
		case c.err != "" && !strings.HasPrefix(err.Error(), c.err):
			t.Errorf("ValidatePath(%q) = %q, want %q", c.in, err, c.err)
		}
	}
}

func TestEscapePath(t *testing.T) {
	cases := []struct{ in, want string }{
		{"/!#$%&'()*+,/:;=?@[]ABCXYZabcxyz0129-_.~", "/!#$%&'()*+,/:;=?@[]ABCXYZabcxyz0129-_.~"},
		{"/a b/c d", "/a%20b/c%20d"},
		{"/a\U0001F600", "/a%F0%9F%98%80"},
		{"/endel\xc3\xb8st", "/endel%C3%B8st"},
		{"/a\"<>\\^`{|}", "/a%22%3C%3E%5C%5E%60%7B%7C%7D"},
		{"/x\r\n", "/x%0D%0A"},
	}
	for _, c := range cases {
		if got := EscapePath(c.in); got != c.want {
			t.Errorf("EscapePath(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestPCRENamedGroups(t *testing.T) {
	cases := []struct{ in, want string }{
		{"/a", "/a"},
		{"/(?<id>\\d+)", "/(?P<id>\\d+)"},
		{"/(?<a>x)(?<b_2>y)", "/(?P<a>x)(?P<b_2>y)"},
		{"/(?<=x)", "/(?<=x)"},
		{"/(?<!x)", "/(?<!x)"},
		{`/\(?<x>`, `/\(?<x>`},
		{"/(?P<id>x)", "/(?P<id>x)"},
	}
	for _, c := range cases {
		if got := pcreNamedGroups(c.in); got != c.want {
			t.Errorf("pcreNamedGroups(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

var pctTriplet = regexp.MustCompile(`%[0-9A-Fa-f]{2}`)

// refNormalize is an independent, deliberately naive restatement of Kong's
// normalisation (regexp decoding, then RFC 3986 §5.2.4's input-buffer
// loop with "//" merging) that NormalizePath is checked against.
func refNormalize(p string) (string, bool) {
	if p == "" || p[0] != '/' || strings.Contains(p, "\x00") {
		return "", false
	}
	if strings.Count(p, "%") != len(pctTriplet.FindAllString(p, -1)) {
		return "", false
	}
	nul := false
	s := pctTriplet.ReplaceAllStringFunc(p, func(m string) string {
		hi, _ := unhex(m[1])
		lo, _ := unhex(m[2])
		c := hi<<4 | lo
		if c == 0 {
			nul = true
		}
		if strings.IndexByte("!*'();:@&=+$,/?%#[]", c) >= 0 {
			return strings.ToUpper(m)
		}
		return string([]byte{c})
	})
	if nul {
		return "", false
	}
	var out []string
	pop := func() {
		if len(out) > 0 {
			out = out[:len(out)-1]
		}
	}
	for s != "" {
		switch {
		case s == "/.":
			s = "/"
		case s == "/..":
			s = "/"
			pop()
		case strings.HasPrefix(s, "/./"):
			s = s[2:]
		case strings.HasPrefix(s, "/../"):
			s = s[3:]
			pop()
		case strings.HasPrefix(s, "//"):
			s = s[1:]
		default:
			end := len(s)
			if i := strings.IndexByte(s[1:], '/'); i >= 0 {
				end = i + 1
			}
			out = append(out, s[:end])
			s = s[end:]
		}
	}
	return strings.Join(out, ""), true
}

func FuzzNormalizePath(f *testing.F) {
	// More seeds live in testdata/fuzz/FuzzNormalizePath.
	for _, s := range []string{"/", "/a/b/../c", "/%2e%2E/x", "//a//b/", "/a%2fb", "/%C3%A4"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		got, ok := NormalizePath(p)
		want, wantOK := refNormalize(p)
		if got != want || ok != wantOK {
			t.Fatalf("NormalizePath(%q) = %q, %v; reference %q, %v", p, got, ok, want, wantOK)
		}
		if !ok {
			return
		}
		if got == "" || got[0] != '/' || len(got) > len(p) {
			t.Fatalf("NormalizePath(%q) = %q: bad shape", p, got)
		}
		for _, bad := range []string{"//", "/./", "/../", "\x00"} {
			if strings.Contains(got, bad) {
				t.Fatalf("NormalizePath(%q) = %q contains %q", p, got, bad)
			}
		}
		if strings.HasSuffix(got, "/.") || strings.HasSuffix(got, "/..") {
			t.Fatalf("NormalizePath(%q) = %q ends in a dot segment", p, got)
		}
		if again, ok := NormalizePath(got); !ok || again != got {
			t.Fatalf("not idempotent: %q -> %q -> %q (%v)", p, got, again, ok)
		}
		esc := EscapePath(got)
		for i := 0; i < len(esc); i++ {
			if !wireSafe[esc[i]] {
				t.Fatalf("EscapePath(%q) = %q leaves %q", got, esc, esc[i])
			}
		}
		// A route whose path is the normalised request path must accept it
		// and match it.
		if ValidatePath(got) == nil {
			r, err := New(&Route{ID: "x", Paths: []string{got}})
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := r.Match(&Request{Path: p}); !ok {
				t.Fatalf("route %q does not match request %q", got, p)
			}
		}
	})
}
