package log

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
)

// AppendJSON must write encoding/json's bytes for every value: a chain
// hash is SHA-256 over a row's JSON, which anyone may recompute with
// encoding/json, and declarative dumps promise its output. Checked on
// rows and on dump-shaped documents, with the values where fast encoders
// differ: float formats, escapes, invalid UTF-8, empty and nil
// containers, many keys, long lists.
func TestAppendJSONIsEncodingJSON(t *testing.T) {
	odd := map[string]any{"f": []any{0.0, -0.0, 1.0, 0.1, 3e20, 1e21, 1e-6, 1e-7, 123456789012345678.0, -2.5e-10},
		"s": []any{"\u2028\u2029", "<a href=\"x\">&amp;</a>", "tab\tnl\nnul\x00bell\x07", "bad\xff\xfeutf8", "é🙂", "\\/"},
		"e": map[string]any{}, "l": []any{}, "n": nil, "t": true, "no": false, "i": int64(-7), "u": uint8(200),
		"nested": map[string]any{"z": 1.0, "a": map[string]any{"y": nil, "b": []any{map[string]any{"k": "v"}}}}}
	for i := range 40 {
		odd[fmt.Sprintf("key%02d", 39-i)] = float64(i) / 7
	}
	msg := "unique constraint violation <&>"
	values := []any{
		Row{},
		Row{Index: 1, Time: "2026-12-01T00:00:00.123456789Z", Actor: "admin <a@b>", Op: "create", Outcome: "applied",
			PayloadSHA256: "ab", PrevHash: "cd"},
		Row{Index: 1 << 60, Error: &msg, Outcome: "rejected"},
		Row{Index: 9, Changes: []Change{
			{EntityType: "consumers", EntityID: "x", Op: "created", After: odd},
			{EntityType: "routes", EntityID: "y", Op: "updated", Before: map[string]any{"paths": []any{"/a"}}, After: odd},
			{EntityType: "key-auths", EntityID: "z", Op: "deleted", Before: map[string]any{}},
		}},
	}
	var services, consumers []any
	for i := range 5000 {
		services = append(services, map[string]any{"name": fmt.Sprintf("svc-<%d>&", i), "port": float64(i),
			"tags": []any{"a", "b"}, "routes": []any{map[string]any{"paths": []any{"/x"}}}})
	}
	for i := range 3 {
		consumers = append(consumers, map[string]any{"username": fmt.Sprint("u", i)})
	}
	for range 2100 {
		consumers = append(consumers, odd)
	}
	values = append(values,
		map[string]any{"_format_version": "3.0", "services": services, "consumers": consumers, "plugins": []any{}},
		map[string]any{"_format_version": "3.0"},
		map[string]any{"services": services[:2049]})
	for i, v := range values {
		want, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		got, err := AppendJSON(nil, v)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("value %d: AppendJSON differs from encoding/json (%d vs %d bytes)", i, len(got), len(want))
		}
	}
}
