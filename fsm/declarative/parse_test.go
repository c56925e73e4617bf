package declarative

import (
	"reflect"
	"testing"
)

// A JSON document takes the JSON decoder's fast path; it must decode to
// what the YAML path gives, and JSON the JSON decoder refuses must still
// get the YAML decoder's answer.
func TestParseJSONMatchesYAML(t *testing.T) {
	doc := `{"_format_version": "3.0", "services": [{"name": "s", "port": 8080, "retries": 1.5,
		"tags": ["a", "b"], "enabled": true, "ca_certificates": null, "routes": [{"paths": ["/x"]}]}]}`
	fast, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	slow, err := Parse([]byte("\n" + doc[:len(doc)-1] + ", }")) // a trailing comma: YAML only
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(fast, slow) {
		t.Fatalf("JSON path %#v\nYAML path %#v", fast, slow)
	}
	if _, err := Parse([]byte(`{"services": [}`)); err == nil {
		t.Fatal("broken JSON accepted")
	}
}
