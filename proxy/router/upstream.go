package router

import "strings"

// UpstreamPath returns the path to send upstream for a match, following
// Kong's path_handling rules (v0 by default, v1 when the route asks for it)
// together with strip_path. servicePath "" means the service has no path,
// which behaves like "/".
//
// The result is built from the normalised request path and is escaped for
// the wire (see EscapePath); the query string is not included.
func UpstreamPath(servicePath string, m Match) string {
	base := servicePath
	if base == "" {
		base = "/"
	}
	req := m.Path
	if req == "" {
		req = "/"
	}
	strip, v1 := false, false
	if m.Route != nil {
		strip = m.Route.StripPath
		v1 = m.Route.PathHandling == "v1"
	}

	// The postfix is what follows the stripped prefix. Without a path match
	// (or without strip_path) it is the whole path minus its leading "/":
	// Kong computes it that way even for strip_path routes matched by host.
	var postfix string
	if strip && m.MatchedPath != "" && strings.HasPrefix(req, m.StripPrefix) {
		postfix = req[len(m.StripPrefix):]
	} else {
		postfix = req[1:]
	}
	postfix = sanitizePostfix(postfix)

	var up string
	if v1 {
		up = upstreamV1(base, postfix, req, strip)
	} else {
		up = upstreamV0(base, postfix, req, strip)
	}
	return EscapePath(up)
}

// sanitizePostfix drops a leading "." or ".." segment left over when a
// prefix ends inside a segment (route "/foo", request "/foo../x"), so the
// upstream never receives a dot segment that would climb out of the
// service path.
func sanitizePostfix(s string) string {
	switch {
	case s == "." || s == "..":
		return ""
	case strings.HasPrefix(s, "./"):
		return s[2:]
	case strings.HasPrefix(s, "../"):
		return s[3:]
	}
	return s
}

// upstreamV0 joins base and the request the "smart" way: exactly one "/"
// between them, and a trailing "/" on the request is carried over when
// nothing but the prefix remains.
func upstreamV0(base, postfix, req string, strip bool) string {
	if strings.HasSuffix(base, "/") {
		if !strip {
			return base + req[1:]
		}
		switch {
		case postfix == "":
			if base == "/" || strings.HasSuffix(req, "/") {
				return base
			}
			return base[:len(base)-1]
		case postfix[0] == '/':
			return base[:len(base)-1] + postfix
		default:
			return base + postfix
		}
	}
	if !strip {
		if req == "/" {
			return base
		}
		return base + req
	}
	switch {
	case postfix == "":
		if len(req) > 1 && strings.HasSuffix(req, "/") {
			return base + "/"
		}
		return base
	case postfix[0] == '/':
		return base + postfix
	default:
		return base + "/" + postfix
	}
}

// upstreamV1 is the deprecated naive concatenation: it only avoids a
// doubled "/" at the join.
func upstreamV1(base, postfix, req string, strip bool) string {
	if !strip {
		return base + req[1:]
	}
	if strings.HasSuffix(base, "/") && strings.HasPrefix(postfix, "/") {
		return base[:len(base)-1] + postfix
	}
	return base + postfix
}
