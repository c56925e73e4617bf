package decode

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

// fuzzTypes are the content types FuzzBody chooses from (choice % len).
var fuzzTypes = []string{
	"application/json",
	"application/json; charset=utf-8",
	"application/x-www-form-urlencoded",
	"multipart/form-data; boundary=XyZ",
	"multipart/form-data",
	"",
	"text/plain",
	"application/merge-patch+json",
}

const fuzzMax = 4096

// treeDepth is the container nesting of a decoded JSON value, computed on
// the tree rather than on the text so it checks the package's scanner.
func treeDepth(v any) int {
	d := 0
	switch v := v.(type) {
	case map[string]any:
		for _, e := range v {
			d = max(d, treeDepth(e))
		}
		return d + 1
	case []any:
		for _, e := range v {
			d = max(d, treeDepth(e))
		}
		return d + 1
	}
	return 0
}

// onlyStrings reports whether every leaf of a form result is a string.
func onlyStrings(v any) bool {
	switch v := v.(type) {
	case string:
		return true
	case map[string]any:
		for _, e := range v {
			if !onlyStrings(e) {
				return false
			}
		}
		return true
	case []any:
		for _, e := range v {
			if !onlyStrings(e) {
				return false
			}
		}
		return true
	}
	return false
}

func FuzzBody(f *testing.F) {
	f.Add(uint8(0), []byte(`{"name":"s","port":80,"tags":["a"]}`))
	f.Add(uint8(1), []byte(`{"a":{"b":[1,{"c":null}]}}`))
	f.Add(uint8(2), []byte("name=rate-limiting&config.minute=5&config[policy]=local&paths[]=/x&hosts=a&hosts=b"))
	f.Add(uint8(3), []byte("--XyZ\r\nContent-Disposition: form-data; name=\"a.b\"\r\n\r\n1\r\n--XyZ--\r\n"))
	f.Add(uint8(5), []byte(""))
	f.Add(uint8(6), []byte("hello"))

	f.Fuzz(func(t *testing.T, choice uint8, body []byte) {
		ct := fuzzTypes[int(choice)%len(fuzzTypes)]
		kind, _ := classify(ct)
		got, err := Body(ct, bytes.NewReader(body), fuzzMax)

		if err == nil && got == nil {
			t.Fatalf("nil map without an error")
		}
		if len(body) > fuzzMax {
			if err != ErrTooLarge {
				t.Fatalf("%d-byte body: err = %v, want ErrTooLarge", len(body), err)
			}
			return
		}
		switch kind {
		case kindJSON:
			var v any
			if json.Unmarshal(body, &v) == nil {
				if m, ok := v.(map[string]any); ok && treeDepth(m) <= MaxDepth {
					if err != nil {
						t.Fatalf("valid JSON object %q rejected: %v", body, err)
					}
					if !reflect.DeepEqual(got, m) {
						t.Fatalf("Body = %#v, encoding/json = %#v", got, m)
					}
					return
				}
			}
			if err != ErrBadJSON {
				t.Fatalf("invalid JSON object %q: err = %v, want ErrBadJSON", body, err)
			}
		case kindForm, kindMultipart:
			if err != nil {
				if !errors.Is(err, ErrBadForm) && err != ErrTooManyArgs {
					t.Fatalf("form error %v", err)
				}
				return
			}
			if !onlyStrings(got) {
				t.Fatalf("non-string leaf in %#v", got)
			}
		default:
			if len(body) == 0 {
				if err != nil || len(got) != 0 {
					t.Fatalf("empty body: %v, %v", got, err)
				}
			} else if err != ErrUnsupported {
				t.Fatalf("err = %v, want ErrUnsupported", err)
			}
		}
	})
}
