package cluster

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	bolt "go.etcd.io/bbolt"
)

func openTestBolt(t *testing.T, dir string) *raftboltdb.BoltStore {
	t.Helper()
	store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db"),
		BoltOptions: &bolt.Options{Timeout: time.Second, FreelistType: bolt.FreelistMapType, NoFreelistSync: true}})
	if err != nil {
		t.Fatal(err)
	}
	return store
}

func openTestBulk(t *testing.T, dir string) (*bulkLogs, *raftboltdb.BoltStore) {
	t.Helper()
	store := openTestBolt(t, dir)
	b, err := openBulkLogs(store, filepath.Join(dir, "bulk"), 1000)
	if err != nil {
		store.Close()
		t.Fatal(err)
	}
	return b, store
}

func mustGet(t *testing.T, s raft.LogStore, index uint64) raft.Log {
	t.Helper()
	var l raft.Log
	if err := s.GetLog(index, &l); err != nil {
		t.Fatalf("get %d: %v", index, err)
	}
	return l
}

func bulkFiles(t *testing.T, dir string) int {
	t.Helper()
	names, err := os.ReadDir(filepath.Join(dir, "bulk"))
	if err != nil {
		t.Fatal(err)
	}
	return len(names)
}

func TestBulkLogsRoundTripLargeEntriesThroughFiles(t *testing.T) {
	dir := t.TempDir()
	b, store := openTestBulk(t, dir)
	defer store.Close()
	big := entry(2, 5000)
	logs := []*raft.Log{entry(1, 10), big, entry(3, 10)}
	if err := b.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	if len(logs[1].Data) != 5000 || logs[1] != big {
		t.Fatal("StoreLogs changed the caller's entries")
	}
	for _, want := range logs {
		got := mustGet(t, b, want.Index)
		if got.Term != want.Term || got.Type != want.Type || !bytes.Equal(got.Data, want.Data) {
			t.Errorf("entry %d: got %d bytes, want %d", want.Index, len(got.Data), len(want.Data))
		}
	}
	// Only the stub is in bolt; small entries are stored as they are.
	if raw := mustGet(t, store, 2); !isStub(raw.Data) {
		t.Errorf("bolt holds %d bytes for the large entry, want a stub", len(raw.Data))
	}
	if raw := mustGet(t, store, 1); len(raw.Data) != 10 {
		t.Errorf("small entry stored as %d bytes", len(raw.Data))
	}
	if n := bulkFiles(t, dir); n != 1 {
		t.Errorf("%d bulk files, want 1", n)
	}

	// A damaged file is an error, never wrong data.
	path := filepath.Join(dir, "bulk", bulkName(2))
	if err := os.WriteFile(path, bytes.Repeat([]byte{9}, 5000), 0o600); err != nil {
		t.Fatal(err)
	}
	var l raft.Log
	if err := b.GetLog(2, &l); err == nil {
		t.Error("a bulk file that does not match its stub was accepted")
	}

	if err := b.DeleteRange(1, 2); err != nil {
		t.Fatal(err)
	}
	if n := bulkFiles(t, dir); n != 0 {
		t.Errorf("%d bulk files after deleting their entries, want 0", n)
	}
	if got := mustGet(t, b, 3); len(got.Data) != 10 {
		t.Errorf("entry 3 after DeleteRange: %d bytes", len(got.Data))
	}
}

// A crash can leave a file whose stub was never committed, or whose stub
// was deleted; the next open removes it and keeps the others.
func TestBulkLogsRemoveStrayFilesOnOpen(t *testing.T) {
	dir := t.TempDir()
	b, store := openTestBulk(t, dir)
	if err := b.StoreLogs([]*raft.Log{entry(1, 5000), entry(2, 5000)}); err != nil {
		t.Fatal(err)
	}
	// Stub 2 deleted without its file; a file for entry 3 that never got
	// its stub; a half-written temporary file.
	if err := store.DeleteRange(2, 2); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{bulkName(3), bulkName(4) + ".tmp"} {
		if err := os.WriteFile(filepath.Join(dir, "bulk", name), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	store.Close()

	b, store = openTestBulk(t, dir)
	defer store.Close()
	if n := bulkFiles(t, dir); n != 1 {
		t.Errorf("%d bulk files after reopening, want 1", n)
	}
	if got := mustGet(t, b, 1); len(got.Data) != 5000 {
		t.Errorf("entry 1 after reopening: %d bytes", len(got.Data))
	}
}

// The reason for bulkLogs: after a large entry, bolt rewrote the leaf
// holding it on each of the next few appends. Page allocations per small
// append show it: megabytes without the wrapper, a few pages with it.
func TestBulkLogsKeepSmallAppendsSmallAfterALargeEntry(t *testing.T) {
	const large = 8 << 20
	for _, tc := range []struct {
		name    string
		wrapped bool
	}{{"bolt", false}, {"bulk", true}} {
		dir := t.TempDir()
		store := openTestBolt(t, dir)
		var s raft.LogStore = store
		if tc.wrapped {
			b, err := openBulkLogs(store, filepath.Join(dir, "bulk"), 64<<10)
			if err != nil {
				t.Fatal(err)
			}
			s = b
		}
		for i := uint64(1); i <= 50; i++ {
			if err := s.StoreLog(entry(i, 300)); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.StoreLog(entry(51, large)); err != nil {
			t.Fatal(err)
		}
		before := pageAlloc(store)
		for i := uint64(52); i <= 55; i++ {
			if err := s.StoreLog(entry(i, 300)); err != nil {
				t.Fatal(err)
			}
		}
		perAppend := (pageAlloc(store) - before) / 4
		store.Close()
		t.Logf("%s: %d bytes of pages per small append", tc.name, perAppend)
		if tc.wrapped && perAppend > 1<<20 {
			t.Errorf("each small append after a large entry allocated %d bytes of pages", perAppend)
		}
		if !tc.wrapped && perAppend < large/2 {
			t.Logf("bolt alone no longer rewrites the large entry's leaf (%d bytes per append): the wrapper may be unneeded", perAppend)
		}
	}
}

func pageAlloc(store *raftboltdb.BoltStore) int64 {
	stats := store.Stats()
	return stats.TxStats.GetPageAlloc()
}

// Once DeleteRange has dropped the stubs the entries are gone, whatever
// happens to their files: an unremovable file is not an error (Raft
// would take it to mean the entries are still there) and is removed on a
// later call.
func TestBulkLogsDeleteRangeOutlivesAFileThatWillNotGo(t *testing.T) {
	dir := t.TempDir()
	b, store := openTestBulk(t, dir)
	defer store.Close()
	if err := b.StoreLogs([]*raft.Log{entry(1, 5000), entry(2, 10)}); err != nil {
		t.Fatal(err)
	}
	// A non-empty directory in the file's place: os.Remove fails on it,
	// even for root.
	path := filepath.Join(dir, "bulk", bulkName(1))
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(path, "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := b.DeleteRange(1, 1); err != nil {
		t.Fatalf("DeleteRange after its stubs were deleted: %v", err)
	}
	var l raft.Log
	if err := b.GetLog(1, &l); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("entry 1 after DeleteRange: %v", err)
	}
	if err := os.Remove(filepath.Join(path, "x")); err != nil {
		t.Fatal(err)
	}
	if err := b.DeleteRange(2, 2); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the file left behind was not removed by the next DeleteRange: %v", err)
	}
}

// A stub whose file is gone is an error, never an empty entry.
func TestBulkLogsStubWithoutItsFileIsAnError(t *testing.T) {
	dir := t.TempDir()
	b, store := openTestBulk(t, dir)
	defer store.Close()
	if err := b.StoreLog(entry(1, 5000)); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "bulk", bulkName(1))); err != nil {
		t.Fatal(err)
	}
	var l raft.Log
	if err := b.GetLog(1, &l); err == nil || errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("GetLog of a stub without its file: %v", err)
	}
}
