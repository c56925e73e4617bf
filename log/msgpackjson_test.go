package log

import (
	"bytes"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// canonicalMsgpack encodes v as fsm's canonical entity encoding does:
// sorted keys, the smallest integer and float forms.
func canonicalMsgpack(t testing.TB, v any) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.SetSortMapKeys(true)
	enc.UseCompactInts(true)
	enc.UseCompactFloats(true)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// viaDecoding is what the transcoder stands for: decode, JSON shape,
// AppendJSON.
func viaDecoding(mp []byte) ([]byte, error) {
	var v any
	if err := msgpack.Unmarshal(mp, &v); err != nil {
		return nil, err
	}
	return AppendJSON(nil, JSONShape(v))
}

// The transcoder writes AppendJSON's bytes for every value an entity can
// hold, the odd ones included: every integer width and sign, floats
// either side of the exponent cutoffs, escapes, invalid UTF-8, empty
// containers, long strings and lists (the 16- and 32-bit lengths).
func TestJSONFromMsgpackIsAppendJSON(t *testing.T) {
	long := strings.Repeat("<x&y>", 20000)
	var many []any
	for i := range 70000 {
		many = append(many, float64(i%300)-150)
	}
	wide := map[string]any{}
	for i := range 70 {
		wide[fmt.Sprintf("k%03d", i)] = i
	}
	values := []any{
		map[string]any{},
		map[string]any{"a": nil, "b": true, "c": false, "d": []any{}, "e": map[string]any{}},
		map[string]any{"i": []any{0, 1, 127, 128, 255, 256, 65535, 65536, 1 << 32, uint64(math.MaxUint64),
			-1, -32, -33, -128, -129, -32768, -32769, -1 << 31, -1<<31 - 1, int64(math.MinInt64), int8(-5), uint16(9)}},
		map[string]any{"f": []any{0.0, math.Copysign(0, -1), 0.1, 1.5, -2.25, 1e20, 1e21, 1e-6, 1e-7, 123456789012345678.0,
			float32(0.1), float32(3.5), 5e-324, math.MaxFloat64, 8000.0}},
		map[string]any{"s": []any{"", "plain", "\u2028\u2029", "<a href=\"x\">&amp;</a>", "tab\tnl\nnul\x00bell\x07",
			"bad\xff\xfeutf8", "é🙂", "\\/", strings.Repeat("a", 31), strings.Repeat("b", 32), strings.Repeat("c", 255),
			strings.Repeat("d", 256), long}},
		map[string]any{"many": many, "wide": wide, "<key>": "html", "bad\xffkey": 1},
		map[string]any{"nested": map[string]any{"z": 1.0, "a": map[string]any{"y": nil, "b": []any{map[string]any{"k": "v"}}}},
			"consumer": map[string]any{"id": "0f9a3c7e-8d1b-4f5a-9c2e-6b7d8e9f0a1b"}, "tags": []any{"t1", "t2"}},
	}
	for i, v := range values {
		mp := canonicalMsgpack(t, v)
		want, err := viaDecoding(mp)
		if err != nil {
			t.Fatalf("value %d: %v", i, err)
		}
		got, err := AppendJSONFromMsgpack([]byte("prefix"), mp)
		if err != nil {
			t.Fatalf("value %d: %v", i, err)
		}
		if !bytes.Equal(got[len("prefix"):], want) {
			t.Errorf("value %d:\n got %.300s\nwant %.300s", i, got[len("prefix"):], want)
		}
	}
}

// What has no JSON form here is an error, never wrong bytes: the caller
// then encodes the decoded value.
func TestJSONFromMsgpackRefuses(t *testing.T) {
	var unsorted bytes.Buffer
	enc := msgpack.NewEncoder(&unsorted)
	enc.EncodeMapLen(2)
	enc.EncodeString("b")
	enc.EncodeInt(1)
	enc.EncodeString("a")
	enc.EncodeInt(2)
	cases := map[string][]byte{
		"unsorted keys":  unsorted.Bytes(),
		"duplicate keys": {0x82, 0xa1, 'a', 0x01, 0xa1, 'a', 0x02},
		"integer key":    {0x81, 0x01, 0x02},
		"bin":            {0xc4, 0x01, 0x00},
		"extension":      {0xd4, 0x01, 0x00},
		"NaN":            {0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 1},
		"truncated":      {0x82, 0xa1, 'a'},
		"trailing":       {0xc0, 0xc0},
		"empty":          {},
		"too deep":       bytes.Repeat([]byte{0x91}, 100),
	}
	for name, mp := range cases {
		if out, err := AppendJSONFromMsgpack(nil, mp); err == nil {
			t.Errorf("%s: no error, wrote %q", name, out)
		}
	}
}

// FuzzJSONFromMsgpack: whatever the transcoder accepts decodes, and the
// decoded value's AppendJSON is the transcoder's output.
func FuzzJSONFromMsgpack(f *testing.F) {
	for _, v := range []any{
		map[string]any{"a": 1, "b": []any{"x", 2.5, nil, true}, "c": map[string]any{"d": -7}},
		map[string]any{"s": "<&>\u2028", "f": 1e-7, "u": uint64(1) << 63},
		[]any{float32(0.5), "é", map[string]any{}},
	} {
		f.Add(canonicalMsgpack(f, v))
	}
	f.Fuzz(func(t *testing.T, mp []byte) {
		got, err := AppendJSONFromMsgpack(nil, mp)
		if err != nil {
			return
		}
		want, err := viaDecoding(mp)
		if err != nil {
			t.Fatalf("transcoded %x to %q, but it does not decode: %v", mp, got, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%x:\n got %q\nwant %q", mp, got, want)
		}
	})
}
