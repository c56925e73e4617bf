package fsm

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// The fast restore of consumers and key-auth credentials must build what
// the generic one builds: the same sealed entity (encoding, hash, tags),
// index keys and view, for entities as the fold stores them.
func TestFastRestoreMatchesTheGenericOne(t *testing.T) {
	if !fastRestoreFits {
		t.Fatal("the unique fields or references of consumers or key-auth credentials changed: update restorefast.go")
	}
	m := testMachine(t)
	index := uint64(0)
	must := func(cmd *Command) {
		t.Helper()
		index++
		if res := applyCmd(m, index, 1_700_000_000_000_000_000, cmd); res.Err != nil {
			t.Fatalf("%s %s: %v (%v)", cmd.Op, cmd.Kind, res.Err, res.Err.Fields)
		}
	}
	for i := range 12 {
		cid := fmt.Sprintf("%08d-1111-4111-8111-111111111111", i)
		body := map[string]any{"username": fmt.Sprint("user", i)}
		switch i % 4 {
		case 1:
			body["custom_id"] = fmt.Sprint("custom", i)
		case 2:
			body = map[string]any{"custom_id": fmt.Sprint("only-custom", i), "tags": []any{"a", "b"}}
		case 3:
			body["tags"] = []any{}
		}
		must(&Command{Op: "create", Kind: Consumers, NewID: cid, Body: body})
		ka := map[string]any{"key": fmt.Sprint("key", i), "consumer": map[string]any{"id": cid}}
		switch i % 3 {
		case 1:
			ka["ttl"] = float64(3600)
		case 2:
			ka["tags"] = []any{"t"}
		}
		must(&Command{Op: "create", Kind: KeyAuths, NewID: fmt.Sprintf("%08d-2222-4222-8222-222222222222", i), Body: ka})
	}
	var snap bytes.Buffer
	if err := m.Persist(m.State(), &snap); err != nil {
		t.Fatal(err)
	}
	dec := msgpack.NewDecoder(&snap)
	var hd snapHeader
	if err := dec.Decode(&hd); err != nil {
		t.Fatal(err)
	}
	sr := newSnapReader(dec, hd.Version)
	// One decoder for all of them, as a worker keeps it.
	rd := newRestoreDecoder()
	seen := map[string]int{}
	var expiring, tagged, customOnly int
	for _, se := range readEntities(t, sr) {
		fast, ok := rd.restoredFast(se)
		if se.Kind != Consumers && se.Kind != KeyAuths {
			if ok {
				t.Errorf("a %s took the fast path", se.Kind)
			}
			continue
		}
		if !ok {
			t.Fatalf("%s %x: no fast path", se.Kind, se.Data)
		}
		slow, err := m.restoredGeneric(se, true)
		if err != nil {
			t.Fatal(err)
		}
		seen[se.Kind]++
		f, g := fast.e, slow.e
		if f.Kind != g.Kind || f.ID != g.ID || fast.hash != slow.hash || fast.hash != entityHash(g) || !bytes.Equal(f.enc, g.enc) ||
			!reflect.DeepEqual(f.tags, g.tags) || f.data != nil || g.data != nil {
			t.Errorf("%s %s: entity differs:\nfast    %+v\ngeneric %+v", se.Kind, g.ID, *f, *g)
		}
		if !reflect.DeepEqual(f.View, g.View) {
			t.Errorf("%s %s: view %+v, generic %+v", se.Kind, g.ID, f.View, g.View)
		}
		fast.e, slow.e = nil, nil
		if !reflect.DeepEqual(fast, slow) {
			t.Errorf("%s %s: keys %+v, generic %+v", se.Kind, g.ID, fast, slow)
		}
		if ka, ok := g.View.(*KeyAuth); ok && ka.ExpiresAt != 0 {
			expiring++
		}
		if len(g.tags) > 0 {
			tagged++
		}
		if c, ok := g.View.(*Consumer); ok && c.Username == "" {
			customOnly++
		}
	}
	if seen[Consumers] != 12 || seen[KeyAuths] != 12 || expiring == 0 || tagged == 0 || customOnly == 0 {
		t.Fatalf("the snapshot did not cover the cases: %v, %d expiring, %d tagged, %d without username", seen, expiring, tagged, customOnly)
	}
}

// A version 3 reader hands out each entity's bytes from a shared slab:
// they must be the bytes written, stay so while later entities are read,
// and not reach into each other (an append to one must not write over
// the next). A large entity and a stream cut short take the other paths.
func TestSnapReaderKeepsEachEntitysBytes(t *testing.T) {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	var want [][]byte
	for i := range 3000 {
		d := bytes.Repeat([]byte{byte(i)}, 1+i%97)
		if i == 1500 {
			d = bytes.Repeat([]byte{7}, 3*snapSlab)
		}
		want = append(want, d)
		if err := enc.Encode(&snapEntityBin{Kind: Consumers, Data: d}); err != nil {
			t.Fatal(err)
		}
	}
	if err := enc.Encode(&snapEntity{}); err != nil {
		t.Fatal(err)
	}
	whole := buf.Bytes()
	sr := newSnapReader(msgpack.NewDecoder(bytes.NewReader(whole)), 3)
	var got [][]byte
	for _, se := range readEntities(t, sr) {
		if se.Kind != Consumers {
			t.Fatalf("kind %q", se.Kind)
		}
		got = append(got, se.Data)
	}
	if len(got) != len(want) {
		t.Fatalf("read %d entities, wrote %d", len(got), len(want))
	}
	for i := range got {
		_ = append(got[i], 0xff)
	}
	for i := range got {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("entity %d: %d bytes, not the %d written", i, len(got[i]), len(want[i]))
		}
	}
	for _, cut := range []int{len(whole) / 3, len(whole) / 2, len(whole) - 2} {
		sr := newSnapReader(msgpack.NewDecoder(bytes.NewReader(whole[:cut])), 3)
		var err error
		for n := 0; err == nil && n <= len(want); n++ {
			_, err = sr.next()
		}
		if err == nil {
			t.Errorf("a stream cut at %d of %d bytes read to its end", cut, len(whole))
		}
	}
}

// Equal tag lists are one list; different ones, and lists past the
// table's bound, are still the tags given.
func TestInternTagsSharesEqualLists(t *testing.T) {
	a := internTags([]string{"batch-1", "x"})
	b := internTags([]string{"batch-1", "x"})
	if !reflect.DeepEqual(a, []string{"batch-1", "x"}) || &a[0] != &b[0] {
		t.Fatalf("equal lists not shared: %v %v", a, b)
	}
	if c := internTags([]string{"x", "batch-1"}); &c[0] == &a[0] || c[0] != "x" {
		t.Fatalf("another order gave %v", c)
	}
	if d := internTags([]string{"a\x00b"}); !reflect.DeepEqual(d, []string{"a\x00b"}) {
		t.Fatalf("a tag holding a 0: %q", d)
	}
	if e := internTags([]string{"a", "b"}); !reflect.DeepEqual(e, []string{"a", "b"}) {
		t.Fatalf("%q", e)
	}
	if internTags(nil) != nil || internTags([]string{}) != nil {
		t.Fatal("no tags must be nil")
	}
	for i := range maxTagLists + 10 {
		want := []string{fmt.Sprint("many-", i)}
		if got := internTags(want); !reflect.DeepEqual(got, want) {
			t.Fatalf("list %d: %v", i, got)
		}
	}
	if len(tagLists.m) > maxTagLists {
		t.Fatalf("the table grew to %d lists", len(tagLists.m))
	}
}

// readEntities reads a snapshot's entities to the empty one that ends them.
func readEntities(t *testing.T, sr *snapReader) []snapEntityRaw {
	t.Helper()
	var out []snapEntityRaw
	for {
		se, err := sr.next()
		if err != nil {
			t.Fatal(err)
		}
		if se.Kind == "" {
			return out
		}
		out = append(out, se)
	}
}

// A snapshot entity written by hand is the bytes the reflective encoder
// writes for snapEntityBin, for data of every length class.
func TestSnapEntityBinEncodesAsTheStruct(t *testing.T) {
	for _, n := range []int{0, 1, 31, 255, 256, 65535, 65536, 70000} {
		data := bytes.Repeat([]byte{0x81}, n)
		for _, kind := range []string{Consumers, KeyAuths, strings.Repeat("k", 40)} {
			var want, got bytes.Buffer
			if err := msgpack.NewEncoder(&want).Encode(&snapEntityBin{Kind: kind, Data: data}); err != nil {
				t.Fatal(err)
			}
			if err := encodeSnapEntityBin(msgpack.NewEncoder(&got), kind, data); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Bytes(), want.Bytes()) {
				t.Fatalf("kind %q, %d bytes of data: wrote % x..., the struct encodes as % x...", kind, n, head(got.Bytes()), head(want.Bytes()))
			}
		}
	}
}

func head(b []byte) []byte { return b[:min(len(b), 24)] }
