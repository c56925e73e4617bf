package declarative

import (
	"testing"

	"github.com/gatehouse-gw/gatehouse/fsm"
)

// FuzzLoad feeds arbitrary bytes to the document parser and loader: they
// must answer with a document or problems, never panic, and every entity
// they return must have a valid id and a known kind.
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
	f.Fuzz(func(t *testing.T, b []byte) {
		doc, err := Parse(b)
		if err != nil {
			return
		}
		items, _, _ := Load(doc)
		for _, it := range items {
			id, _ := it.Data["id"].(string)
			if !fsm.IsUUID(id) || fsm.Schemas[it.Kind] == nil {
				t.Fatalf("loaded %s %v at %s", it.Kind, it.Data["id"], it.Path)
			}
		}
	})
}
