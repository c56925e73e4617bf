package fsm

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/gatehouse-gw/gatehouse/log"
)

// randomValue is a body value of every shape a JSON or YAML body holds,
// with the lengths where msgpack's encodings change size.
func randomValue(rng *rand.Rand, depth int) any {
	lengths := []int{0, 1, 15, 16, 31, 32, 255, 256, 70000}
	switch k := rng.IntN(13); {
	case k == 0:
		return nil
	case k == 1:
		return rng.IntN(2) == 0
	case k == 2:
		return rng.NormFloat64() * 1e6
	case k == 3:
		return []float64{0, -1, 1.5, math.MaxFloat64, math.Inf(1), 1e300}[rng.IntN(6)]
	case k == 4:
		return []int{0, 1, 127, 128, -1, -32, -33, -128, -129, 40000, -40000, 1 << 40, math.MinInt64}[rng.IntN(13)]
	case k == 5:
		return int64(rng.Int64() - rng.Int64())
	case k == 6:
		return []string{"a", "b"}
	case k == 7:
		return float32(rng.NormFloat64())
	case k == 8:
		return uint16(rng.IntN(70000))
	case k <= 10 || depth > 3:
		n := lengths[rng.IntN(len(lengths)-1)]
		if rng.IntN(20) == 0 {
			n = lengths[len(lengths)-1]
		}
		return strings.Repeat(string(rune('a'+rng.IntN(26))), n)
	case k == 11:
		s := make([]any, []int{0, 1, 3, 15, 16, 20}[rng.IntN(6)])
		for i := range s {
			s[i] = randomValue(rng, depth+1)
		}
		return s
	}
	m := map[string]any{}
	for i := range []int{0, 1, 3, 15, 16, 20}[rng.IntN(6)] {
		m[fmt.Sprintf("f%d", i)] = randomValue(rng, depth+1)
	}
	return m
}

func randomCommand(rng *rand.Rand) *Command {
	c := &Command{Op: []string{log.OpUpsert, log.OpDelete, "other"}[rng.IntN(3)], Kind: Kinds[rng.IntN(len(Kinds))]}
	if rng.IntN(2) == 0 {
		c.Key = fmt.Sprintf("%08x-1111-4111-8111-111111111111", rng.Uint32())
	}
	if rng.IntN(4) == 0 {
		c.Named = "named"
	}
	if rng.IntN(2) == 0 {
		c.NewID = c.Key
	}
	if rng.IntN(4) == 0 {
		c.Parent = &Parent{Kind: Services, Key: "s", Field: "service"}
	}
	switch rng.IntN(4) {
	case 0:
	case 1:
		c.Body = map[string]any{}
	default:
		c.Body = map[string]any{"username": "u", "tags": []any{"t"}, "x": randomValue(rng, 0)}
	}
	return c
}

// TestCommandCodecIsMsgpacks checks the hand-written encoding against
// msgpack's: msgpack reads what appendCommands writes as what it reads
// from its own encoding, and readCommands reads it too, to the same
// commands. It fails on any encoding or decoding that differs.
func TestCommandCodecIsMsgpacks(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 300 {
		cmds := make([]*Command, rng.IntN(20))
		for i := range cmds {
			cmds[i] = randomCommand(rng)
		}
		if round == 0 {
			cmds = nil
		}
		theirs, err := msgpack.Marshal(cmds)
		if err != nil {
			t.Fatal(err)
		}
		ours, err := appendCommands(nil, cmds)
		if err != nil {
			t.Fatal(err)
		}
		want, err := decodeCommandsSlow(&log.Event{Type: log.TypeBatch, Payload: theirs})
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeCommandsSlow(&log.Event{Type: log.TypeBatch, Payload: ours})
		if err != nil {
			t.Fatalf("round %d: msgpack cannot read our encoding: %v", round, err)
		}
		if !sameCommands(got, want) {
			t.Fatalf("round %d: msgpack reads our encoding as %#v, its own as %#v", round, got, want)
		}
		fast, ok := readCommands(ours, true)
		if !ok {
			t.Fatalf("round %d: readCommands gave up on our encoding", round)
		}
		if !sameCommands(fast, want) {
			t.Fatalf("round %d: readCommands read %#v, msgpack %#v", round, fast, want)
		}
		for _, c := range cmds {
			one, err := EncodeCommand(c)
			if err != nil {
				t.Fatal(err)
			}
			got, err := decodeCommands(&log.Event{Type: log.TypeEntity, Payload: one})
			if err != nil || len(got) != 1 {
				t.Fatalf("round %d: single command: %v", round, err)
			}
			theirs, _ := msgpack.Marshal(c)
			want, _ := decodeCommandsSlow(&log.Event{Type: log.TypeEntity, Payload: theirs})
			if !sameCommands(got, want) {
				t.Fatalf("round %d: single command read as %#v, want %#v", round, got[0], want[0])
			}
		}
	}
}

// TestReadCommandsLeavesTheRestToMsgpack feeds payloads readCommands does
// not read; decodeCommands must still answer what msgpack answers.
func TestReadCommandsLeavesTheRestToMsgpack(t *testing.T) {
	enc := func(v any) []byte {
		b, err := msgpack.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	deep := any("x")
	for range maxDepth + 2 {
		deep = []any{deep}
	}
	ok, _ := appendCommands(nil, []*Command{{Op: "upsert", Kind: Consumers}})
	cases := map[string][]byte{
		"bin value":      enc([]map[string]any{{"op": "upsert", "kind": "consumers", "body": map[string]any{"b": []byte{1}}}}),
		"unknown field":  enc([]map[string]any{{"op": "upsert", "kind": "consumers", "extra": 1}}),
		"repeated field": slices.Concat([]byte{0x91, 0x82}, enc("op"), enc("upsert"), enc("op"), enc("delete")),
		"deep body":      enc([]map[string]any{{"op": "upsert", "kind": "consumers", "body": map[string]any{"d": deep}}}),
		"trailing bytes": append(ok, 0xc0),
		"struct array":   enc([]any{[]any{"upsert", "consumers"}}),
		"truncated":      ok[:len(ok)-2],
	}
	for name, b := range cases {
		if _, done := readCommands(b, true); done {
			t.Errorf("%s: readCommands read it", name)
		}
		got, gerr := decodeCommands(&log.Event{Type: log.TypeBatch, Payload: b})
		want, werr := decodeCommandsSlow(&log.Event{Type: log.TypeBatch, Payload: b})
		if (gerr == nil) != (werr == nil) || !sameCommands(got, want) {
			t.Errorf("%s: decodeCommands gave %v, %v; msgpack %v, %v", name, got, gerr, want, werr)
		}
	}
}

// FuzzReadCommands: whatever readCommands reads, msgpack reads the same.
func FuzzReadCommands(f *testing.F) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 8 {
		b, _ := appendCommands(nil, []*Command{randomCommand(rng), randomCommand(rng)})
		if len(b) < 4096 {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, ok := readCommands(b, true)
		if !ok {
			return
		}
		want, err := decodeCommandsSlow(&log.Event{Type: log.TypeBatch, Payload: b})
		if err != nil {
			t.Fatalf("readCommands read what msgpack refuses (%v): %x", err, b)
		}
		if !sameCommands(got, want) {
			t.Fatalf("readCommands read %#v, msgpack %#v", got, want)
		}
		again, err := appendCommands(nil, got)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range got {
			if len(c.Body) == 0 {
				c.Body = nil // omitted when empty, as by msgpack
			}
		}
		if back, ok := readCommands(again, true); !ok || !sameCommands(back, got) {
			t.Fatalf("our encoding of %#v does not read back", got)
		}
	})
}

func sameCommands(a, b []*Command) bool {
	if len(a) != len(b) || (a == nil) != (b == nil) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if (x == nil) != (y == nil) {
			return false
		}
		if x == nil {
			continue
		}
		if x.Op != y.Op || x.Kind != y.Kind || x.Key != y.Key || x.Named != y.Named || x.NewID != y.NewID ||
			!reflect.DeepEqual(x.Parent, y.Parent) || !sameValue(x.Body, y.Body) {
			return false
		}
	}
	return true
}

// sameValue is reflect.DeepEqual with NaN equal to itself and a nil map
// in an interface unequal to an empty one.
func sameValue(a, b any) bool {
	switch x := a.(type) {
	case float64:
		y, ok := b.(float64)
		return ok && (x == y || math.IsNaN(x) && math.IsNaN(y))
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || (x == nil) != (y == nil) || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			w, ok := y[k]
			if !ok || !sameValue(v, w) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || (x == nil) != (y == nil) || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !sameValue(x[i], y[i]) {
				return false
			}
		}
		return true
	case []byte:
		y, ok := b.([]byte)
		return ok && bytes.Equal(x, y)
	}
	return reflect.DeepEqual(a, b)
}

// BenchmarkBatchCodec encodes and decodes a batch of 1,000 consumers with
// their keys, as a POST /config makes them, by hand (ours) and by
// reflection (msgpack).
func BenchmarkBatchCodec(b *testing.B) {
	var cmds []*Command
	for i := range 1000 {
		id := fmt.Sprintf("%08x-1111-4111-8111-111111111111", i)
		cmds = append(cmds,
			&Command{Op: log.OpUpsert, Kind: Consumers, Key: id, NewID: id, Body: map[string]any{"username": fmt.Sprintf("c%d", i), "tags": []any{"consumers-1"}}},
			&Command{Op: log.OpUpsert, Kind: KeyAuths, Key: id, NewID: id, Body: map[string]any{"key": fmt.Sprintf("k%d", i), "consumer": map[string]any{"id": id}, "tags": []any{"consumers-1"}}})
	}
	payload, _ := EncodeBatch(cmds)
	ev := &log.Event{Type: log.TypeBatch, Payload: payload}
	b.Run("encode/ours", func(b *testing.B) {
		for b.Loop() {
			EncodeBatch(cmds)
		}
	})
	b.Run("encode/msgpack", func(b *testing.B) {
		for b.Loop() {
			log.AppendMsgpack(make([]byte, 0, len(payload)), cmds)
		}
	})
	b.Run("decode/ours", func(b *testing.B) {
		for b.Loop() {
			decodeCommands(ev)
		}
	})
	b.Run("decode/msgpack", func(b *testing.B) {
		for b.Loop() {
			decodeCommandsSlow(ev)
		}
	})
}
