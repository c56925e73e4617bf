package log

import (
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// peekIndex reads the index from a record's first bytes; it must agree
// with the full peek, including the layouts it does not expect.
func TestPeekIndexAgreesWithPeek(t *testing.T) {
	big := make([]Change, 2000)
	for i := range big {
		big[i] = Change{EntityType: "consumers", EntityID: "c", Op: "created", After: map[string]any{"username": "u"}}
	}
	for _, rec := range []Record{
		{Event: Event{Index: 42, Time: 7, Payload: make([]byte, 1<<20)}, Outcome: "applied", Changes: big, Hash: "h"},
		{Event: Event{Index: 1 << 40, Time: 1}, Outcome: "rejected"},
		{Event: Event{Time: 3}, Outcome: "applied"}, // index 0 is omitted: "t" comes first
	} {
		v, err := msgpack.Marshal(&rec)
		if err != nil {
			t.Fatal(err)
		}
		want, _, _, err := peek(v)
		if err != nil {
			t.Fatal(err)
		}
		got, err := peekIndex(v)
		if err != nil || got != want || got != rec.Event.Index {
			t.Errorf("peekIndex = %d, %v; peek = %d; record index %d", got, err, want, rec.Event.Index)
		}
	}
	// Another shape altogether: a map led by a different key.
	v, _ := msgpack.Marshal(map[string]any{"h": "x", "ev": map[string]any{"i": 5}})
	if got, err := peekIndex(v); err != nil || got != 5 {
		t.Errorf("fallback: peekIndex = %d, %v, want 5", got, err)
	}
}
