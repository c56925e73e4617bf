package plugins

import "github.com/gatehouse-gw/gatehouse/fsm/schema"

// Small constructors for config schemas, so each plugin's schema reads as
// a list of Kong fields.

// Str is an optional string field.
func Str(name string, def any, oneOf ...string) *schema.Field {
	return &schema.Field{Name: name, Type: schema.String, Default: def, OneOf: oneOf}
}

// Bool is a boolean field with a default.
func Bool(name string, def bool) *schema.Field {
	return &schema.Field{Name: name, Type: schema.Boolean, Default: def, Required: true}
}

// Num is a number field; def nil means null.
func Num(name string, def any) *schema.Field {
	return &schema.Field{Name: name, Type: schema.Number, Default: def}
}

// Int is an integer field; def nil means null.
func Int(name string, def any) *schema.Field {
	return &schema.Field{Name: name, Type: schema.Integer, Default: def}
}

// Strings is an array of strings; def nil means null.
func Strings(name string, def ...string) *schema.Field {
	f := &schema.Field{Name: name, Type: schema.Array, Elements: &schema.Field{Type: schema.String}}
	if def != nil {
		l := make([]any, len(def))
		for i, s := range def {
			l[i] = s
		}
		f.Default = l
	}
	return f
}

// StrList reads a []any of strings from a normalized config.
func StrList(v any) []string {
	l, _ := v.([]any)
	out := make([]string, 0, len(l))
	for _, x := range l {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// NumList reads a []any of numbers from a normalized config.
func NumList(v any) []float64 {
	l, _ := v.([]any)
	out := make([]float64, 0, len(l))
	for _, x := range l {
		if f, ok := x.(float64); ok {
			out = append(out, f)
		}
	}
	return out
}

// String reads an optional string from a normalized config.
func String(m map[string]any, k string) string { s, _ := m[k].(string); return s }

// Float reads a number (0 when null).
func Float(m map[string]any, k string) float64 { f, _ := m[k].(float64); return f }

// Flag reads a boolean.
func Flag(m map[string]any, k string) bool { b, _ := m[k].(bool); return b }
