// Package decode turns Admin API request bodies (JSON, urlencoded forms and
// multipart forms) into one generic, JSON-shaped tree, following Kong's
// kong/api/arguments.lua behaviour. See DESIGN.md for the exact rules.
package decode

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"sort"
	"strings"
)

// MaxArgs is the largest number of form fields (urlencoded pairs or
// multipart parts) accepted; one more gives ErrTooManyArgs.
const MaxArgs = 1000

// MaxDepth bounds nesting: a JSON body may nest at most MaxDepth objects or
// arrays, and a form key may have at most MaxDepth path segments.
const MaxDepth = 64

// The first four errors are returned unwrapped, so their Error() text is the
// message Kong sends. ErrBadForm may be wrapped with a detail; use errors.Is.
var (
	// ErrBadJSON: malformed JSON, JSON that is not an object, nesting deeper
	// than MaxDepth, or an empty body with a JSON content type.
	ErrBadJSON = errors.New("Cannot parse JSON body")
	// ErrUnsupported: a non-empty body whose content type is missing or is
	// not JSON, urlencoded or multipart (the caller answers 415).
	ErrUnsupported = errors.New("Unsupported Content-Type")
	// ErrTooLarge: the body is longer than maxBytes (the caller answers 413).
	ErrTooLarge = errors.New("request body too large")
	// ErrTooManyArgs: more than MaxArgs form fields.
	ErrTooManyArgs = errors.New("Too many arguments")
	// ErrBadForm: a form or multipart body that cannot be decoded: bad
	// percent-encoding, a broken multipart stream, a key nested deeper than
	// MaxDepth, or keys whose shapes conflict (a=1&a.b=2).
	ErrBadForm = errors.New("invalid form body")
)

type bodyKind int

const (
	kindNone bodyKind = iota
	kindJSON
	kindForm
	kindMultipart
	kindOther
)

// classify returns the kind of body a Content-Type header announces, and the
// media type parameters (needed for the multipart boundary).
func classify(contentType string) (bodyKind, map[string]string) {
	if strings.TrimSpace(contentType) == "" {
		return kindNone, nil
	}
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil && mt == "" {
		// Unparseable parameters: fall back to the part before ';'.
		mt, _, _ = strings.Cut(contentType, ";")
		mt = strings.ToLower(strings.TrimSpace(mt))
	}
	switch {
	case mt == "application/json",
		strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"):
		return kindJSON, params
	case mt == "application/x-www-form-urlencoded":
		return kindForm, params
	case mt == "multipart/form-data":
		return kindMultipart, params
	}
	return kindOther, params
}

// Body decodes an Admin API request body into a generic JSON-like tree: a
// map[string]any whose values are string, float64, bool, nil, []any or
// map[string]any. JSON numbers become float64; form and multipart leaves are
// always strings (the caller infers types against a schema).
//
// contentType is the raw Content-Type header. maxBytes bounds the body
// (ErrTooLarge beyond it); maxBytes <= 0 means no bound. A nil r is an empty
// body. On success the map is never nil.
func Body(contentType string, r io.Reader, maxBytes int64) (map[string]any, error) {
	kind, params := classify(contentType)
	body, err := readBody(r, maxBytes)
	if err != nil {
		return nil, err
	}
	if len(body) == 0 {
		if kind == kindJSON {
			return nil, ErrBadJSON
		}
		return map[string]any{}, nil
	}
	switch kind {
	case kindJSON:
		return decodeJSON(body)
	case kindForm:
		return decodeURLEncoded(body)
	case kindMultipart:
		return decodeMultipart(body, params["boundary"])
	}
	return nil, ErrUnsupported
}

func readBody(r io.Reader, maxBytes int64) ([]byte, error) {
	if r == nil {
		return nil, nil
	}
	if maxBytes > 0 && maxBytes < 1<<62 {
		r = io.LimitReader(r, maxBytes+1)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, ErrTooLarge
		}
		return nil, fmt.Errorf("decode: reading request body: %w", err)
	}
	if maxBytes > 0 && int64(len(b)) > maxBytes {
		return nil, ErrTooLarge
	}
	return b, nil
}

// decodeJSON accepts only a JSON object nested at most MaxDepth deep.
func decodeJSON(body []byte) (map[string]any, error) {
	if jsonTooDeep(body, MaxDepth) {
		return nil, ErrBadJSON
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return nil, ErrBadJSON
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, ErrBadJSON
	}
	return m, nil
}

// jsonTooDeep reports whether the brackets in b, outside string literals,
// nest deeper than limit. It is exact for valid JSON; for invalid JSON its
// answer does not matter because the body is rejected either way.
func jsonTooDeep(b []byte, limit int) bool {
	depth := 0
	inString, escaped := false, false
	for _, c := range b {
		if inString {
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '{', '[':
			depth++
			if depth > limit {
				return true
			}
		case '}', ']':
			depth--
		}
	}
	return false
}

// pair is one form field, in body order.
type pair struct {
	key, value string
}

func decodeURLEncoded(body []byte) (map[string]any, error) {
	var pairs []pair
	for field := range strings.SplitSeq(string(body), "&") {
		if field == "" {
			continue
		}
		if len(pairs) == MaxArgs {
			return nil, ErrTooManyArgs
		}
		k, v, _ := strings.Cut(field, "=")
		key, err := url.QueryUnescape(k)
		if err != nil {
			return nil, fmt.Errorf("%w: bad escape in key %q", ErrBadForm, k)
		}
		value, err := url.QueryUnescape(v)
		if err != nil {
			return nil, fmt.Errorf("%w: bad escape in value of %q", ErrBadForm, key)
		}
		pairs = append(pairs, pair{key, value})
	}
	return build(pairs)
}

func decodeMultipart(body []byte, boundary string) (map[string]any, error) {
	if boundary == "" {
		return nil, fmt.Errorf("%w: multipart body without a boundary", ErrBadForm)
	}
	mr := multipart.NewReader(bytes.NewReader(body), boundary)
	var pairs []pair
	for parts := 0; ; parts++ {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadForm, err)
		}
		if parts == MaxArgs {
			return nil, ErrTooManyArgs
		}
		name := p.FormName()
		// The part's content (a file's too) is bounded by the body, which
		// is already in memory and bounded by maxBytes.
		content, err := io.ReadAll(p)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadForm, err)
		}
		if name == "" {
			continue
		}
		pairs = append(pairs, pair{name, string(content)})
	}
	return build(pairs)
}

// Form applies the form nesting rules to already-parsed values, such as a
// query string. Keys are processed in sorted order (url.Values has no order),
// values of one key in their given order.
func Form(values url.Values) (map[string]any, error) {
	n := 0
	keys := make([]string, 0, len(values))
	for k, vs := range values {
		n += len(vs)
		keys = append(keys, k)
	}
	if n > MaxArgs {
		return nil, ErrTooManyArgs
	}
	sort.Strings(keys)
	pairs := make([]pair, 0, n)
	for _, k := range keys {
		for _, v := range values[k] {
			pairs = append(pairs, pair{k, v})
		}
	}
	return build(pairs)
}

// ---- key parsing ----

type segKind int

const (
	segName   segKind = iota // a.NAME or a[NAME]: map key
	segIndex                 // a[3]: array index
	segAppend                // a[]: new array element
)

type segment struct {
	kind segKind
	name string // map key, or canonical index digits (no leading zeros)
}

// parseKey splits a form key into path segments. Grammar:
//
//	key  = name { "." name | "[" inner "]" }
//
// where a name is a non-empty run without '.' and '[', and inner is any run
// without ']' (dots inside brackets are literal). An empty inner appends to
// an array, an all-digit inner is an array index, anything else is a map
// key. A key that does not fit the grammar (a.., .a, a., a[b, a[b]c, [a])
// is taken literally as a single map key.
func parseKey(key string) []segment {
	literal := []segment{{segName, key}}
	j := strings.IndexAny(key, ".[")
	if j < 0 {
		return literal
	}
	if j == 0 {
		return literal
	}
	segs := []segment{{segName, key[:j]}}
	i := j
	for i < len(key) {
		switch key[i] {
		case '.':
			rest := key[i+1:]
			k := strings.IndexAny(rest, ".[")
			if k < 0 {
				k = len(rest)
			}
			if k == 0 {
				return literal
			}
			segs = append(segs, segment{segName, rest[:k]})
			i += 1 + k
		case '[':
			rest := key[i+1:]
			k := strings.IndexByte(rest, ']')
			if k < 0 {
				return literal
			}
			segs = append(segs, bracket(rest[:k]))
			i += k + 2
			if i < len(key) && key[i] != '.' && key[i] != '[' {
				return literal
			}
		default:
			// Unreachable: every step stops on '.' or '['.
			return literal
		}
	}
	return segs
}

func bracket(inner string) segment {
	if inner == "" {
		return segment{kind: segAppend}
	}
	for i := 0; i < len(inner); i++ {
		if inner[i] < '0' || inner[i] > '9' {
			return segment{segName, inner}
		}
	}
	canon := strings.TrimLeft(inner, "0")
	if canon == "" {
		canon = "0"
	}
	return segment{segIndex, canon}
}

// ---- tree building ----

type scalar struct {
	seq   int
	value string
}

type element struct {
	seq  int
	node *node
}

// node collects everything assigned under one path; its final shape
// (string, array or map) is decided by resolve once all pairs are in.
type node struct {
	scalars  []scalar         // plain assignments, in order
	named    map[string]*node // .name and [name] children
	indexed  map[string]*node // [N] children, keyed by canonical digits
	appended []element        // [] children, in order
}

func (n *node) insert(path []segment, value string, seq int) {
	for len(path) > 0 {
		s := path[0]
		path = path[1:]
		var child *node
		switch s.kind {
		case segName:
			if n.named == nil {
				n.named = map[string]*node{}
			}
			child = n.named[s.name]
			if child == nil {
				child = &node{}
				n.named[s.name] = child
			}
		case segIndex:
			if n.indexed == nil {
				n.indexed = map[string]*node{}
			}
			child = n.indexed[s.name]
			if child == nil {
				child = &node{}
				n.indexed[s.name] = child
			}
		case segAppend:
			child = &node{}
			n.appended = append(n.appended, element{seq, child})
		}
		n = child
	}
	n.scalars = append(n.scalars, scalar{seq, value})
}

func build(pairs []pair) (map[string]any, error) {
	root := &node{}
	for seq, p := range pairs {
		path := parseKey(p.key)
		if len(path) > MaxDepth {
			return nil, fmt.Errorf("%w: key %q is nested too deeply", ErrBadForm, p.key)
		}
		root.insert(path, p.value, seq)
	}
	m := make(map[string]any, len(root.named))
	for k, child := range root.named {
		v, err := child.resolve(k)
		if err != nil {
			return nil, err
		}
		m[k] = v
	}
	return m, nil
}

// resolve turns a node into its value. path names the node for errors.
//
//   - only plain assignments: one gives a string, several give an array of
//     strings in body order;
//   - named children (possibly with indexed ones): a map, indexes becoming
//     decimal string keys; plain or [] assignments alongside are a conflict;
//   - otherwise an array: indexed elements sorted by index (holes closed up,
//     so 0- and 1-based numbering both work), then plain and [] assignments
//     in body order.
func (n *node) resolve(path string) (any, error) {
	if n.named == nil && n.indexed == nil && n.appended == nil {
		if len(n.scalars) == 1 {
			return n.scalars[0].value, nil
		}
		arr := make([]any, len(n.scalars))
		for i, s := range n.scalars {
			arr[i] = s.value
		}
		return arr, nil
	}
	if n.named != nil {
		if len(n.scalars) > 0 || len(n.appended) > 0 {
			return nil, fmt.Errorf("%w: %q is used both as a value and as an object", ErrBadForm, path)
		}
		m := make(map[string]any, len(n.named)+len(n.indexed))
		for k, child := range n.named {
			v, err := child.resolve(path + "." + k)
			if err != nil {
				return nil, err
			}
			m[k] = v
		}
		for k, child := range n.indexed {
			if _, dup := m[k]; dup {
				return nil, fmt.Errorf("%w: %q is given twice as %s.%s and %s[%s]", ErrBadForm, path+"."+k, path, k, path, k)
			}
			v, err := child.resolve(path + "." + k)
			if err != nil {
				return nil, err
			}
			m[k] = v
		}
		return m, nil
	}

	idx := make([]string, 0, len(n.indexed))
	for k := range n.indexed {
		idx = append(idx, k)
	}
	sort.Slice(idx, func(i, j int) bool {
		if len(idx[i]) != len(idx[j]) {
			return len(idx[i]) < len(idx[j])
		}
		return idx[i] < idx[j]
	})
	arr := make([]any, 0, len(idx)+len(n.scalars)+len(n.appended))
	for _, k := range idx {
		v, err := n.indexed[k].resolve(path + "[" + k + "]")
		if err != nil {
			return nil, err
		}
		arr = append(arr, v)
	}
	// Merge plain and [] assignments by body order.
	s, a := n.scalars, n.appended
	for len(s) > 0 || len(a) > 0 {
		if len(a) == 0 || (len(s) > 0 && s[0].seq < a[0].seq) {
			arr = append(arr, s[0].value)
			s = s[1:]
			continue
		}
		v, err := a[0].node.resolve(path + "[]")
		if err != nil {
			return nil, err
		}
		arr = append(arr, v)
		a = a[1:]
	}
	return arr, nil
}
