package schema

// JSON renders the schema the way Kong's /schemas endpoints do:
// {"fields":[{"<name>":{"type":...,"default":...}}, ...]}. decK reads the
// defaults from here, so what Normalize fills and what this publishes must
// come from the same Field values.
func (s *Schema) JSON() map[string]any {
	return map[string]any{"fields": renderFields(s.Fields)}
}

func renderFields(fields []*Field) []any {
	out := make([]any, 0, len(fields))
	for _, f := range fields {
		out = append(out, map[string]any{f.Name: f.render()})
	}
	return out
}

func (f *Field) render() map[string]any {
	m := map[string]any{"type": string(f.Type)}
	if f.Default != nil {
		m["default"] = f.Default
	}
	// A record that is not nullable is filled with its defaults when
	// absent; Kong publishes such records as required, and decK fills
	// nested defaults only for required records (else every diff shows
	// the stored defaults as a change).
	if f.Required || f.Type == Record && !f.Nullable {
		m["required"] = true
	}
	if f.Auto {
		m["auto"] = true
	}
	if f.Unique {
		m["unique"] = true
	}
	if len(f.OneOf) > 0 {
		l := make([]any, len(f.OneOf))
		for i, s := range f.OneOf {
			l[i] = s
		}
		m["one_of"] = l
	}
	if f.Between != nil {
		m["between"] = []any{f.Between[0], f.Between[1]}
	}
	if f.Gt != nil {
		m["gt"] = *f.Gt
	}
	if f.MinLen > 0 {
		m["len_min"] = f.MinLen
	}
	if f.Elements != nil {
		m["elements"] = f.Elements.render()
	}
	if f.Keys != nil {
		m["keys"] = f.Keys.render()
	}
	if f.Values != nil {
		m["values"] = f.Values.render()
	}
	if f.Type == Record {
		m["fields"] = renderFields(f.Fields)
	}
	if f.Reference != "" {
		m["reference"] = f.Reference
	}
	return m
}
