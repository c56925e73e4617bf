// Package router selects the Kong route for an HTTP request, with the
// semantics of Kong's default "traditional_compatible" router flavor, and
// computes the upstream path (strip_path / path_handling).
//
// A Router is an immutable value: Upsert and Delete return a new Router
// and leave the receiver untouched, so readers never lock and a config
// change costs one route's compilation plus a copy of slices of pointers.
package router

import (
	"maps"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/gatehouse-gw/gatehouse/proxy/cow"
)

// Route is the routing view of one Kong route (already validated by the
// caller). The router keeps the pointer and returns it in Match; the caller
// must not modify a Route after handing it over.
type Route struct {
	ID            string              // uuid; ties in priority go to the higher ID (string compare), as atc-router does
	Methods       []string            // uppercase; empty = any
	Hosts         []string            // "example.com", "*.example.com", "example.*", optional ":port" suffix
	Paths         []string            // "/prefix" or "~/regex"
	Headers       map[string][]string // lowercase name -> values; "~*regex" = regex; values OR-ed, names AND-ed; case-insensitive
	SNIs          []string            // only checked when Request.TLS
	RegexPriority int
	StripPath     bool
	PathHandling  string // "v0" (default when empty) or "v1"
	Payload       any    // opaque to the router; returned in Match
}

// Request is what the router needs from an incoming request.
type Request struct {
	Method string
	Host   string                           // Host header, possibly with :port
	Port   int                              // local port the request came in on (used when the route host has :port and the Host header has none)
	Path   string                           // raw request path, no query string, not yet normalised
	Header func(name string) (string, bool) // lookup by lowercase name; may be nil
	TLS    bool
	SNI    string // TLS server name; only used when TLS is set
}

// Match describes the selected route.
type Match struct {
	Route       *Route
	Path        string            // the normalised request path that was matched
	MatchedPath string            // the route path that matched ("" for a host/method/header-only match)
	StripPrefix string            // the part of Path that strip_path removes ("" if none)
	Captures    map[string]string // named + numbered regex captures ("0","1",.. and names); nil for prefix paths
}

// Router is an immutable, priority-ordered set of routes; safe for
// concurrent readers.
type Router struct {
	// rest indexes by path the entries of routes without hosts.
	rest pathIndex
	// byHost buckets the entries of routes with hosts under each of their
	// host patterns, per kind: the lowercase name (port removed) for a
	// plain host, ".x.com" for "*.x.com", "x." for "x.*"; each bucket is
	// indexed by path. Such an entry can only match a request whose host
	// matches one of its patterns, so a request needs to look only at the
	// buckets its host could match (its name, each of its suffixes from a
	// dot, each of its prefixes to a dot) and at rest, merged in priority
	// order.
	byHost [3]*cow.Map[pathIndex]
	// byID holds each route's entries, in priority order.
	byID *cow.Map[[]*entry]
	n    int // number of routes
}

// New builds a router. If several routes share an ID the last one wins.
// It fails on the first route whose regex (path or header) does not
// compile.
func New(routes ...*Route) (*Router, error) {
	last := make(map[string]int, len(routes))
	for i, rt := range routes {
		last[rt.ID] = i
	}
	var all []*entry
	ids := (*cow.Map[[]*entry])(nil).Edit()
	n := 0
	for i, rt := range routes {
		if last[rt.ID] != i {
			continue
		}
		es, err := compileRoute(rt)
		if err != nil {
			return nil, err
		}
		slices.SortFunc(es, compareEntries)
		ids.Set(rt.ID, es)
		all = append(all, es...)
		n++
	}
	slices.SortFunc(all, compareEntries)
	r := &Router{byID: ids.Done(), n: n}
	var rest []*entry
	buckets := map[hostKey][]*entry{}
	for _, e := range all {
		if len(e.c.hostKeys) == 0 {
			rest = append(rest, e)
			continue
		}
		for _, k := range e.c.hostKeys {
			buckets[k] = append(buckets[k], e)
		}
	}
	r.rest = buildIndex(rest)
	var edits [3]*cow.Edit[pathIndex]
	for k, b := range buckets {
		if edits[k.kind] == nil {
			edits[k.kind] = (*cow.Map[pathIndex])(nil).Edit()
		}
		edits[k.kind].Set(k.value, buildIndex(b))
	}
	for kind, e := range edits {
		if e != nil {
			r.byHost[kind] = e.Done()
		}
	}
	return r, nil
}

// Len returns the number of routes.
func (r *Router) Len() int {
	if r == nil {
		return 0
	}
	return r.n
}

// Upsert returns a new router with rt added, or replacing the route with
// the same ID. Only rt is compiled; the other routes' compiled entries are
// shared with r, which is unchanged.
func (r *Router) Upsert(rt *Route) (*Router, error) {
	if r == nil {
		r = &Router{}
	}
	add, err := compileRoute(rt)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(add, compareEntries)
	return r.replace(rt.ID, add), nil
}

// Delete returns a router without the route with that ID. When there is
// no such route r itself is returned, which is equivalent since routers
// are immutable.
func (r *Router) Delete(id string) *Router {
	if r == nil {
		return &Router{}
	}
	if _, ok := r.byID.Get(id); !ok {
		return r
	}
	return r.replace(id, nil)
}

// replace builds the successor of r in which the entries of route id are
// replaced by add (sorted, possibly empty). Indexes and map shards are
// copied, never written in place, because r may be serving requests.
func (r *Router) replace(id string, add []*entry) *Router {
	del, _ := r.byID.Get(id)
	var old, nc *compiled
	if len(del) > 0 {
		old = del[0].c
	}
	if len(add) > 0 {
		nc = add[0].c
	}
	next := &Router{n: r.n, byHost: r.byHost}
	if old == nil {
		next.n++
	}
	ids := r.byID.Edit()
	if nc == nil {
		next.n--
		ids.Del(id)
	} else {
		ids.Set(id, add)
	}
	next.byID = ids.Done()

	var oldKeys, newKeys []hostKey
	if old != nil {
		oldKeys = old.hostKeys
	}
	if nc != nil {
		newKeys = nc.hostKeys
	}
	var restDel, restAdd []*entry
	if old != nil && len(oldKeys) == 0 {
		restDel = del
	}
	if nc != nil && len(newKeys) == 0 {
		restAdd = add
	}
	next.rest = updateIndex(r.rest, restDel, restAdd)

	var edits [3]*cow.Edit[pathIndex]
	for _, k := range slices.Concat(oldKeys, newKeys) {
		if edits[k.kind] == nil {
			edits[k.kind] = r.byHost[k.kind].Edit()
		}
		// The original bucket, so that a key in both lists is rebuilt
		// from it twice to the same result.
		cur, _ := r.byHost[k.kind].Get(k.value)
		var kDel, kAdd []*entry
		if slices.Contains(oldKeys, k) {
			kDel = del
		}
		if slices.Contains(newKeys, k) {
			kAdd = add
		}
		if b := updateIndex(cur, kDel, kAdd); b == nil {
			edits[k.kind].Del(k.value)
		} else {
			edits[k.kind].Set(k.value, b)
		}
	}
	for kind, e := range edits {
		if e != nil {
			next.byHost[kind] = e.Done()
		}
	}
	return next
}

// mergeEntries returns a new slice holding src without the entries in del
// (those absent from src are ignored) and with add inserted; all three are
// in priority order. Positions are found by binary search, since entries
// are totally ordered, so the cost is a few memmoves of pointers rather
// than a comparison per element.
func mergeEntries(src, del, add []*entry) []*entry {
	out := make([]*entry, 0, len(src)+len(add))
	start := 0
	for _, d := range del {
		i, found := slices.BinarySearchFunc(src[start:], d, compareEntries)
		if !found {
			continue
		}
		out = append(out, src[start:start+i]...)
		start += i + 1
	}
	out = append(out, src[start:]...)
	for _, a := range add {
		i, _ := slices.BinarySearchFunc(out, a, compareEntries)
		out = slices.Insert(out, i, a)
	}
	return out
}

// Match returns the highest-priority route matching req.
func (r *Router) Match(req *Request) (Match, bool) {
	if r == nil {
		return Match{}, false
	}
	path, ok := NormalizePath(req.Path)
	if !ok {
		return Match{}, false
	}
	in := input{req: req, path: path, method: methodBit(req.Method)}
	in.host, in.port = splitHostPort(req.Host)
	if in.port < 0 {
		in.port = req.Port
	}
	// One list per indexed prefix of the path, from the host's bucket and
	// from rest; more than 16 only for paths with that many route
	// prefixes along them.
	var buf [16][]*entry
	lists := buf[:0]
	if r.byHost != [3]*cow.Map[pathIndex]{} {
		// Allocates only for a Host header with upper-case letters.
		h := lowerASCII(in.host)
		if b, ok := r.byHost[hostExact].Get(h); ok {
			lists = candidates(b, path, lists)
		}
		if r.byHost[hostSuffix] != nil || r.byHost[hostPrefix] != nil {
			for i := 0; i < len(h); i++ {
				if h[i] != '.' {
					continue
				}
				if b, ok := r.byHost[hostSuffix].Get(h[i:]); ok {
					lists = candidates(b, path, lists)
				}
				if b, ok := r.byHost[hostPrefix].Get(h[:i+1]); ok {
					lists = candidates(b, path, lists)
				}
			}
		}
	}
	lists = candidates(r.rest, path, lists)
	return firstMatch(lists, &in)
}

// input is a request prepared once per Match.
type input struct {
	req    *Request
	method uint16 // methodBit of the request's method
	path   string // normalised
	host   string // Host header without port, original case
	port   int    // Host header port, else Request.Port
}

// splitHostPort splits "host:port" and "[v6]:port". port is -1 when absent
// or not a valid number, in which case the whole value is the host (as
// Kong does with a non-numeric suffix).
func splitHostPort(h string) (string, int) {
	i := strings.LastIndexByte(h, ':')
	if i < 0 || strings.IndexByte(h[i:], ']') >= 0 {
		return h, -1
	}
	if h[0] != '[' && strings.IndexByte(h[:i], ':') >= 0 {
		return h, -1 // bare IPv6 address, no port
	}
	p, ok := parsePort(h[i+1:])
	if !ok {
		return h, -1
	}
	return h[:i], p
}

func parsePort(s string) (int, bool) {
	if s == "" || len(s) > 5 {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, n <= 65535
}

func hasUpper(s string) bool {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return true
		}
	}
	return false
}

// equalFoldASCII compares ASCII case-insensitively, like Lua's
// string.lower that Kong applies. It is also what makes the host index
// (keyed by strings.ToLower of ASCII hosts) agree with the linear scan.
func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if x == y {
			continue
		}
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

func lowerASCII(s string) string {
	if !hasUpper(s) {
		return s
	}
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// ---- compiled form -------------------------------------------------------

type hostKind uint8

const (
	hostExact  hostKind = iota
	hostSuffix          // "*.x.com": value ".x.com"
	hostPrefix          // "x.*": value "x."
)

type hostPattern struct {
	kind  hostKind
	value string // lowercase
	port  int    // 0 = any
}

func (h *hostPattern) match(host string, port int) bool {
	if h.port != 0 && h.port != port {
		return false
	}
	switch h.kind {
	case hostSuffix:
		return len(host) >= len(h.value) && equalFoldASCII(host[len(host)-len(h.value):], h.value)
	case hostPrefix:
		return len(host) >= len(h.value) && equalFoldASCII(host[:len(h.value)], h.value)
	}
	return equalFoldASCII(host, h.value)
}

type headerCond struct {
	name   string
	values []string // lowercase; compared case-insensitively
	res    []*regexp.Regexp
}

func (h *headerCond) match(get func(string) (string, bool)) bool {
	if get == nil {
		return false
	}
	v, ok := get(h.name)
	if !ok {
		return false
	}
	for _, want := range h.values {
		if equalFoldASCII(v, want) {
			return true
		}
	}
	for _, re := range h.res {
		if re.MatchString(v) {
			return true
		}
	}
	return false
}

// compiled is the per-route part shared by the route's entries.
type compiled struct {
	route    *Route
	methods  []string
	hosts    []hostPattern
	hostKeys []hostKey // the distinct buckets of hosts
	headers  []headerCond
	snis     []hostPattern
	plain    bool // has hosts and none is a wildcard
	weight   int  // non-empty fields among methods, hosts, headers, snis
}

// hostKey names a host bucket: a kind and its lowercase value.
type hostKey struct {
	kind  hostKind
	value string
}

type pathKind uint8

const (
	pathNone pathKind = iota
	pathPrefix
	pathRegex
)

// entry is one (route, path) pair. Kong splits a route whose paths differ
// in kind or length so that each path competes with its own priority;
// splitting every path is equivalent and simpler: paths of equal kind and
// length get equal priorities and keep their order through idx.
type entry struct {
	c       *compiled
	route   *Route
	methods uint16 // methodBits of the route's methods; 0: any; otherMethod: see c.methods
	conds   bool   // the route has hosts, SNIs, headers or an otherMethod: see c
	strip   bool
	id      string // route ID, copied here to keep comparisons to one hop
	prio    uint64
	idx     int
	kind    pathKind
	path    string // route path as configured
	prefix  string // the prefix path, or a literal every regex match starts with
	re      *regexp.Regexp
	groups  int
}

// Priority layout (most significant first), as in Kong's traditional
// compatible flavor: match weight (3 bits), plain-hosts-only (1), header
// count (8), regex path (1), regex_priority (32, offset so negative values
// sort below zero instead of wrapping), prefix length (19).
const (
	shiftWeight  = 61
	bitPlain     = 1 << 60
	shiftHeaders = 52
	bitRegex     = 1 << 51
	shiftRegexP  = 19
	maxPrefixLen = 1<<19 - 1
)

func priority(c *compiled, kind pathKind, prefixLen, regexPriority int) uint64 {
	w := c.weight
	if kind != pathNone {
		w++
	}
	p := uint64(w) << shiftWeight
	if c.plain {
		p |= bitPlain
	}
	p |= uint64(min(len(c.headers), 255)) << shiftHeaders
	switch kind {
	case pathRegex:
		rp := int64(min(max(regexPriority, math.MinInt32), math.MaxInt32))
		p |= bitRegex | uint64(rp-math.MinInt32)<<shiftRegexP
	case pathPrefix:
		p |= uint64(min(prefixLen, maxPrefixLen))
	}
	return p
}

// compareEntries orders entries for matching: higher priority first, then
// higher route ID (atc-router walks (priority, uuid) in reverse), then the
// route's own path order.
func compareEntries(a, b *entry) int {
	switch {
	case a.prio != b.prio:
		if a.prio > b.prio {
			return -1
		}
		return 1
	case a.id != b.id:
		if a.id > b.id {
			return -1
		}
		return 1
	}
	return a.idx - b.idx
}

func compileRoute(rt *Route) ([]*entry, error) {
	c := &compiled{route: rt, methods: rt.Methods}
	if len(rt.Methods) > 0 {
		c.weight++
	}
	if len(rt.Hosts) > 0 {
		c.weight++
		c.plain = true
		for _, h := range rt.Hosts {
			hp := parseHost(h)
			c.hosts = append(c.hosts, hp)
			if hp.kind != hostExact {
				c.plain = false
			}
		}
		for _, hp := range c.hosts {
			if k := (hostKey{hp.kind, hp.value}); !slices.Contains(c.hostKeys, k) {
				c.hostKeys = append(c.hostKeys, k)
			}
		}
	}
	if len(rt.Headers) > 0 {
		c.weight++
		names := slices.Sorted(maps.Keys(rt.Headers))
		for _, name := range names {
			hc := headerCond{name: strings.ToLower(name)}
			for _, v := range rt.Headers[name] {
				if pat, ok := strings.CutPrefix(v, "~*"); ok {
					re, err := regexp.Compile("(?i)" + pat)
					if err != nil {
						return nil, regexError(pat, err)
					}
					hc.res = append(hc.res, re)
					continue
				}
				hc.values = append(hc.values, lowerASCII(v))
			}
			c.headers = append(c.headers, hc)
		}
	}
	if len(rt.SNIs) > 0 {
		c.weight++
		for _, s := range rt.SNIs {
			// A trailing dot of an FQDN is not part of the name Kong routes on.
			if len(s) > 1 {
				s = strings.TrimSuffix(s, ".")
			}
			hp := parseHost(s)
			hp.port = 0
			c.snis = append(c.snis, hp)
		}
	}

	base := entry{c: c, id: rt.ID, route: rt, strip: rt.StripPath,
		conds: len(c.hosts) > 0 || len(c.snis) > 0 || len(c.headers) > 0}
	for _, m := range rt.Methods {
		if b := methodBit(m); b == otherMethod {
			base.methods, base.conds = otherMethod, true
			break
		} else {
			base.methods |= b
		}
	}
	if len(rt.Paths) == 0 {
		e := base
		e.prio = priority(c, pathNone, 0, 0)
		return []*entry{&e}, nil
	}
	es := make([]*entry, 0, len(rt.Paths))
	for i, p := range rt.Paths {
		e := new(entry)
		*e = base
		e.idx, e.path = i, p
		if strings.HasPrefix(p, "~") {
			re, err := compilePathRegex(p)
			if err != nil {
				return nil, err
			}
			e.kind, e.re, e.groups = pathRegex, re, re.NumSubexp()
			e.prefix = regexLiteralPrefix(p)
			e.prio = priority(c, pathRegex, 0, rt.RegexPriority)
		} else {
			e.kind, e.prefix = pathPrefix, p
			e.prio = priority(c, pathPrefix, len(p), 0)
		}
		es = append(es, e)
	}
	return es, nil
}

// regexLiteralPrefix returns a literal that every match of a "~/..."
// path starts with ("/users/" for `~/users/\d+`), so that most regex routes
// are rejected by a string comparison instead of running the regex. It is
// taken from the unanchored pattern, whose matches include all matches of
// the anchored one.
func regexLiteralPrefix(p string) string {
	re, err := regexp.Compile(pcreNamedGroups(p[1:]))
	if err != nil {
		return ""
	}
	lit, _ := re.LiteralPrefix()
	return lit
}

func parseHost(h string) hostPattern {
	hp := hostPattern{}
	name, port := splitHostPort(h)
	if port > 0 {
		hp.port = port
	}
	name = lowerASCII(name)
	switch {
	case strings.HasPrefix(name, "*"):
		hp.kind, hp.value = hostSuffix, name[1:]
	case strings.HasSuffix(name, "*"):
		hp.kind, hp.value = hostPrefix, name[:len(name)-1]
	default:
		hp.kind, hp.value = hostExact, name
	}
	return hp
}

// match checks one entry whose key the path starts with (the index only
// offers such entries); cheap conditions run before the regex, which is
// the only step that may allocate. The common conditions are read from
// the entry itself: at 100,000 routes most of a match's cost is waiting
// for memory, so every pointer not followed counts.
func (e *entry) match(in *input) (Match, bool) {
	if e.methods != 0 && e.methods&in.method == 0 {
		return Match{}, false
	}
	if e.conds {
		c := e.c
		if e.methods == otherMethod && !slices.Contains(c.methods, in.req.Method) {
			return Match{}, false
		}
		if len(c.hosts) > 0 && !matchHosts(c.hosts, in.host, in.port) {
			return Match{}, false
		}
		if len(c.snis) > 0 && in.req.TLS && !matchHosts(c.snis, in.req.SNI, 0) {
			return Match{}, false
		}
		for i := range c.headers {
			if !c.headers[i].match(in.req.Header) {
				return Match{}, false
			}
		}
	}
	m := Match{Route: e.route, Path: in.path}
	switch e.kind {
	case pathPrefix:
		m.MatchedPath = e.prefix
		if e.strip {
			m.StripPrefix = e.prefix
		}
	case pathRegex:
		loc := e.re.FindStringSubmatchIndex(in.path)
		if loc == nil {
			return Match{}, false
		}
		m.MatchedPath = e.path
		if e.strip {
			m.StripPrefix = in.path[:loc[1]]
		}
		if e.groups > 0 {
			m.Captures = captures(e.re, in.path, loc)
		}
	}
	return m, true
}

// methodBits maps the methods routes name most to a bit of entry.methods;
// otherMethod stands for any other, checked against the route's list.
var methodBits = map[string]uint16{"GET": 1 << 1, "POST": 1 << 2, "PUT": 1 << 3, "PATCH": 1 << 4, "DELETE": 1 << 5,
	"HEAD": 1 << 6, "OPTIONS": 1 << 7, "CONNECT": 1 << 8, "TRACE": 1 << 9}

const otherMethod = 1

func methodBit(m string) uint16 {
	if b, ok := methodBits[m]; ok {
		return b
	}
	return otherMethod
}

func matchHosts(hs []hostPattern, host string, port int) bool {
	for i := range hs {
		if hs[i].match(host, port) {
			return true
		}
	}
	return false
}

// captures maps "0", "1", ... and group names to the matched text; groups
// that did not participate are left out.
func captures(re *regexp.Regexp, s string, loc []int) map[string]string {
	names := re.SubexpNames()
	out := make(map[string]string, len(names)+1)
	for i := 0; 2*i+1 < len(loc); i++ {
		if loc[2*i] < 0 {
			continue
		}
		v := s[loc[2*i]:loc[2*i+1]]
		out[strconv.Itoa(i)] = v
		if names[i] != "" {
			out[names[i]] = v
		}
	}
	return out
}
