package router

import (
	"errors"
	"fmt"
	"regexp"
	"regexp/syntax"
	"strings"
)

// reserved holds the RFC 3986 reserved characters (plus '%'). Their
// percent-encoded forms are semantically different from the literal
// character ("/a%2Fb" is one segment, "/a/b" two), so normalisation keeps
// them encoded and only upper-cases the hex digits. Everything else is
// decoded, as Kong does, so "/h%65llo" routes like "/hello".
var reserved = [256]bool{}

// wireSafe holds the bytes that may appear unescaped in an upstream
// request line: Kong's escape() set. Anything else (space, controls,
// non-ASCII produced by decoding) is re-encoded before proxying.
var wireSafe = [256]bool{}

func init() {
	for _, c := range []byte("!*'();:@&=+$,/?%#[]") {
		reserved[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		wireSafe[c] = true
		wireSafe[c+'a'-'A'] = true
	}
	for c := '0'; c <= '9'; c++ {
		wireSafe[c] = true
	}
	for _, c := range []byte("-_.~!#$&'()*+,/:;=?@[]%") {
		wireSafe[c] = true
	}
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

func upperHex(c byte) byte {
	if 'a' <= c && c <= 'f' {
		return c - 'a' + 'A'
	}
	return c
}

// NormalizePath returns the form of a raw request path that routes are
// matched against and that is proxied upstream: percent-encoded
// non-reserved bytes are decoded (reserved ones are kept, hex upper-cased),
// then "." and ".." segments are resolved and runs of "/" merged, in that
// order, so "%2E%2E" counts as "..". ".." never climbs above the root.
//
// ok is false when the path cannot be routed: it is empty, does not start
// with "/", contains a NUL byte (literal or encoded), or has a '%' that does
// not start a valid escape. nginx answers 400 to all of these before Kong's
// router runs. Rejecting stray '%' also keeps the result unambiguous and
// idempotent: otherwise "/%6%31" would become "/%61", which the upstream
// would decode to "/a" although the route was chosen for "/%61".
//
// A path that needs no change is returned as is, without allocating.
func NormalizePath(p string) (string, bool) {
	if len(p) == 0 || p[0] != '/' {
		return "", false
	}
	hasPct := false
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case 0:
			return "", false
		case '%':
			hasPct = true
		}
	}
	s := p
	if hasPct {
		var ok bool
		if s, ok = percentDecode(p); !ok {
			return "", false
		}
	}
	if needsDotRemoval(s) {
		s = removeDotSegments(s)
	}
	return s, true
}

func percentDecode(p string) (string, bool) {
	b := make([]byte, 0, len(p))
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c != '%' {
			b = append(b, c)
			continue
		}
		if i+2 >= len(p) {
			return "", false
		}
		hi, ok1 := unhex(p[i+1])
		lo, ok2 := unhex(p[i+2])
		if !ok1 || !ok2 {
			return "", false
		}
		switch d := hi<<4 | lo; {
		case d == 0:
			return "", false
		case reserved[d]:
			b = append(b, '%', upperHex(p[i+1]), upperHex(p[i+2]))
		default:
			b = append(b, d)
		}
		i += 2
	}
	return string(b), true
}

// needsDotRemoval reports whether s contains an empty, "." or ".." segment.
// Checking exactly (rather than for any '.') keeps "/.well-known" and
// "/file.json" on the allocation-free path.
func needsDotRemoval(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] != '/' || i+1 == len(s) {
			continue
		}
		switch s[i+1] {
		case '/':
			return true
		case '.':
			j := i + 2
			if j < len(s) && s[j] == '.' {
				j++
			}
			if j == len(s) || s[j] == '/' {
				return true
			}
		}
	}
	return false
}

// removeDotSegments walks s ("/"-prefixed) one segment at a time. A
// trailing "." or ".." leaves a trailing "/" (as RFC 3986 does), and
// leading ".." segments are dropped rather than rejected.
func removeDotSegments(s string) string {
	out := make([]byte, 0, len(s))
	i := 0
	for i < len(s) {
		// s[i] == '/'; skip a run of slashes down to its last one.
		for i+1 < len(s) && s[i+1] == '/' {
			i++
		}
		k := strings.IndexByte(s[i+1:], '/')
		if k < 0 {
			k = len(s)
		} else {
			k += i + 1
		}
		seg := s[i+1 : k]
		last := k == len(s)
		switch seg {
		case ".":
			if last {
				out = append(out, '/')
			}
		case "..":
			if j := lastSlash(out); j >= 0 {
				out = out[:j]
			}
			if last {
				out = append(out, '/')
			}
		default:
			out = append(out, '/')
			out = append(out, seg...)
		}
		i = k
	}
	return string(out)
}

func lastSlash(b []byte) int {
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == '/' {
			return i
		}
	}
	return -1
}

// EscapePath percent-encodes the bytes of a normalised path that may not
// appear raw on a request line (space, controls, non-ASCII, '"', '<', ...),
// leaving existing escapes alone. It returns p itself when nothing needs
// encoding. UpstreamPath already applies it.
func EscapePath(p string) string {
	n := 0
	for i := 0; i < len(p); i++ {
		if !wireSafe[p[i]] {
			n++
		}
	}
	if n == 0 {
		return p
	}
	const hexDigits = "0123456789ABCDEF"
	b := make([]byte, 0, len(p)+2*n)
	for i := 0; i < len(p); i++ {
		c := p[i]
		if wireSafe[c] {
			b = append(b, c)
			continue
		}
		b = append(b, '%', hexDigits[c>>4], hexDigits[c&15])
	}
	return string(b)
}

// ValidatePath checks one route path the way Kong's routes schema does and
// returns Kong's error message for the first problem found, so the Admin
// API can report it verbatim.
func ValidatePath(p string) error {
	if p == "" {
		return errors.New("length must be at least 1")
	}
	if !strings.HasPrefix(p, "/") && !strings.HasPrefix(p, "~/") {
		return errors.New("should start with: / (fixed path) or ~/ (regex path)")
	}
	if strings.Contains(p, "//") {
		return errors.New("must not have empty segments")
	}
	if bad := badEscape(p); bad != "" {
		return fmt.Errorf("invalid url-encoded value: '%s'", bad)
	}
	if p[0] == '~' {
		_, err := compilePathRegex(p)
		return err
	}
	n, ok := NormalizePath(p)
	if !ok {
		// Only a NUL byte gets here: no request containing one is routable.
		if strings.IndexByte(p, 0) >= 0 {
			return errors.New("must not contain a NUL byte")
		}
		return errors.New("invalid url-encoded value: '%00'")
	}
	if n != p {
		return fmt.Errorf("non-normalized path, consider use '%s' instead", n)
	}
	return nil
}

// badEscape returns the first '%' that does not start a valid triplet,
// with up to two following characters, or "" if all escapes are valid.
// Like Kong, it looks at the path with valid triplets blanked out, so the
// characters shown after the '%' may be "_".
func badEscape(p string) string {
	if !strings.Contains(p, "%") {
		return ""
	}
	raw := []byte(p)
	for i := 0; i+2 < len(raw); i++ {
		if raw[i] != '%' {
			continue
		}
		_, ok1 := unhex(raw[i+1])
		_, ok2 := unhex(raw[i+2])
		if ok1 && ok2 {
			raw[i], raw[i+1], raw[i+2] = '_', '_', '_'
			i += 2
		}
	}
	i := strings.IndexByte(string(raw), '%')
	if i < 0 {
		return ""
	}
	return string(raw[i:min(i+3, len(raw))])
}

// compilePathRegex compiles a "~/..." route path. The pattern is anchored
// at the start only, as in Kong. It is wrapped in a group so that an
// alternation ("~/a|/b") stays anchored as a whole; Kong's plain "^"
// prefix would anchor the first branch only.
func compilePathRegex(p string) (*regexp.Regexp, error) {
	pat := pcreNamedGroups(p[1:])
	if _, err := syntax.Parse(pat, syntax.Perl); err != nil {
		return nil, regexError(p[1:], err)
	}
	re, err := regexp.Compile("^(?:" + pat + ")")
	if err != nil {
		return nil, regexError(p[1:], err)
	}
	return re, nil
}

func regexError(p string, err error) error {
	return fmt.Errorf("invalid regex: '%s' (%s)", p, strings.TrimPrefix(err.Error(), "error parsing regexp: "))
}

// pcreNamedGroups rewrites PCRE's "(?<name>" to "(?P<name>". Lookbehind
// "(?<=" / "(?<!" is left alone so that it fails to compile with a clear
// message instead of being mangled.
func pcreNamedGroups(p string) string {
	if !strings.Contains(p, "(?<") {
		return p
	}
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] == '\\' && i+1 < len(p) {
			b.WriteByte(p[i])
			b.WriteByte(p[i+1])
			i++
			continue
		}
		if strings.HasPrefix(p[i:], "(?<") && i+3 < len(p) && isNameStart(p[i+3]) {
			b.WriteString("(?P<")
			i += 2
			continue
		}
		b.WriteByte(p[i])
	}
	return b.String()
}

func isNameStart(c byte) bool {
	return c == '_' || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z')
}
