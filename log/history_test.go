package log

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
	bolt "go.etcd.io/bbolt"
)

// peekHead reads the index and time from a record's first bytes; it must
// agree with the full peek, including the layouts it does not expect.
func TestPeekHeadAgreesWithPeek(t *testing.T) {
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
		want, wantTime, _, err := peek(v)
		if err != nil {
			t.Fatal(err)
		}
		got, gotTime, err := peekHead(v)
		if err != nil || got != want || got != rec.Event.Index || gotTime != wantTime || gotTime != rec.Event.Time {
			t.Errorf("peekHead = %d, %d, %v; peek = %d, %d; record %d, %d", got, gotTime, err, want, wantTime, rec.Event.Index, rec.Event.Time)
		}
	}
	// Another shape altogether: a map led by a different key.
	v, _ := msgpack.Marshal(map[string]any{"h": "x", "ev": map[string]any{"i": 5}})
	if got, err := peekIndex(v); err != nil || got != 5 {
		t.Errorf("fallback: peekIndex = %d, %v, want 5", got, err)
	}
}

// A large record lives in its own bucket: the appends after it must not
// rewrite it (they did, four times, each allocating and writing the whole
// record), and every reader sees it as it was written.
func TestLargeRecordsStandApart(t *testing.T) {
	dir := t.TempDir()
	h, err := OpenHistory(dir + "/h.db")
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	rec := func(i uint64, size int) *Record {
		return &Record{Event: Event{Index: i, Time: int64(i), Payload: make([]byte, size)}, Outcome: "applied"}
	}
	if err := h.Commit([]*Record{rec(1, 10), rec(2, 8<<20)}, nil); err != nil {
		t.Fatal(err)
	}
	for i := uint64(3); i <= 8; i++ {
		st := h.db.Stats()
		before := st.TxStats.GetPageAlloc()
		if err := h.Commit([]*Record{rec(i, 10)}, nil); err != nil {
			t.Fatal(err)
		}
		st = h.db.Stats()
		if grew := st.TxStats.GetPageAlloc() - before; grew > 1<<20 {
			t.Fatalf("appending record %d allocated %d bytes of pages: the large record was rewritten", i, grew)
		}
	}
	r2, err := h.Get(2)
	if err != nil || r2 == nil || len(r2.Event.Payload) != 8<<20 {
		t.Fatalf("Get(2): %v", err)
	}
	// The next record chains to it through the hash kept beside it.
	if r3, err := h.Get(3); err != nil || r3.PrevHash != r2.Hash || r2.Hash == "" {
		t.Fatalf("record 3 chains to %q, record 2's hash is %q (%v)", r3.PrevHash, r2.Hash, err)
	}
	h.db.View(func(tx *bolt.Tx) error {
		if got := tx.Bucket(bulkBucket).Bucket(key(2)).Get(hashKey); string(got) != r2.Hash {
			t.Errorf("bulk record 2 keeps hash %q beside it, want %q", got, r2.Hash)
		}
		return nil
	})
	if ts, err := h.TimeAt(2); err != nil || ts != 2 {
		t.Fatalf("TimeAt(2) = %d, %v", ts, err)
	}
	n := 0
	if err := h.Range(1, 0, func(r *Record) bool { n++; return r.Event.Index == uint64(n) }); err != nil || n != 8 {
		t.Fatalf("Range saw %d records: %v", n, err)
	}
	if i, err := h.IndexAt(5); err != nil || i != 5 {
		t.Fatalf("IndexAt(5) = %d, %v", i, err)
	}
	// A dump carries the record itself, and loading it into another
	// history (a snapshot install) keeps it whole.
	var dump bytes.Buffer
	if _, err := h.Dump(&dump, 8); err != nil {
		t.Fatal(err)
	}
	size, _, err := h.DumpSize(8)
	if err != nil || size != int64(dump.Len()) {
		t.Fatalf("DumpSize %d, dump %d bytes: %v", size, dump.Len(), err)
	}
	h2, err := OpenHistory(dir + "/h2.db")
	if err != nil {
		t.Fatal(err)
	}
	defer h2.Close()
	if last, err := h2.Load(bytes.NewReader(dump.Bytes())); err != nil || last != 8 {
		t.Fatalf("Load: %d, %v", last, err)
	}
	if r, err := h2.Get(2); err != nil || r == nil || len(r.Event.Payload) != 8<<20 {
		t.Fatalf("loaded Get(2): %v", err)
	}
	// A load does not parse the hash out; an append right after a loaded
	// bulk record still chains to it.
	var upto2 bytes.Buffer
	if _, err := h.Dump(&upto2, 2); err != nil {
		t.Fatal(err)
	}
	h3, err := OpenHistory(dir + "/h3.db")
	if err != nil {
		t.Fatal(err)
	}
	defer h3.Close()
	if _, err := h3.Load(&upto2); err != nil {
		t.Fatal(err)
	}
	if err := h3.Append(rec(3, 10)); err != nil {
		t.Fatal(err)
	}
	if r3, err := h3.Get(3); err != nil || r3.PrevHash != r2.Hash {
		t.Fatalf("after a load, record 3 chains to %q, want %q (%v)", r3.PrevHash, r2.Hash, err)
	}
	// Loading its own dump up to 1 (a restart from an older snapshot)
	// drops record 2 and its bucket.
	var short bytes.Buffer
	h.Dump(&short, 1)
	if _, err := h.Load(&short); err != nil {
		t.Fatal(err)
	}
	if r, _ := h.Get(2); r != nil {
		t.Fatal("record 2 survived a load that ends at 1")
	}
	h.db.View(func(tx *bolt.Tx) error {
		if k, _ := tx.Bucket(bulkBucket).Cursor().First(); k != nil {
			t.Errorf("bulk bucket %x left behind", k)
		}
		return nil
	})
}

// Closing the history saves its freelist, so the next open reads it
// instead of walking every page of the file to rebuild it; the file
// stays consistent and reads the same.
func TestCloseSavesTheFreelist(t *testing.T) {
	path := t.TempDir() + "/h.db"
	h, err := OpenHistory(path)
	if err != nil {
		t.Fatal(err)
	}
	rec := func(i uint64, size int) *Record {
		return &Record{Event: Event{Index: i, Time: int64(i), Payload: bytes.Repeat([]byte{byte(i)}, size)}, Outcome: "applied"}
	}
	for i := uint64(1); i <= 200; i++ {
		if err := h.Commit([]*Record{rec(i, 3000)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	// Free pages to save: most records go (as a truncation drops them),
	// and the next commit releases their pages.
	if err := h.db.Update(func(tx *bolt.Tx) error {
		for i := uint64(1); i <= 150; i++ {
			if err := tx.Bucket(bucket).Delete(key(i)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := h.Commit([]*Record{rec(201, 3000)}, nil); err != nil {
		t.Fatal(err)
	}
	if freelistPage(t, path) != noFreelist {
		t.Fatal("a commit saved the freelist; the test assumes commits do not")
	}
	if h.db.Stats().FreePageN == 0 {
		t.Fatal("no free pages to save")
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if freelistPage(t, path) == noFreelist {
		t.Fatal("Close left no freelist in the file: the next open walks every page")
	}
	h, err = OpenHistory(path)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	// The saved freelist is right: pages the file still uses are not
	// handed out again (bbolt's check), before and after more commits.
	for i := uint64(202); i <= 250; i++ {
		if err := h.Commit([]*Record{rec(i, 3000)}, nil); err != nil {
			t.Fatal(err)
		}
		if i == 202 || i == 250 {
			if err := h.db.View(func(tx *bolt.Tx) error {
				for err := range tx.Check() {
					return err
				}
				return nil
			}); err != nil {
				t.Fatalf("after record %d: %v", i, err)
			}
		}
	}
	for i := uint64(151); i <= 250; i++ {
		r, err := h.Get(i)
		if err != nil || r == nil || !bytes.Equal(r.Event.Payload, rec(i, 3000).Event.Payload) {
			t.Fatalf("record %d after the reopen: %v, %v", i, r, err)
		}
	}
}

const noFreelist = ^uint64(0)

// freelistPage reads the freelist page id from the newer of the file's two
// meta pages (bbolt's format: a 16-byte page header, then magic, version,
// page size and flags, the root bucket, the freelist page and the txid).
func freelistPage(t *testing.T, path string) uint64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	pageSize := int(le.Uint32(b[24:]))
	m0, m1 := b[:pageSize], b[pageSize:2*pageSize]
	if le.Uint64(m1[64:]) > le.Uint64(m0[64:]) {
		m0 = m1
	}
	return le.Uint64(m0[48:])
}

// A snapshot's history that holds this history's records, encoded
// differently (msgpack writes a map in Go's map order, and numbers
// compactly or not), is the same history: Load keeps the records and the
// versions instead of rewriting the one and dropping the other. It knows
// them by their chain hashes, which also spares it reading every page of
// a large record.
func TestLoadTakesTheSameRecordsEncodedDifferently(t *testing.T) {
	h, err := OpenHistory(t.TempDir() + "/h.db")
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	big := make([]Change, 3000) // over bulkAbove: stored in a bucket of its own
	for i := range big {
		big[i] = Change{EntityType: "consumers", EntityID: fmt.Sprint(i), Op: "created", After: map[string]any{"username": fmt.Sprint("u", i), "n": 1.0}}
	}
	recs := []*Record{
		{Event: Event{Index: 1, Time: 1, Payload: []byte("a")}, Outcome: "applied"},
		{Event: Event{Index: 2, Time: 2, Payload: []byte("b")}, Outcome: "applied", Changes: big},
		{Event: Event{Index: 3, Time: 3, Payload: []byte("c")}, Outcome: "applied"},
	}
	version := Version{Kind: "consumers", ID: "0", Index: 2, Value: []byte("v")}
	if err := h.Commit(recs, []Version{version}); err != nil {
		t.Fatal(err)
	}
	stored := map[uint64][]byte{}
	var stream bytes.Buffer
	if err := h.db.View(func(tx *bolt.Tx) error {
		c := records(tx)
		for k, v := c.First(); k != nil; k, v = c.Next() {
			i := binary.BigEndian.Uint64(k)
			stored[i] = bytes.Clone(v)
			var r Record
			if err := msgpack.Unmarshal(v, &r); err != nil {
				return err
			}
			var b bytes.Buffer
			enc := msgpack.NewEncoder(&b)
			enc.UseCompactInts(true)
			if err := enc.Encode(&r); err != nil {
				return err
			}
			if bytes.Equal(b.Bytes(), v) {
				t.Fatalf("record %d encodes the same; the test needs another encoding", i)
			}
			stream.Write(binary.BigEndian.AppendUint32(nil, uint32(b.Len())))
			stream.Write(b.Bytes())
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	stream.Write([]byte{0, 0, 0, 0})
	if n, err := h.Load(&stream); err != nil || n != 3 {
		t.Fatalf("Load = %d, %v", n, err)
	}
	if err := h.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(versionsBucket).Get(vkey(version.Kind, version.ID, version.Index)); string(v) != "v" {
			t.Errorf("the version was dropped (%q)", v)
		}
		c := records(tx)
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if i := binary.BigEndian.Uint64(k); !bytes.Equal(v, stored[i]) {
				t.Errorf("record %d was rewritten", i)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// recordHash reads a chain hash from the record's last bytes, without
// parsing what comes before (here made unparseable), and falls back to
// parsing for any other tail.
func TestRecordHashReadsTheTail(t *testing.T) {
	hash := strings.Repeat("ab", 32)
	big := []Change{{EntityType: "consumers", EntityID: "c", Op: "created", After: map[string]any{"username": "u"}}}
	v, err := msgpack.Marshal(&Record{Event: Event{Index: 9, Payload: make([]byte, 100)}, Outcome: "applied", Changes: big, Hash: hash})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := recordHash(v); got != hash || err != nil {
		t.Fatalf("recordHash = %q, %v", got, err)
	}
	broken := bytes.Clone(v)
	for i := 1; i < len(broken)-80; i++ {
		broken[i] = 0xc1 // never used by msgpack
	}
	if got, err := recordHash(broken); got != hash || err != nil {
		t.Errorf("recordHash parsed the record: %q, %v", got, err)
	}
	for _, r := range []Record{{Event: Event{Index: 1}, Outcome: "applied"}, {Event: Event{Index: 2}, Hash: "short"}} {
		v, _ := msgpack.Marshal(&r)
		if got, err := recordHash(v); got != r.Hash || err != nil {
			t.Errorf("recordHash of a record with hash %q = %q, %v", r.Hash, got, err)
		}
	}
}

// A load that matches the file's first records and then differs keeps
// the matching ones and writes the stream's from the first difference
// on, each with its own bytes (matched records are read into one reused
// buffer).
func TestLoadRewritesFromTheFirstDifference(t *testing.T) {
	dir := t.TempDir()
	open := func(name string, payloads ...string) *History {
		h, err := OpenHistory(dir + "/" + name)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		var recs []*Record
		for i, p := range payloads {
			recs = append(recs, &Record{Event: Event{Index: uint64(i + 1), Time: int64(i + 1), Payload: []byte(p)}, Outcome: "applied"})
		}
		if err := h.Commit(recs, nil); err != nil {
			t.Fatal(err)
		}
		return h
	}
	src := open("src.db", "aa", "bb", "cc-longer", "dd")
	dst := open("dst.db", "aa", "bb", "xx", "yy", "zz")
	var dump bytes.Buffer
	if _, err := src.Dump(&dump, 4); err != nil {
		t.Fatal(err)
	}
	if last, err := dst.Load(&dump); err != nil || last != 4 {
		t.Fatalf("Load = %d, %v", last, err)
	}
	for i, want := range []string{"aa", "bb", "cc-longer", "dd"} {
		r, err := dst.Get(uint64(i + 1))
		if err != nil || r == nil || string(r.Event.Payload) != want {
			t.Fatalf("record %d after the load: %+v, %v; want payload %q", i+1, r, err, want)
		}
		s, _ := src.Get(uint64(i + 1))
		if r.Hash != s.Hash {
			t.Fatalf("record %d: hash %s, the stream's %s", i+1, r.Hash, s.Hash)
		}
	}
	if r, _ := dst.Get(5); r != nil {
		t.Fatal("record 5, past the stream's end, survived the load")
	}
}

// Two versions of one entity at one index (a batch that writes it twice)
// leave the later one, in a run by index as in the versions bucket.
// (VersionsAt reports the value as of upto of what changed after it.)
func TestLaterVersionAtOneIndexWins(t *testing.T) {
	h, err := OpenHistory(t.TempDir() + "/h.db")
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	var vs []Version
	for _, byIndex := range []bool{false, true} {
		idx := uint64(1)
		if byIndex {
			idx = 2
		}
		for i := range 50 {
			id := fmt.Sprintf("e%02d", i%5) // each entity ten times
			vs = append(vs, Version{Kind: "consumers", ID: id, Index: idx, ByIndex: byIndex, Value: []byte(fmt.Sprint(byIndex, i))})
		}
	}
	for i := range 5 { // a later change of each, so that both are asked for
		vs = append(vs, Version{Kind: "consumers", ID: fmt.Sprintf("e%02d", i), Index: 3, Value: []byte("3")})
	}
	if err := h.PutVersions(vs); err != nil {
		t.Fatal(err)
	}
	for _, upto := range []uint64{1, 2} {
		got := map[string]string{}
		if err := h.VersionsAt(upto, func(kind, id string, v []byte) error { got[id] = string(v); return nil }); err != nil {
			t.Fatal(err)
		}
		for i := 45; i < 50; i++ {
			id := fmt.Sprintf("e%02d", i%5)
			if want := fmt.Sprint(upto == 2, i); got[id] != want {
				t.Errorf("at %d, %s is %q, want the last version %q", upto, id, got[id], want)
			}
		}
	}
}
