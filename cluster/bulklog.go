package cluster

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/hashicorp/raft"
)

// bulkLogs keeps the data of large Raft entries (declarative configs,
// restores, consumer batches: tens of megabytes) in files beside raft.db
// and stores a short stub in their place. bbolt keeps a value inside its
// leaf and never splits a leaf of four keys or fewer, so after one 30 MB
// entry the next four appends each rewrote that leaf: 40–70 ms per small
// write instead of 0.2 ms, which was the slow route change right after a
// bulk load. The history log has the same fix (log/DESIGN.md).
//
// Stubs never leave the node: GetLog resolves them, so Raft, the cache in
// front and the followers only ever see the full entry.
type bulkLogs struct {
	store raft.LogStore
	dir   string
	// threshold: entries with more data than this go to a file.
	threshold int

	mu    sync.Mutex
	files map[uint64]struct{} // indices with a file in dir
	// orphans are files whose stubs are deleted but which could not be
	// removed; DeleteRange tries again, and the next open sweeps them.
	orphans map[uint64]struct{}
}

var _ raft.LogStore = (*bulkLogs)(nil)

// stubMagic starts every stub. A command is a log.Type byte and then a
// msgpack map, and no msgpack map starts with 'g', the second byte here;
// a stub is also exactly stubLen bytes long.
const stubMagic = "\xc1gh-bulk"

const stubLen = len(stubMagic) + 8 + 4 // magic, data length, CRC-32C

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// openBulkLogs wraps store, keeping entries over threshold bytes in dir.
// Files a crash left behind (written before their stub was committed, or
// whose stub was deleted just before) are removed.
func openBulkLogs(store raft.LogStore, dir string, threshold int) (*bulkLogs, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create bulk log dir: %w", err)
	}
	b := &bulkLogs{store: store, dir: dir, threshold: threshold, files: map[uint64]struct{}{},
		orphans: map[uint64]struct{}{}}
	names, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list bulk log dir: %w", err)
	}
	for _, de := range names {
		name := de.Name()
		index, ok := parseBulkName(name)
		if ok {
			stub, err := b.stubAt(index)
			if err != nil {
				// Not knowing is no reason to delete a committed
				// entry's data.
				return nil, fmt.Errorf("check bulk log file %s: %w", name, err)
			}
			if stub {
				b.files[index] = struct{}{}
				continue
			}
		}
		if err := os.Remove(filepath.Join(dir, name)); err != nil {
			return nil, fmt.Errorf("remove stray bulk log file: %w", err)
		}
		slog.Info("removed stray bulk log file", "file", name)
	}
	return b, nil
}

// stubAt reports whether the store holds a stub at index; an entry that
// is not there is no stub, any other failure is an error.
func (b *bulkLogs) stubAt(index uint64) (bool, error) {
	var l raft.Log
	if err := b.store.GetLog(index, &l); err != nil {
		if errors.Is(err, raft.ErrLogNotFound) {
			return false, nil
		}
		return false, err
	}
	return l.Type == raft.LogCommand && isStub(l.Data), nil
}

func bulkName(index uint64) string { return fmt.Sprintf("%020d.entry", index) }

func parseBulkName(name string) (uint64, bool) {
	digits, ok := strings.CutSuffix(name, ".entry")
	if !ok || len(digits) != 20 {
		return 0, false
	}
	index, err := strconv.ParseUint(digits, 10, 64)
	return index, err == nil
}

func isStub(data []byte) bool {
	return len(data) == stubLen && bytes.HasPrefix(data, []byte(stubMagic))
}

func makeStub(data []byte) []byte {
	stub := make([]byte, 0, stubLen)
	stub = append(stub, stubMagic...)
	stub = binary.BigEndian.AppendUint64(stub, uint64(len(data)))
	return binary.BigEndian.AppendUint32(stub, crc32.Checksum(data, castagnoli))
}

// IsMonotonic passes the store's answer on.
func (b *bulkLogs) IsMonotonic() bool {
	m, ok := b.store.(raft.MonotonicLogStore)
	return ok && m.IsMonotonic()
}

func (b *bulkLogs) FirstIndex() (uint64, error) { return b.store.FirstIndex() }

func (b *bulkLogs) LastIndex() (uint64, error) { return b.store.LastIndex() }

func (b *bulkLogs) GetLog(index uint64, l *raft.Log) error {
	if err := b.store.GetLog(index, l); err != nil {
		return err
	}
	if l.Type != raft.LogCommand || !isStub(l.Data) {
		return nil
	}
	size := binary.BigEndian.Uint64(l.Data[len(stubMagic):])
	sum := binary.BigEndian.Uint32(l.Data[len(stubMagic)+8:])
	data, err := os.ReadFile(filepath.Join(b.dir, bulkName(index)))
	if errors.Is(err, os.ErrNotExist) {
		// Compaction may have removed stub and file between the two
		// reads: Raft must see a missing entry as missing (it then
		// sends a snapshot), not as a failure.
		if stub, serr := b.stubAt(index); serr == nil && !stub {
			return raft.ErrLogNotFound
		}
	}
	if err != nil {
		return fmt.Errorf("read raft entry %d: %w", index, err)
	}
	if uint64(len(data)) != size || crc32.Checksum(data, castagnoli) != sum {
		return fmt.Errorf("raft entry %d: bulk file does not match its stub (%d bytes, want %d)", index, len(data), size)
	}
	l.Data = data
	return nil
}

func (b *bulkLogs) StoreLog(l *raft.Log) error { return b.StoreLogs([]*raft.Log{l}) }

// StoreLogs writes each large entry's file (synced) before the batch of
// stubs is committed, so a committed stub always has its file. The
// caller's entries are not changed: Raft and the cache keep them.
func (b *bulkLogs) StoreLogs(logs []*raft.Log) error {
	out := logs
	var wrote []uint64
	for i, l := range logs {
		if l.Type != raft.LogCommand || len(l.Data) <= b.threshold {
			continue
		}
		if err := b.writeFile(l.Index, l.Data); err != nil {
			return err
		}
		// Tracked at once, so that a failure later in the batch leaves
		// no file DeleteRange does not know of.
		b.mu.Lock()
		b.files[l.Index] = struct{}{}
		delete(b.orphans, l.Index)
		b.mu.Unlock()
		wrote = append(wrote, l.Index)
		if len(wrote) == 1 {
			out = append([]*raft.Log(nil), logs...)
		}
		stub := *l
		stub.Data = makeStub(l.Data)
		out[i] = &stub
	}
	if len(wrote) > 0 {
		if err := syncDir(b.dir); err != nil {
			return err
		}
	}
	return b.store.StoreLogs(out)
}

func (b *bulkLogs) writeFile(index uint64, data []byte) error {
	final := filepath.Join(b.dir, bulkName(index))
	tmp := final + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("write raft entry %d: %w", index, err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, final)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write raft entry %d: %w", index, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync bulk log dir: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync bulk log dir: %w", err)
	}
	return nil
}

// DeleteRange removes the stubs first and the files after, so a crash in
// between leaves files without stubs (removed on the next open), never a
// stub without its file. Once the stubs are gone the entries are, so a
// file that cannot be removed is logged and left for later, not reported:
// Raft would take the error to mean the entries are still there.
func (b *bulkLogs) DeleteRange(min, max uint64) error {
	if err := b.store.DeleteRange(min, max); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for index := range b.files {
		if index >= min && index <= max {
			delete(b.files, index)
			b.orphans[index] = struct{}{}
		}
	}
	for index := range b.orphans {
		err := os.Remove(filepath.Join(b.dir, bulkName(index)))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			slog.Warn("remove raft bulk file (retried later)", "index", index, "err", err)
			continue
		}
		delete(b.orphans, index)
	}
	return nil
}
