package declarative

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
)

// appendValue must write encoding/json's bytes for every value entity data
// can hold, including the ones where fast encoders differ.
func TestAppendValueIsEncodingJSON(t *testing.T) {
	var services, consumers []any
	for i := 0; i < 5000; i++ {
		services = append(services, map[string]any{"name": fmt.Sprintf("svc-<%d>&", i), "port": float64(i),
			"tags": []any{"a", "b"}, "routes": []any{map[string]any{"paths": []any{"/x"}}}})
	}
	for i := 0; i < 3; i++ {
		consumers = append(consumers, map[string]any{"username": fmt.Sprint("u", i)})
	}
	// Values where encoders disagree: float formats, escapes, invalid
	// UTF-8, empty and nil containers, many keys.
	odd := map[string]any{"f": []any{0.0, -0.0, 1.0, 0.1, 3e20, 1e21, 1e-6, 1e-7, 123456789012345678.0, -2.5e-10},
		"s": []any{"\u2028\u2029", "<a href=\"x\">&amp;</a>", "tab\tnl\nnul\x00bell\x07", "bad\xff\xfeutf8", "é🙂", "\\/"},
		"e": map[string]any{}, "l": []any{}, "n": nil, "t": true, "no": false,
		"nested": map[string]any{"z": 1.0, "a": map[string]any{"y": nil, "b": []any{map[string]any{"k": "v"}}}}}
	for i := 0; i < 40; i++ {
		odd[fmt.Sprintf("key%02d", 39-i)] = float64(i) / 7
	}
	for i := 0; i < 2100; i++ {
		consumers = append(consumers, odd)
	}
	for _, doc := range []map[string]any{
		{"_format_version": "3.0", "services": services, "consumers": consumers, "plugins": []any{}},
		{"_format_version": "3.0"},
		{"services": services[:2049]},
	} {
		want, err := json.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		got, err := appendValue(nil, map[string]any(doc))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("appendValue differs from encoding/json (%d vs %d bytes)", len(got), len(want))
		}
	}
}
