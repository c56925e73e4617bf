package schema

import (
	"strconv"
)

// Infer converts the all-string values of a form or multipart body into the
// types the schema expects, the way Kong's argument decoder does: "" becomes
// null, numbers and booleans are parsed, and a scalar sent for an array is
// wrapped. Values it cannot convert are left alone so that Normalize reports
// them with Kong's type error. JSON bodies are not inferred.
func (s *Schema) Infer(in map[string]any) map[string]any {
	return inferRecord(s.Fields, in)
}

func inferRecord(fields []*Field, in map[string]any) map[string]any {
	out := make(map[string]any, len(in))
	for k, v := range in {
		f := lookup(fields, k)
		if f == nil {
			out[k] = v
			continue
		}
		out[k] = f.infer(v)
	}
	return out
}

func lookup(fields []*Field, n string) *Field {
	for _, f := range fields {
		if f.Name == n {
			return f
		}
	}
	return nil
}

func (f *Field) infer(v any) any {
	if s, ok := v.(string); ok && s == "" {
		return nil
	}
	switch f.Type {
	case Integer, Number:
		if s, ok := v.(string); ok {
			if n, err := strconv.ParseFloat(s, 64); err == nil {
				return n
			}
		}
	case Boolean:
		if s, ok := v.(string); ok {
			switch s {
			case "true":
				return true
			case "false":
				return false
			}
		}
	case Array, Set:
		var l []any
		switch x := v.(type) {
		case []any:
			l = x
		case map[string]any:
			return v
		default:
			l = []any{x}
		}
		out := make([]any, len(l))
		for i, el := range l {
			if f.Elements != nil {
				out[i] = f.Elements.infer(el)
			} else {
				out[i] = el
			}
		}
		return out
	case Map:
		if m, ok := v.(map[string]any); ok && f.Values != nil {
			out := make(map[string]any, len(m))
			for k, el := range m {
				out[k] = f.Values.infer(el)
			}
			return out
		}
	case Record:
		if m, ok := v.(map[string]any); ok {
			return inferRecord(f.Fields, m)
		}
	}
	return v
}
