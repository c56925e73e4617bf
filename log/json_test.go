package log

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
)

// A chain hash is SHA-256 over a row's JSON, which anyone may recompute
// with encoding/json: AppendJSON must write its bytes for every row,
// including values where fast encoders differ.
func TestAppendJSONIsEncodingJSON(t *testing.T) {
	odd := map[string]any{"f": []any{0.0, -0.0, 1.0, 0.1, 3e20, 1e21, 1e-6, 1e-7, 123456789012345678.0, -2.5e-10},
		"s": []any{"\u2028\u2029", "<a href=\"x\">&amp;</a>", "tab\tnl\nnul\x00bell\x07", "bad\xff\xfeutf8", "é🙂", "\\/"},
		"e": map[string]any{}, "l": []any{}, "n": nil, "t": true, "no": false, "i": int64(-7), "u": uint8(200),
		"nested": map[string]any{"z": 1.0, "a": map[string]any{"y": nil, "b": []any{map[string]any{"k": "v"}}}}}
	for i := range 40 {
		odd[fmt.Sprintf("key%02d", 39-i)] = float64(i) / 7
	}
	msg := "unique constraint violation <&>"
	rows := []Row{
		{},
		{Index: 1, Time: "2026-12-01T00:00:00.123456789Z", Actor: "admin <a@b>", Op: "create", Outcome: "applied",
			PayloadSHA256: "ab", PrevHash: "cd"},
		{Index: 1 << 60, Error: &msg, Outcome: "rejected"},
		{Index: 9, Changes: []Change{
			{EntityType: "consumers", EntityID: "x", Op: "created", After: odd},
			{EntityType: "routes", EntityID: "y", Op: "updated", Before: map[string]any{"paths": []any{"/a"}}, After: odd},
			{EntityType: "key-auths", EntityID: "z", Op: "deleted", Before: map[string]any{}},
		}},
	}
	for i, row := range rows {
		want, err := json.Marshal(row)
		if err != nil {
			t.Fatal(err)
		}
		got, err := AppendJSON(nil, row)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("row %d: AppendJSON differs from encoding/json:\n%s\n%s", i, got, want)
		}
	}
}
