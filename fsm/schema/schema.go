// Package schema describes Kong-style entity and plugin schemas: field types,
// defaults and constraints. One description drives three things that must
// agree: validation (with Kong's error messages), default filling (so stored
// entities always carry every field), and the /schemas endpoints that decK
// reads to compute diffs.
package schema

import (
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Type is a Kong schema field type.
type Type string

// The field types Kong's schemas use.
const (
	String  Type = "string"
	Integer Type = "integer"
	Number  Type = "number"
	Boolean Type = "boolean"
	Array   Type = "array"
	Set     Type = "set"
	Map     Type = "map"
	Record  Type = "record"
	Foreign Type = "foreign"
)

// Field is one schema field. Zero values mean "no constraint".
type Field struct {
	Name     string
	Type     Type
	Default  any // JSON-shaped value; nil means the field defaults to null
	Required bool
	Auto     bool // filled by the server (ids, timestamps)
	Unique   bool
	// Secret fields (credentials) are shown in audit views only as an
	// HMAC of their value.
	Secret bool

	OneOf   []string
	Between *[2]float64
	Gt      *float64
	MinLen  int
	Match   *regexp.Regexp
	MatchEr string // message when Match fails

	Elements  *Field   // array / set
	Keys      *Field   // map
	Values    *Field   // map
	Fields    []*Field // record
	Reference string   // foreign: the referenced entity's collection name
	Nullable  bool     // record: defaults to null instead of a record of its defaults

	// Check runs after the type checks on a non-null value; it returns an
	// error message or "".
	Check func(v any) string
}

// Schema is an entity (or plugin config) schema.
type Schema struct {
	Name   string
	Fields []*Field
}

// Lookup returns the field named n, or nil.
func (s *Schema) Lookup(n string) *Field {
	for _, f := range s.Fields {
		if f.Name == n {
			return f
		}
	}
	return nil
}

// Errors is a Kong "fields" object: field name → message, nested Errors, or
// a list of messages; "@entity" holds entity-level messages.
type Errors map[string]any

// AddEntity appends an entity-level error.
func (e Errors) AddEntity(msg string) {
	l, _ := e["@entity"].([]string)
	e["@entity"] = append(l, msg)
}

// Flatten lists the errors as Kong prints them in a schema-violation
// message: entity errors first, then fields in sorted order, nested fields
// joined with dots.
func (e Errors) Flatten() []string { return e.flatten("") }

func (e Errors) flatten(prefix string) []string {
	var out []string
	if l, ok := e["@entity"].([]string); ok {
		for _, m := range l {
			if prefix == "" {
				out = append(out, m)
			} else {
				out = append(out, prefix+": "+m)
			}
		}
	}
	keys := make([]string, 0, len(e))
	for k := range e {
		if k != "@entity" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		name := k
		if prefix != "" {
			name = prefix + "." + k
		}
		out = append(out, flattenValue(name, e[k])...)
	}
	return out
}

func flattenValue(name string, v any) []string {
	switch x := v.(type) {
	case Errors:
		return x.flatten(name)
	case []any:
		var out []string
		for i, el := range x {
			if el != nil {
				out = append(out, flattenValue(fmt.Sprintf("%s.%d", name, i+1), el)...)
			}
		}
		return out
	}
	return []string{fmt.Sprintf("%s: %v", name, v)}
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// Message is the Kong schema-violation message for these errors.
func (e Errors) Message() string {
	l := e.Flatten()
	if len(l) == 1 {
		return "schema violation (" + l[0] + ")"
	}
	return fmt.Sprintf("%d schema violations (%s)", len(l), strings.Join(l, "; "))
}

// Normalize validates in against s and returns a new map holding every
// schema field: given values (type-checked) and, when fill is true, defaults
// for the missing ones. Unknown fields are errors. It never mutates in.
func (s *Schema) Normalize(in map[string]any, fill bool) (map[string]any, Errors) {
	return normalizeRecord(s.Fields, in, fill)
}

func normalizeRecord(fields []*Field, in map[string]any, fill bool) (map[string]any, Errors) {
	out := make(map[string]any, len(fields))
	errs := Errors{}
	for k := range in {
		if !hasField(fields, k) {
			errs[k] = "unknown field"
		}
	}
	for _, f := range fields {
		v, present := in[f.Name]
		if v == nil && !present && fill {
			switch {
			case f.Default != nil:
				v = deepCopy(f.Default)
			case f.Type == Record && !f.Nullable:
				v = map[string]any{}
			}
		}
		if v == nil {
			if f.Required && !f.Auto {
				errs[f.Name] = "required field missing"
			}
			if present || fill {
				out[f.Name] = nil
			}
			continue
		}
		nv, err := f.normalize(v, fill)
		if err != nil {
			errs[f.Name] = err
			continue
		}
		out[f.Name] = nv
	}
	if len(errs) > 0 {
		return out, errs
	}
	return out, nil
}

func hasField(fields []*Field, n string) bool {
	for _, f := range fields {
		if f.Name == n {
			return true
		}
	}
	return false
}

// normalize checks one non-null value; the error is a string or nested
// Errors / []any.
func (f *Field) normalize(v any, fill bool) (any, any) {
	switch f.Type {
	case String:
		s, ok := v.(string)
		if !ok {
			return nil, "expected a string"
		}
		if f.MinLen > 0 && len(s) < f.MinLen {
			return nil, fmt.Sprintf("length must be at least %d", f.MinLen)
		}
		if len(f.OneOf) > 0 && !contains(f.OneOf, s) {
			return nil, "expected one of: " + strings.Join(f.OneOf, ", ")
		}
		if f.Match != nil && !f.Match.MatchString(s) {
			if f.MatchEr != "" {
				return nil, f.MatchEr
			}
			return nil, "invalid value: " + s
		}
		return f.check(s)
	case Integer, Number:
		n, ok := toFloat(v)
		if !ok {
			if f.Type == Integer {
				return nil, "expected an integer"
			}
			return nil, "expected a number"
		}
		if f.Type == Integer && n != math.Trunc(n) {
			return nil, "expected an integer"
		}
		if f.Between != nil && (n < f.Between[0] || n > f.Between[1]) {
			return nil, fmt.Sprintf("value should be between %s and %s", fmtNum(f.Between[0]), fmtNum(f.Between[1]))
		}
		if f.Gt != nil && n <= *f.Gt {
			return nil, fmt.Sprintf("value must be greater than %s", fmtNum(*f.Gt))
		}
		return f.check(n)
	case Boolean:
		b, ok := v.(bool)
		if !ok {
			return nil, "expected a boolean"
		}
		return b, nil
	case Array, Set:
		l, ok := v.([]any)
		if !ok {
			if f.Type == Set {
				return nil, "expected a set"
			}
			return nil, "expected an array"
		}
		out := make([]any, 0, len(l))
		var elErrs []any
		seen := map[string]bool{}
		for i, el := range l {
			var nv any
			var err any
			if el == nil {
				err = "expected a " + string(f.Elements.Type)
			} else {
				nv, err = f.Elements.normalize(el, fill)
			}
			if err != nil {
				if elErrs == nil {
					elErrs = make([]any, len(l))
				}
				elErrs[i] = err
				continue
			}
			if f.Type == Set {
				key := fmt.Sprint(nv)
				if seen[key] {
					continue
				}
				seen[key] = true
			}
			out = append(out, nv)
		}
		if elErrs != nil {
			return nil, elErrs
		}
		return f.check(out)
	case Map:
		m, ok := v.(map[string]any)
		if !ok {
			return nil, "expected a map"
		}
		out := make(map[string]any, len(m))
		errs := Errors{}
		for k, el := range m {
			if f.Keys != nil {
				if _, err := f.Keys.normalize(k, fill); err != nil {
					errs[k] = err
					continue
				}
			}
			if f.Values == nil {
				out[k] = el
				continue
			}
			if el == nil {
				errs[k] = "expected a " + string(f.Values.Type)
				continue
			}
			nv, err := f.Values.normalize(el, fill)
			if err != nil {
				errs[k] = err
				continue
			}
			out[k] = nv
		}
		if len(errs) > 0 {
			return nil, errs
		}
		return f.check(out)
	case Record:
		m, ok := v.(map[string]any)
		if !ok {
			return nil, "expected a record"
		}
		out, errs := normalizeRecord(f.Fields, m, fill)
		if errs != nil {
			return nil, errs
		}
		return f.check(out)
	case Foreign:
		m, ok := v.(map[string]any)
		if !ok {
			return nil, "expected a record"
		}
		// A foreign reference is {id} (or an endpoint key the caller
		// resolves); clients such as decK send extra fields, which Kong
		// ignores.
		out := map[string]any{}
		for k, el := range m {
			if s, ok := el.(string); ok {
				out[k] = s
			}
		}
		if len(out) == 0 {
			return nil, Errors{"id": "missing primary key"}
		}
		return out, nil
	}
	return v, nil
}

func (f *Field) check(v any) (any, any) {
	if f.Check != nil {
		if msg := f.Check(v); msg != "" {
			return nil, msg
		}
	}
	return v, nil
}

func toFloat(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	}
	return 0, false
}

func fmtNum(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

func deepCopy(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, el := range x {
			out[k] = deepCopy(el)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, el := range x {
			out[i] = deepCopy(el)
		}
		return out
	}
	return v
}

// DeepCopy copies a JSON-shaped value.
func DeepCopy(v any) any { return deepCopy(v) }

// Merge deep-merges patch into base (both JSON-shaped records) and returns
// a new map; records merge key by key, everything else is replaced. Kong's
// PATCH keeps plugin config keys that are not sent.
func Merge(base, patch map[string]any) map[string]any {
	out := make(map[string]any, len(base)+len(patch))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range patch {
		bm, ok1 := out[k].(map[string]any)
		pm, ok2 := v.(map[string]any)
		if ok1 && ok2 {
			out[k] = Merge(bm, pm)
			continue
		}
		out[k] = v
	}
	return out
}
