package declarative

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
)

func TestMarshalIsEncodingJSON(t *testing.T) {
	var services, consumers []any
	for i := 0; i < 5000; i++ {
		services = append(services, map[string]any{"name": fmt.Sprintf("svc-<%d>&", i), "port": float64(i),
			"tags": []any{"a", "b"}, "routes": []any{map[string]any{"paths": []any{"/x"}}}})
	}
	for i := 0; i < 3; i++ {
		consumers = append(consumers, map[string]any{"username": fmt.Sprint("u", i)})
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
		got, err := Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("Marshal differs from encoding/json (%d vs %d bytes)", len(got), len(want))
		}
	}
}
