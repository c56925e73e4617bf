package declarative

import (
	"maps"
	"testing"

	"github.com/gatehouse-gw/gatehouse/fsm"
	"github.com/gatehouse-gw/gatehouse/log"
)

// FuzzLoad feeds arbitrary bytes to the document parser and loader: they
// must answer with a document or problems, never panic, and every entity
// they return must have a valid id and a known kind. A document whose
// entities' fields do not all pass CheckFields must not fold either: the
// admin API lists those problems only once the fold has refused it.
func FuzzLoad(f *testing.F) {
	f.Add([]byte(`_format_version: "3.0"
services:
- name: s
  host: h
  routes:
  - paths: [/x]
    plugins: [{name: key-auth}]
consumers:
- username: u
  keyauth_credentials: [{key: k}]
upstreams:
- name: p
  targets: [{target: "127.0.0.1:1"}]
`))
	f.Add([]byte(`{"_format_version":"1.1","routes":[{"service":"s","paths":["/"]}],"plugins":[{"name":"x","consumer":{"username":"u"}}]}`))
	f.Add([]byte(`_info: {select_tags: [a]}`))
	f.Add([]byte(`{"_format_version":"3.0","services":[{"name":"s","host":"h","port":70000,"routes":[{"paths":["x"]}]}],"consumers":[{}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		doc, err := Parse(b)
		if err != nil {
			return
		}
		items, _, problems := Load(doc)
		var f fsm.Fold
		var cmds []*fsm.Command
		invalid := ""
		for _, it := range items {
			id, _ := it.Data["id"].(string)
			if !fsm.IsUUID(id) || fsm.Schemas[it.Kind] == nil {
				t.Fatalf("loaded %s %v at %s", it.Kind, it.Data["id"], it.Path)
			}
			if errs := f.CheckFields(it.Kind, it.Data); errs != nil && invalid == "" {
				invalid = it.Path
			}
			body := maps.Clone(it.Data)
			delete(body, "id")
			cmds = append(cmds, &fsm.Command{Op: log.OpUpsert, Kind: it.Kind, Key: id, NewID: id, Body: body})
		}
		if len(problems) > 0 || invalid == "" {
			return
		}
		if _, _, err := f.ApplyAll(fsm.Empty(), 1, 1e18, cmds); err == nil {
			t.Fatalf("%s fails CheckFields, and the document folds", invalid)
		}
	})
}
