package log

import (
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// jsonLike is an entity's data as the history holds it, with the lengths
// and numbers where msgpack's encodings change size, and a few types left
// to msgpack (int64, uint16, float32).
func jsonLike(rng *rand.Rand, depth int) any {
	switch k := rng.IntN(12); {
	case k == 0:
		return nil
	case k == 1:
		return rng.IntN(2) == 0
	case k == 2:
		return rng.NormFloat64() * 1e9
	case k == 3:
		return []int{0, 127, 128, 255, 256, 65535, 65536, 1 << 33, -1, -32, -33, -128, -129, -40000, math.MinInt64}[rng.IntN(15)]
	case k == 4:
		return []any{int64(5), uint16(300), float32(1.5), []string{"x"}}[rng.IntN(4)]
	case k <= 7 || depth > 3:
		return strings.Repeat("é", []int{0, 1, 15, 16, 31, 32, 200, 40000}[rng.IntN(8)])
	case k <= 9:
		s := make([]any, []int{0, 1, 15, 16, 17}[rng.IntN(5)])
		for i := range s {
			s[i] = jsonLike(rng, depth+1)
		}
		return s
	}
	m := map[string]any{}
	for i := range []int{0, 1, 15, 16, 17}[rng.IntN(5)] {
		m[fmt.Sprintf("k%d", i)] = jsonLike(rng, depth+1)
	}
	return m
}

// TestRecordEncodingIsMsgpacks: msgpack reads a record appendRecord wrote
// as it reads its own encoding of it, and peekHead finds its index and
// time. It fails on any field written differently, in type or in order.
func TestRecordEncodingIsMsgpacks(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for round := range 60 {
		r := &Record{
			Event: Event{Index: []uint64{0, 1, 200, 1 << 40}[rng.IntN(4)], Time: rng.Int64() - rng.Int64(), Actor: "admin",
				Source: "127.0.0.1", RequestID: "r", Node: "n1", Op: "upsert", Entity: "consumers", EntityID: "c"},
			Type: Type(rng.IntN(256)), Outcome: "applied",
		}
		switch rng.IntN(4) {
		case 0:
		case 1:
			r.Event.Payload = []byte{}
		default:
			r.Event.Payload = make([]byte, []int{1, 255, 256, 70000}[rng.IntN(4)])
		}
		if rng.IntN(2) == 0 {
			r.Error, r.PrevHash, r.Hash = "bad", "p", "h"
		}
		for range rng.IntN(20) {
			c := Change{EntityType: "consumers", EntityID: "id", Op: "created"}
			if rng.IntN(2) == 0 {
				c.Before = map[string]any{"a": jsonLike(rng, 0), "b": jsonLike(rng, 0)}
			}
			if rng.IntN(3) > 0 {
				c.After, _ = jsonLike(rng, 3).(map[string]any)
				if c.After == nil {
					c.After = map[string]any{"x": jsonLike(rng, 0)}
				}
			}
			r.Changes = append(r.Changes, c)
		}
		ours, err := appendRecord(nil, r)
		if err != nil {
			t.Fatal(err)
		}
		theirs, err := msgpack.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		var got, want Record
		if err := msgpack.Unmarshal(ours, &got); err != nil {
			t.Fatalf("round %d: msgpack cannot read our record: %v", round, err)
		}
		if err := msgpack.Unmarshal(theirs, &want); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("round %d: our record reads as\n%#v\nmsgpack's as\n%#v", round, got, want)
		}
		if len(ours) != len(theirs) {
			t.Fatalf("round %d: our record is %d bytes, msgpack's %d", round, len(ours), len(theirs))
		}
		i, tm, err := peekHead(ours)
		if err != nil || i != r.Event.Index || tm != r.Event.Time {
			t.Fatalf("round %d: peekHead read %d, %d, %v", round, i, tm, err)
		}
	}
}

// BenchmarkRecordEncoding: a record of 1,000 consumer creations.
func BenchmarkRecordEncoding(b *testing.B) {
	r := &Record{Event: Event{Index: 7, Time: 1, Payload: make([]byte, 200_000)}, Outcome: "applied"}
	for i := range 1000 {
		r.Changes = append(r.Changes, Change{EntityType: "consumers", EntityID: fmt.Sprint(i), Op: "created",
			After: map[string]any{"id": fmt.Sprint(i), "username": fmt.Sprintf("c%d", i), "custom_id": nil,
				"tags": []any{"consumers-1"}, "created_at": 1.7e9, "updated_at": 1.7e9}})
	}
	buf := make([]byte, 0, 1<<20)
	b.Run("ours", func(b *testing.B) {
		for b.Loop() {
			appendRecord(buf[:0], r)
		}
	})
	b.Run("msgpack", func(b *testing.B) {
		for b.Loop() {
			AppendMsgpack(buf[:0], r)
		}
	})
}
