package declarative

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/google/uuid"
	"go.yaml.in/yaml/v3"

	"github.com/gatehouse-gw/gatehouse/fsm"
	"github.com/gatehouse-gw/gatehouse/log"
)

// Item is one entity of a document, taken out of its nesting: Data is the
// entity as written, with its id set (generated from its names when the
// document has none) and its parent as a {"id": ...} reference.
type Item struct {
	Kind string
	Data map[string]any
	// Path says where the entity is in the document, e.g.
	// "services.0.routes.1", for errors.
	Path string
}

// Problem is what is wrong with one entity of a document (or, with no
// Kind, with the document itself): field errors keyed by field name, and
// "@entity" for the entity as a whole.
type Problem struct {
	Kind   string
	Path   string
	Entity map[string]any
	Errors map[string]any
}

// Parse reads a declarative document, YAML or JSON (YAML is a superset),
// into its JSON shape.
func Parse(body []byte) (map[string]any, error) {
	// A JSON document (what decK and scripts send) is decoded as JSON:
	// the YAML decoder takes ten times as long on a large one. Anything
	// else, and JSON the JSON decoder refuses, goes to the YAML decoder,
	// which also gives the error messages.
	if t := bytes.TrimSpace(body); len(t) > 0 && t[0] == '{' {
		var doc map[string]any
		if err := json.Unmarshal(t, &doc); err == nil && doc != nil {
			return doc, nil
		}
	}
	var doc map[string]any
	if err := yaml.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("failed parsing declarative configuration: %v", err)
	}
	if doc == nil {
		return nil, fmt.Errorf("failed parsing declarative configuration: expected an object")
	}
	out, ok := jsonShape(doc).(map[string]any)
	if !ok {
		return nil, fmt.Errorf("failed parsing declarative configuration: expected an object")
	}
	return out, nil
}

// jsonShape turns YAML's decoded values into what encoding/json would
// have decoded: float64 numbers, map[string]any objects.
func jsonShape(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = jsonShape(e)
		}
		return x
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[fmt.Sprint(k)] = jsonShape(e)
		}
		return m
	case []any:
		for i, e := range x {
			x[i] = jsonShape(e)
		}
		return x
	}
	log.JSONShape(map[string]any{"v": v})
	switch n := v.(type) {
	case int:
		return float64(n)
	case int64:
		return float64(n)
	case uint64:
		return float64(n)
	}
	return v
}

// FormatVersions are the _format_version values Kong accepts.
var FormatVersions = []string{"1.1", "2.1", "3.0"}

// section is a kind a document may hold, at the top level or nested.
type section struct {
	kind string
	// nested lists the sections an entity of this kind may hold, with
	// the field of the child that refers to it.
	nested map[string]string
}

var sections = map[string]section{
	"services": {fsm.Services, map[string]string{"routes": "service", "plugins": "service"}},
	"routes":   {fsm.Routes, map[string]string{"plugins": "route"}},
	"consumers": {fsm.Consumers, map[string]string{"plugins": "consumer", "keyauth_credentials": "consumer",
		"basicauth_credentials": "consumer", "jwt_secrets": "consumer"}},
	"upstreams":             {fsm.Upstreams, map[string]string{"targets": "upstream"}},
	"targets":               {fsm.Targets, nil},
	"plugins":               {fsm.Plugins, nil},
	"keyauth_credentials":   {fsm.KeyAuths, nil},
	"basicauth_credentials": {fsm.BasicAuths, nil},
	"jwt_secrets":           {fsm.JWTSecrets, nil},
	"certificates":          {fsm.Certificates, map[string]string{"snis": "certificate"}},
	"snis":                  {fsm.SNIs, nil},
	"ca_certificates":       {fsm.CACertificates, nil},
}

// unsupported are Kong's declarative sections Gatehouse has no entity for
// yet: refused by name rather than as unknown.
var unsupported = []string{"vaults", "acls", "hmacauth_credentials", "oauth2_credentials", "mtls_auth_credentials", "consumer_groups",
	"filter_chains", "keys", "key_sets", "partials", "licenses", "workspaces"}

// idNamespace scopes the ids generated for entities a document gives none:
// the same document always gets the same ids, on every node and every
// apply.
var idNamespace = uuid.MustParse("6f6f1b54-9d6e-4c58-9a0a-6761746568f5")

// Load flattens a parsed document into entities, parents before
// children. It checks the document's shape: format version, known
// sections, lists of objects, references that name an entity of the
// document or a UUID, and names used twice. Field values are the fold's
// to check. selectTags are the document's _info.select_tags, added to
// every entity.
func Load(doc map[string]any) (items []Item, selectTags []string, problems []Problem) {
	top := map[string]any{}
	bad := func(field string, msg any) { top[field] = msg }
	switch v := doc["_format_version"].(type) {
	case nil:
		bad("_format_version", "required field missing")
	case string:
		if !slices.Contains(FormatVersions, v) {
			bad("_format_version", "expected one of: "+strings.Join(FormatVersions, ", "))
		}
	default:
		bad("_format_version", "expected a string")
	}
	selectTags = SelectTags(doc)
	keys := make([]string, 0, len(doc))
	for k := range doc {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	l := loader{names: map[string]map[string]string{}, declared: map[string]bool{}}
	// Parents first, whatever order the document uses.
	order := []string{"certificates", "ca_certificates", "snis", "services", "routes", "consumers", "upstreams", "targets",
		"keyauth_credentials", "basicauth_credentials", "jwt_secrets", "plugins"}
	for _, k := range keys {
		switch {
		case strings.HasPrefix(k, "_"):
			if !slices.Contains([]string{"_format_version", "_transform", "_info", "_workspace", "_comment", "_konnect"}, k) {
				bad(k, "unknown field")
			}
		case slices.Contains(unsupported, k):
			if len(asList(doc[k])) > 0 {
				bad(k, "Gatehouse does not support "+k+" yet")
			}
		case sections[k].kind == "":
			bad(k, "unknown field")
		}
	}
	if len(top) > 0 {
		return nil, selectTags, []Problem{{Errors: top}}
	}
	for _, k := range order {
		if doc[k] == nil {
			continue
		}
		list, ok := doc[k].([]any)
		if !ok {
			return nil, selectTags, []Problem{{Errors: map[string]any{k: "expected an array"}}}
		}
		l.list(k, k, list, "", "")
	}
	for i := range l.items {
		l.resolve(&l.items[i])
		addTags(l.items[i].Data, selectTags)
	}
	return l.items, selectTags, l.problems
}

type loader struct {
	items    []Item
	problems []Problem
	// names maps kind → endpoint key value → id, for references.
	names map[string]map[string]string
	// declared holds kind \x00 id of every item, for the primary key check.
	declared map[string]bool
}

func (l *loader) list(name, path string, list []any, parentField, parentID string) {
	sec := sections[name]
	for i, v := range list {
		p := path + "." + strconv.Itoa(i)
		m, ok := v.(map[string]any)
		if !ok {
			l.problems = append(l.problems, Problem{Kind: sec.kind, Path: p, Errors: map[string]any{"@entity": "expected a record"}})
			continue
		}
		data := make(map[string]any, len(m))
		for k, v := range m {
			if _, nested := sec.nested[k]; !nested {
				data[k] = v
			}
		}
		if parentField != "" {
			data[parentField] = map[string]any{"id": parentID}
		}
		id, _ := data["id"].(string)
		if id == "" {
			id = l.stableID(sec.kind, data, p)
		} else if !fsm.IsUUID(id) {
			l.problems = append(l.problems, Problem{Kind: sec.kind, Path: p, Entity: m, Errors: map[string]any{"id": "expected a valid UUID"}})
			continue
		}
		id = strings.ToLower(id)
		data["id"] = id
		if ek := fsm.EndpointKey(sec.kind); ek != "" {
			if key, _ := data[ek].(string); key != "" {
				names := l.names[sec.kind]
				if names == nil {
					names = map[string]string{}
					l.names[sec.kind] = names
				}
				if prev, dup := names[key]; dup && prev != id {
					l.problems = append(l.problems, Problem{Kind: sec.kind, Path: p, Entity: m,
						Errors: map[string]any{"@entity": fmt.Sprintf("uniqueness violation: '%s' entity with %s set to '%s' already declared", singular(sec.kind), ek, key)}})
					continue
				}
				names[key] = id
			}
		}
		if pk := sec.kind + "\x00" + id; l.declared[pk] {
			l.problems = append(l.problems, Problem{Kind: sec.kind, Path: p, Entity: m,
				Errors: map[string]any{"@entity": fmt.Sprintf("uniqueness violation: '%s' entity with primary key set to '%s' already declared", singular(sec.kind), id)}})
			continue
		} else {
			l.declared[pk] = true
		}
		l.items = append(l.items, Item{Kind: sec.kind, Data: data, Path: p})
		for child, field := range sec.nested {
			if m[child] == nil {
				continue
			}
			cl, ok := m[child].([]any)
			if !ok {
				l.problems = append(l.problems, Problem{Kind: sec.kind, Path: p, Entity: m, Errors: map[string]any{child: "expected an array"}})
				continue
			}
			l.list(child, p+"."+child, cl, field, id)
		}
	}
}

// stableID is the id of an entity the document gives none: derived from
// what identifies it (its name, or what it is attached to), so applying
// the same document twice changes nothing.
func (l *loader) stableID(kind string, d map[string]any, path string) string {
	key := ""
	switch kind {
	case fsm.Plugins:
		key = fmt.Sprint(d["name"], "|", refKey(d["route"]), "|", refKey(d["service"]), "|", refKey(d["consumer"]), "|", d["instance_name"])
	case fsm.Targets:
		key = fmt.Sprint(refKey(d["upstream"]), "|", d["target"])
	case fsm.Consumers:
		if u, _ := d["username"].(string); u != "" {
			key = "username:" + u
		} else if c, _ := d["custom_id"].(string); c != "" {
			key = "custom_id:" + c
		}
	default:
		if ek := fsm.EndpointKey(kind); ek != "" {
			if v, _ := d[ek].(string); v != "" {
				key = ek + ":" + v
			}
		}
	}
	if key == "" {
		key = "path:" + path // nameless: stable while the document keeps its shape
	}
	return uuid.NewSHA1(idNamespace, []byte(kind+"\x00"+key)).String()
}

func refKey(v any) string {
	switch r := v.(type) {
	case string:
		return r
	case map[string]any:
		if id, _ := r["id"].(string); id != "" {
			return id
		}
		for _, k := range []string{"name", "username"} {
			if s, _ := r[k].(string); s != "" {
				return s
			}
		}
	}
	return ""
}

// resolve turns each reference to another entity of the document into
// {"id": ...}. A name the document does not declare is left for the fold,
// which resolves it against the entities that stay.
func (l *loader) resolve(it *Item) {
	for _, fr := range fsm.ForeignFields(it.Kind) {
		v, ok := it.Data[fr.Field]
		if !ok || v == nil {
			continue
		}
		ek := fsm.EndpointKey(fr.Kind)
		switch r := v.(type) {
		case string:
			if fsm.IsUUID(r) {
				it.Data[fr.Field] = map[string]any{"id": strings.ToLower(r)}
			} else if id := l.names[fr.Kind][r]; id != "" {
				it.Data[fr.Field] = map[string]any{"id": id}
			} else {
				it.Data[fr.Field] = map[string]any{ek: r}
			}
		case map[string]any:
			if id, _ := r["id"].(string); id != "" {
				it.Data[fr.Field] = map[string]any{"id": strings.ToLower(id)}
			} else if name, _ := r[ek].(string); name != "" {
				if id := l.names[fr.Kind][name]; id != "" {
					it.Data[fr.Field] = map[string]any{"id": id}
				} else {
					it.Data[fr.Field] = map[string]any{ek: name}
				}
			}
		}
	}
}

func addTags(d map[string]any, tags []string) {
	if len(tags) == 0 {
		return
	}
	have := asList(d["tags"])
	for _, t := range tags {
		found := false
		for _, h := range have {
			if h == t {
				found = true
			}
		}
		if !found {
			have = append(have, t)
		}
	}
	d["tags"] = have
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}

// singular is Kong's entity name in errors ("service", "keyauth_credential").
func singular(kind string) string {
	return strings.TrimSuffix(kind, "s")
}

// SelectTags returns the document's _info.select_tags (its strings).
func SelectTags(doc map[string]any) []string {
	var tags []string
	if info, ok := doc["_info"].(map[string]any); ok {
		for _, t := range asList(info["select_tags"]) {
			if s, ok := t.(string); ok {
				tags = append(tags, s)
			}
		}
	}
	return tags
}
