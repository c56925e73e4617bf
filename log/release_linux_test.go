package log

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// mappedKB is how much of path is resident in this process's mappings.
func mappedKB(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Skip("no /proc/self/smaps:", err)
	}
	defer f.Close()
	kb, in := 0, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		switch {
		case len(fields) >= 5 && strings.Contains(fields[0], "-"):
			// A mapping's first line; an anonymous one has no path.
			in = len(fields) >= 6 && fields[5] == path
		case in && len(fields) >= 2 && fields[0] == "Rss:":
			n, _ := strconv.Atoi(fields[1])
			kb += n
		}
	}
	return kb
}

// After a full read of the history (what a snapshot does), its pages are
// resident; ReleaseMapped gives them back, and the history still reads
// the same.
func TestReleaseMappedDropsResidentPages(t *testing.T) {
	path := filepath.Join(t.TempDir(), "h.db")
	h, err := OpenHistory(path)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	var recs []*Record
	for i := uint64(1); i <= 64; i++ {
		payload := bytes.Repeat([]byte{byte(i)}, 256<<10)
		recs = append(recs, &Record{Event: Event{Index: i, Time: int64(i), Payload: payload}, Outcome: "applied"})
	}
	if err := h.Commit(recs, nil); err != nil {
		t.Fatal(err)
	}
	dump := func() [32]byte {
		hw := sha256.New()
		if _, err := h.Dump(hw, 64); err != nil {
			t.Fatal(err)
		}
		var sum [32]byte
		copy(sum[:], hw.Sum(nil))
		return sum
	}
	want := dump()
	before := mappedKB(t, path)
	if before < 8<<10 { // 16 MB of payloads were just read through the mapping
		t.Fatalf("only %d kB of the history resident after reading it all", before)
	}
	if err := h.ReleaseMapped(); err != nil {
		t.Fatal(err)
	}
	if after := mappedKB(t, path); after > before/8 {
		t.Fatalf("%d kB resident after the release, %d before", after, before)
	}
	if dump() != want {
		t.Fatal("the history reads differently after the release")
	}
}
