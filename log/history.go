package log

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sort"
	"strings"

	"github.com/vmihailenco/msgpack/v5"
	bolt "go.etcd.io/bbolt"
)

// Record is one entry of the permanent history: the event and what became
// of it. Rejected events (a conflicting write that lost a race) are history
// too.
type Record struct {
	Event   Event  `msgpack:"ev"`
	Type    Type   `msgpack:"ty"`
	Outcome string `msgpack:"out"` // "applied", "rejected" or "denied"
	Error   string `msgpack:"err,omitempty"`
	// Changes says what an applied event did, entity by entity, with
	// secrets already replaced by their HMAC (see Change).
	Changes []Change `msgpack:"ch,omitempty"`
	// PrevHash and Hash chain the history (see Row): set by Append from
	// the record before this one, identically on every node.
	PrevHash string `msgpack:"ph,omitempty"`
	Hash     string `msgpack:"h,omitempty"`
}

// peek decodes only what the file's own bookkeeping needs from a stored
// record: index, time and chain hash (a restore's record is megabytes).
func peek(v []byte) (index uint64, time int64, hash string, err error) {
	var r struct {
		Event struct {
			Index uint64 `msgpack:"i"`
			Time  int64  `msgpack:"t"`
		} `msgpack:"ev"`
		Hash string `msgpack:"h"`
	}
	if err := msgpack.Unmarshal(v, &r); err != nil {
		return 0, 0, "", fmt.Errorf("decode history record: %w", err)
	}
	return r.Event.Index, r.Event.Time, r.Hash, nil
}

// peekHead is peek for the index and time alone, from a record's first
// bytes: a record is written with its event first, and an event with its
// index and time first, so nothing after them is parsed. (peek skips
// through the change list to the chain hash at the end; loading a history
// of bulk writes, that was 3 s of a restart at 1,000,000 consumers.) Any
// other layout falls back to peek.
func peekHead(v []byte) (index uint64, time int64, err error) {
	dec := msgpack.NewDecoder(bytes.NewReader(v))
	if n, err := dec.DecodeMapLen(); err == nil && n > 0 {
		if key, err := dec.DecodeString(); err == nil && key == "ev" {
			if n, err := dec.DecodeMapLen(); err == nil && n > 1 {
				if key, err := dec.DecodeString(); err == nil && key == "i" {
					if i, err := dec.DecodeUint64(); err == nil {
						if key, err := dec.DecodeString(); err == nil && key == "t" {
							if t, err := dec.DecodeInt64(); err == nil {
								return i, t, nil
							}
						}
					}
				}
			}
		}
	}
	index, time, _, err = peek(v)
	return index, time, err
}

func peekIndex(v []byte) (uint64, error) {
	i, _, err := peekHead(v)
	return i, err
}

var (
	bucket         = []byte("events")
	versionsBucket = []byte("versions")
	restoredBucket = []byte("restored")
	metaBucket     = []byte("meta")
	bulkBucket     = []byte("bulk")
	versionsFromK  = []byte("versions_from")
)

// A record larger than bulkAbove is stored in a bucket of its own under
// bulk (key: its index), with a one-byte stub in events. bbolt keeps a
// value in its leaf and never splits a leaf of four keys or fewer, so the
// next few appends each rewrote, and allocated, the whole leaf with the
// large record in it: after a declarative config of 100,000 routes (a
// 66 MB record) the next four route changes took 0.1 to 0.6 s each, and
// a 100,000-consumer batch rewrote the one before it. A bucket of its own
// is its own page tree, which later appends never touch.
const bulkAbove = 64 << 10

// stub marks a record stored under bulk: 0xc1 is never used by msgpack,
// and a stored record is a msgpack map.
const stub = 0xc1

var valueKey, hashKey = []byte("v"), []byte("h")

// putRecord stores v at k. A bulk record's chain hash, when given, is
// kept beside it, so the next append reads the hash it chains to without
// parsing tens of megabytes to reach the record's last field (230 ms on
// the first route change after a 100,000-route config).
func putRecord(tx *bolt.Tx, b *bolt.Bucket, k, v []byte, hash string) error {
	bulk := tx.Bucket(bulkBucket)
	if bulk.Bucket(k) != nil {
		// A record rewritten at its index leaves no bucket behind.
		if err := bulk.DeleteBucket(k); err != nil {
			return err
		}
	}
	if len(v) <= bulkAbove {
		return b.Put(k, v)
	}
	nb, err := bulk.CreateBucket(k)
	if err != nil {
		return err
	}
	if err := nb.Put(valueKey, v); err != nil {
		return err
	}
	if hash != "" {
		if err := nb.Put(hashKey, []byte(hash)); err != nil {
			return err
		}
	}
	return b.Put(k, []byte{stub})
}

// recordValue resolves a stub to the record it stands for.
func recordValue(tx *bolt.Tx, k, v []byte) []byte {
	if len(v) != 1 || v[0] != stub {
		return v
	}
	if nb := tx.Bucket(bulkBucket).Bucket(k); nb != nil {
		return nb.Get(valueKey)
	}
	return nil
}

// recordCursor walks the events bucket with stubs resolved.
type recordCursor struct {
	tx *bolt.Tx
	c  *bolt.Cursor
}

func records(tx *bolt.Tx) recordCursor { return recordCursor{tx, tx.Bucket(bucket).Cursor()} }

func (rc recordCursor) out(k, v []byte) ([]byte, []byte) {
	if k == nil {
		return nil, nil
	}
	return k, recordValue(rc.tx, k, v)
}
func (rc recordCursor) First() ([]byte, []byte)        { return rc.out(rc.c.First()) }
func (rc recordCursor) Last() ([]byte, []byte)         { return rc.out(rc.c.Last()) }
func (rc recordCursor) Next() ([]byte, []byte)         { return rc.out(rc.c.Next()) }
func (rc recordCursor) Prev() ([]byte, []byte)         { return rc.out(rc.c.Prev()) }
func (rc recordCursor) Seek(k []byte) ([]byte, []byte) { return rc.out(rc.c.Seek(k)) }

// Version is an entity as one event left it, for time travel: Value is
// the caller's encoding of the entity, nil when the event deleted it.
// Versions are keyed kind, id, index, so one entity's versions are
// neighbours and a past state is one scan (see VersionsAt).
type Version struct {
	Kind, ID string
	Index    uint64
	Value    []byte
	// ByIndex stores the version keyed index first, in a run of its own
	// in the restored bucket (named for the restores that used it first).
	// It is for an event that makes tens of thousands of versions at one
	// index, a point-in-time restore or a bulk load: scattered through the
	// by-entity keys they rewrote most of the file's pages on every such
	// event (two seconds for a restore of 75,000; a 100,000-consumer
	// batch rewrote a versions bucket holding every consumer so far).
	ByIndex bool
}

// rkey is the key of a version in a run (ByIndex): index, then kind \0 id \0 as
// in vkey, so that its tail is the entity's group in the versions bucket.
func rkey(kind, id string, i uint64) []byte {
	b := make([]byte, 0, len(kind)+len(id)+10)
	b = binary.BigEndian.AppendUint64(b, i)
	b = append(b, kind...)
	b = append(b, 0)
	b = append(b, id...)
	return append(b, 0)
}

func vkey(kind, id string, i uint64) []byte {
	b := make([]byte, 0, len(kind)+len(id)+10)
	b = append(b, kind...)
	b = append(b, 0)
	b = append(b, id...)
	b = append(b, 0)
	return binary.BigEndian.AppendUint64(b, i)
}

// History is the node's permanent event history in a bbolt file separate
// from the Raft log, so it survives Raft log compaction. Writes skip fsync:
// the Raft log is the durable copy until a snapshot, and Sync is called
// when a snapshot is persisted, after which Raft may drop its log.
type History struct {
	db *bolt.DB
}

// OpenHistory opens (creating if needed) the history file at path.
func OpenHistory(path string) (*History, error) {
	// The mapping is reserved large up front (address space, not
	// memory): each time bbolt outgrows it, the write transaction copies
	// every page it holds and then waits for every read transaction to
	// end, and a snapshot or backup streams the whole history in one
	// read transaction. At 1,000,000 consumers the file passes 3 GB, and
	// with a 1 GB mapping each remap stalled the fold behind a snapshot.
	// The map freelist finds room for a large record (a restore's change
	// list) without scanning; not syncing it is etcd's setting too (it is
	// rebuilt on open). Growing the file skips its fsync like every other
	// write (a restore's commit grew it by hundreds of megabytes and
	// waited seconds for each sync); Sync's fdatasync covers the size.
	db, err := bolt.Open(path, 0o600, &bolt.Options{NoSync: true, NoGrowSync: true, InitialMmapSize: 1 << 34,
		FreelistType: bolt.FreelistMapType, NoFreelistSync: true})
	if err != nil {
		return nil, fmt.Errorf("open history %s: %w", path, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucket, versionsBucket, restoredBucket, metaBucket, bulkBucket} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("init history: %w", err)
	}
	return &History{db: db}, nil
}

// Close closes the file after syncing it.
func (h *History) Close() error {
	// The freelist is not written by commits (OpenHistory), so opening
	// the file rebuilds it by reading every page: 3.8 s of a restart at
	// 1,000,000 consumers. A last commit that does write it lets the
	// next open read one page instead; the next commit drops it again.
	// After a crash there is none, and the open scans, as before.
	if err := h.db.Update(func(*bolt.Tx) error {
		h.db.NoFreelistSync = false // under the writer's lock, which commits read it under
		return nil
	}); err != nil {
		slog.Warn("history freelist not saved; the next open rebuilds it", "err", err)
	}
	if err := h.db.Sync(); err != nil {
		h.db.Close()
		return fmt.Errorf("sync history: %w", err)
	}
	return h.db.Close()
}

// Sync flushes the history to disk.
func (h *History) Sync() error { return h.db.Sync() }

func key(i uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], i)
	return b[:]
}

// Append stores records in one transaction. Re-appending an index (a log
// replayed after a restart) overwrites it with identical content.
func (h *History) Append(recs ...*Record) error { return h.Commit(recs, nil) }

// Commit stores records and the entity versions they made in one
// transaction, so the versions never run ahead of or behind the history.
func (h *History) Commit(recs []*Record, versions []Version) error {
	if len(recs) == 0 && len(versions) == 0 {
		return nil
	}
	return h.db.Update(func(tx *bolt.Tx) error {
		if err := putVersions(tx, versions); err != nil {
			return err
		}
		b := tx.Bucket(bucket)
		for _, r := range recs {
			prev, err := prevHash(tx, r.Event.Index)
			if err != nil {
				return err
			}
			r.PrevHash = prev
			r.Hash = ""
			// One buffer for the row's JSON, which is hashed and dropped,
			// then for the record as stored (bbolt keeps that one until
			// the commit, so each record has its own). A declarative
			// load's record made two of over 100 MB each.
			var buf []byte
			r.Hash, buf = RowOf(r).hashWith(make([]byte, 0, sizeHint(r)))
			v, err := appendRecord(buf[:0], r)
			if err != nil {
				return fmt.Errorf("encode history record %d: %w", r.Event.Index, err)
			}
			if err := putRecord(tx, b, key(r.Event.Index), v, r.Hash); err != nil {
				return fmt.Errorf("store history record %d: %w", r.Event.Index, err)
			}
		}
		return nil
	})
}

// sizeHint is a generous guess at a record's encoded size, JSON or
// msgpack. A declarative load's record is tens of megabytes (its payload
// and a change per entity), and growing a buffer to that by doubling was a
// quarter of the history's commit time in a load's profile: every doubling copies the bytes so
// far, into fresh memory the kernel has to fault in.
func sizeHint(r *Record) int {
	return 1024 + len(r.Event.Payload) + 384*len(r.Changes)
}

// prevHash is the hash of the record just before index i ("" for the
// first). A replayed index finds the same predecessor, so re-appending
// after a restart rebuilds the same chain.
func prevHash(tx *bolt.Tx, i uint64) (string, error) {
	c := tx.Bucket(bucket).Cursor()
	k, v := c.Seek(key(i))
	if k == nil {
		k, v = c.Last()
	} else {
		k, v = c.Prev()
	}
	if k == nil || binary.BigEndian.Uint64(k) >= i {
		return "", nil
	}
	return storedHash(tx, k, v)
}

// storedHash is the chain hash of the record stored at k (v as stored),
// read without touching a large record's pages when its hash is kept
// beside it.
func storedHash(tx *bolt.Tx, k, v []byte) (string, error) {
	if len(v) == 1 && v[0] == stub {
		if nb := tx.Bucket(bulkBucket).Bucket(k); nb != nil {
			if h := nb.Get(hashKey); h != nil {
				return string(h), nil
			}
		}
	}
	return recordHash(recordValue(tx, k, v))
}

// recordHash is an encoded record's chain hash. It is the record's last
// field, so it is read from the last bytes when they are the key "h" and
// a 64-character string; peek, the fallback, skips through every change
// on its way there, tens of megabytes in a large record.
func recordHash(v []byte) (string, error) {
	const n = 2 * sha256.Size // hex
	if t := len(v) - n - 4; t >= 0 && v[t] == 0xa1 && v[t+1] == 'h' && v[t+2] == 0xd9 && v[t+3] == n {
		return string(v[t+4:]), nil
	}
	_, _, h, err := peek(v)
	return h, err
}

// sameRecord reports whether the record stored at k (v as stored) is the
// record rec. Their chain hashes stand for them: a hash covers the event,
// its payload's digest, its changes and the hash before it. Comparing the
// bytes read every page of every large record (a gigabyte after loading
// 1,000,000 consumers, half a restart's history time), and took two
// encodings of one record for two records: msgpack writes a map's keys
// in Go's map order. Records without a hash are compared byte for byte.
func sameRecord(tx *bolt.Tx, k, v, rec []byte) bool {
	if want, err := recordHash(rec); err == nil && want != "" {
		got, err := storedHash(tx, k, v)
		return err == nil && got == want
	}
	return string(recordValue(tx, k, v)) == string(rec)
}

// IndexAt returns the last index whose event time is at or before t
// (unix nanoseconds), 0 if none. Event times never decrease along the
// log (the fold clamps them), so this is a binary search: about forty
// reads whatever the history's length.
func (h *History) IndexAt(t int64) (uint64, error) {
	var found uint64
	err := h.db.View(func(tx *bolt.Tx) error {
		c := records(tx)
		first, _ := c.First()
		last, _ := c.Last()
		if first == nil {
			return nil
		}
		lo, hi := binary.BigEndian.Uint64(first), binary.BigEndian.Uint64(last)
		for lo <= hi {
			mid := lo + (hi-lo)/2
			k, v := c.Seek(key(mid)) // never nil: mid <= last
			_, rt, err := peekHead(v)
			if err != nil {
				return err
			}
			if ki := binary.BigEndian.Uint64(k); rt <= t {
				// Every record up to ki is at or before t; records
				// between mid and ki do not exist.
				found, lo = ki, ki+1
			} else {
				hi = mid - 1
			}
		}
		return nil
	})
	return found, err
}

// Get returns the record at index i, or nil.
func (h *History) Get(i uint64) (*Record, error) {
	var r *Record
	err := h.db.View(func(tx *bolt.Tx) error {
		v := recordValue(tx, key(i), tx.Bucket(bucket).Get(key(i)))
		if v == nil {
			return nil
		}
		r = new(Record)
		return msgpack.Unmarshal(v, r)
	})
	if err != nil {
		return nil, fmt.Errorf("read history record %d: %w", i, err)
	}
	return r, nil
}

// Last returns the highest stored index (0 when empty).
func (h *History) Last() (uint64, error) {
	var last uint64
	err := h.db.View(func(tx *bolt.Tx) error {
		k, _ := tx.Bucket(bucket).Cursor().Last()
		if k != nil {
			last = binary.BigEndian.Uint64(k)
		}
		return nil
	})
	return last, err
}

// Range calls fn for each record with index in [from, to] in order
// (to == 0 means no upper bound); fn returning false stops early.
func (h *History) Range(from, to uint64, fn func(*Record) bool) error {
	return h.db.View(func(tx *bolt.Tx) error {
		c := records(tx)
		for k, v := c.Seek(key(from)); k != nil; k, v = c.Next() {
			if to != 0 && binary.BigEndian.Uint64(k) > to {
				return nil
			}
			var r Record
			if err := msgpack.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("decode history record: %w", err)
			}
			if !fn(&r) {
				return nil
			}
		}
		return nil
	})
}

// RangeEvents is Range for a replay: it decodes only each record's event
// and type, skipping what the audit views need.
func (h *History) RangeEvents(from, to uint64, fn func(*Event) bool) error {
	return h.db.View(func(tx *bolt.Tx) error {
		c := records(tx)
		for k, v := c.Seek(key(from)); k != nil; k, v = c.Next() {
			if to != 0 && binary.BigEndian.Uint64(k) > to {
				return nil
			}
			var r struct {
				Event Event `msgpack:"ev"`
				Type  Type  `msgpack:"ty"`
			}
			if err := msgpack.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("decode history record: %w", err)
			}
			r.Event.Type = r.Type
			if !fn(&r.Event) {
				return nil
			}
		}
		return nil
	})
}

// Dump streams the raw history up to and including index upto, as
// length-prefixed records, for a Raft snapshot or a backup. It returns
// how many records it wrote.
func (h *History) Dump(w io.Writer, upto uint64) (int, error) {
	n := 0
	err := h.db.View(func(tx *bolt.Tx) error {
		c := records(tx)
		var lenb [4]byte
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if binary.BigEndian.Uint64(k) > upto {
				break
			}
			binary.BigEndian.PutUint32(lenb[:], uint32(len(v)))
			if _, err := w.Write(lenb[:]); err != nil {
				return err
			}
			if _, err := w.Write(v); err != nil {
				return err
			}
			n++
		}
		_, err := w.Write([]byte{0, 0, 0, 0})
		return err
	})
	return n, err
}

// DumpSize returns how many bytes Dump(w, upto) writes and how many
// records, reading only the keys' value lengths.
func (h *History) DumpSize(upto uint64) (int64, int, error) {
	size, n := int64(4), 0
	err := h.db.View(func(tx *bolt.Tx) error {
		c := records(tx)
		for k, v := c.First(); k != nil && binary.BigEndian.Uint64(k) <= upto; k, v = c.Next() {
			size += 4 + int64(len(v))
			n++
		}
		return nil
	})
	return size, n, err
}

// Load replaces the history with the records streamed by Dump (a
// snapshot being installed or restored at startup) and returns the last
// index streamed.
//
// A restart loads the node's own last snapshot, whose records the file
// already holds: Load compares instead of rewriting, keeps what matches,
// and drops only what follows the snapshot (the Raft log re-applies it).
// The entity versions survive such a load. Any difference rewrites the
// file from there and discards the versions (VersionsFrom becomes
// NoVersions) for the caller to rebuild.
//
// Records are committed in chunks, so memory stays bounded whatever the
// history's length. A crash part way leaves a prefix of the stream, which
// the next load (Raft restores the same snapshot at startup) finds and
// completes.
func (h *History) Load(r io.Reader) (uint64, error) {
	const chunk = 65536
	var last uint64
	same, matched, done := true, 0, false
	var lenb [4]byte
	// While the records match, each is read into the same buffer: it is
	// only compared, and a restart's snapshot holds about a gigabyte of
	// them at 1,000,000 consumers. Records after the first difference
	// are written, and get their own (bbolt keeps a value until the
	// commit); the buffer is not read into again by then.
	var buf []byte
	for !done {
		err := h.db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucket)
			c := b.Cursor() // stubs unresolved: sameRecord reads what it needs
			ck, cv := c.Seek(key(last + 1))
			for n := 0; n < chunk; n++ {
				if _, err := io.ReadFull(r, lenb[:]); err != nil {
					return fmt.Errorf("read history length: %w", err)
				}
				size := binary.BigEndian.Uint32(lenb[:])
				if size == 0 {
					done = true
					break
				}
				var v []byte
				if same {
					buf = slices.Grow(buf[:0], int(size))[:size]
					v = buf
				} else {
					v = make([]byte, size)
				}
				if _, err := io.ReadFull(r, v); err != nil {
					return fmt.Errorf("read history record: %w", err)
				}
				i, err := peekIndex(v)
				if err != nil {
					return err
				}
				if i <= last {
					return fmt.Errorf("history record %d out of order", i)
				}
				last = i
				if same && ck != nil && binary.BigEndian.Uint64(ck) == last && sameRecord(tx, ck, cv, v) {
					ck, cv = c.Next()
					matched++
					continue
				}
				if same {
					// The first difference: from here on the file is the
					// stream's, and no old version can be trusted.
					same = false
					var err error
					if b, err = truncate(tx, bucket, b, last); err != nil {
						return err
					}
					if err := dropVersions(tx); err != nil {
						return err
					}
				}
				// The hash is not parsed out here: prevHash falls back to
				// the record itself, once, if the next append needs it.
				if err := putRecord(tx, b, key(last), v, ""); err != nil {
					return err
				}
			}
			if !done || !same {
				return nil
			}
			if k, _ := b.Cursor().First(); matched == 0 && k != nil {
				// Nothing in common: none of the old versions applies.
				if err := dropVersions(tx); err != nil {
					return err
				}
			}
			if _, err := truncate(tx, bucket, b, last+1); err != nil {
				return err
			}
			// Versions after the snapshot go with their records.
			vc := tx.Bucket(versionsBucket).Cursor()
			for k, _ := vc.First(); k != nil; {
				if binary.BigEndian.Uint64(k[len(k)-8:]) > last {
					if err := vc.Delete(); err != nil {
						return err
					}
					k, _ = vc.Seek(k)
					continue
				}
				k, _ = vc.Next()
			}
			rc := tx.Bucket(restoredBucket).Cursor()
			for k, _ := rc.Seek(key(last + 1)); k != nil; k, _ = rc.Seek(key(last + 1)) {
				if err := rc.Delete(); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return last, err
		}
	}
	return last, nil
}

func dropVersions(tx *bolt.Tx) error {
	for _, name := range [][]byte{versionsBucket, restoredBucket} {
		if err := tx.DeleteBucket(name); err != nil {
			return err
		}
		if _, err := tx.CreateBucket(name); err != nil {
			return err
		}
	}
	return setVersionsFrom(tx, NoVersions)
}

// truncate deletes the records from index from on, returning the bucket.
func truncate(tx *bolt.Tx, name []byte, b *bolt.Bucket, from uint64) (*bolt.Bucket, error) {
	if string(name) == string(bucket) {
		// The large records' own buckets go with their stubs.
		bulk := tx.Bucket(bulkBucket)
		bc := bulk.Cursor()
		for k, _ := bc.Seek(key(from)); k != nil; k, _ = bc.Seek(key(from)) {
			if err := bulk.DeleteBucket(k); err != nil {
				return nil, err
			}
		}
	}
	if k, _ := b.Cursor().First(); k != nil && binary.BigEndian.Uint64(k) >= from {
		if err := tx.DeleteBucket(name); err != nil {
			return nil, err
		}
		return tx.CreateBucket(name)
	}
	c := b.Cursor()
	for k, _ := c.Seek(key(from)); k != nil; k, _ = c.Seek(key(from)) {
		if err := c.Delete(); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// NoVersions is VersionsFrom when no version is known.
const NoVersions = ^uint64(0)

// VersionsFrom returns the first index from which the versions are
// complete: VersionsAt answers for any point at or after it.
func (h *History) VersionsFrom() (uint64, error) {
	from := NoVersions
	err := h.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(metaBucket).Get(versionsFromK); len(v) == 8 {
			from = binary.BigEndian.Uint64(v)
		} else if k, _ := tx.Bucket(bucket).Cursor().First(); k == nil {
			from = 0 // an empty history: every version will be recorded
		}
		return nil
	})
	return from, err
}

// SetVersionsFrom records that the versions are complete from index i.
func (h *History) SetVersionsFrom(i uint64) error {
	return h.db.Update(func(tx *bolt.Tx) error { return setVersionsFrom(tx, i) })
}

func setVersionsFrom(tx *bolt.Tx, i uint64) error {
	return tx.Bucket(metaBucket).Put(versionsFromK, binary.BigEndian.AppendUint64(nil, i))
}

// PutVersions stores versions (a rebuild after a snapshot install).
func (h *History) PutVersions(versions []Version) error {
	return h.db.Update(func(tx *bolt.Tx) error { return putVersions(tx, versions) })
}

func putVersions(tx *bolt.Tx, versions []Version) error {
	// In key order: bbolt inserts into a sorted page in memory, and
	// scattered keys make each insert move the rest of the page.
	// Equal keys keep their order (the later version wins), by the
	// position as the tie-break: a stable sort of indexes was half of a
	// 200,000-version commit.
	type item struct {
		key []byte
		i   int
	}
	order := make([]item, len(versions))
	for i, v := range versions {
		if v.ByIndex {
			order[i] = item{rkey(v.Kind, v.ID, v.Index), i}
		} else {
			order[i] = item{vkey(v.Kind, v.ID, v.Index), i}
		}
	}
	slices.SortFunc(order, func(a, b item) int {
		if c := bytes.Compare(a.key, b.key); c != 0 {
			return c
		}
		return a.i - b.i
	})
	vb, rb := tx.Bucket(versionsBucket), tx.Bucket(restoredBucket)
	for _, it := range order {
		i := it.i
		val := versions[i].Value
		if val == nil {
			val = []byte{} // bbolt stores nil as empty too; empty means deleted
		}
		b := vb
		if versions[i].ByIndex {
			b = rb
		}
		if err := b.Put(it.key, val); err != nil {
			return fmt.Errorf("store version of %s %s: %w", versions[i].Kind, versions[i].ID, err)
		}
	}
	return nil
}

// versionCursor walks one sorted run of versions: the versions bucket
// (every entity, each one's versions in index order), or one event's run
// in the restored bucket (a restore's or a bulk batch's; at most one per
// entity). group is the
// entity's kind \0 id \0, nil once the run is over.
type versionCursor struct {
	c        *bolt.Cursor
	restored uint64 // the run's index; 0 for the versions bucket
	group    []byte
	index    uint64
	value    []byte
}

// step moves to k (as a cursor returned it), past any malformed key in
// the versions bucket; a restore's run ends at the next restore's keys.
func (vc *versionCursor) step(k, v []byte) {
	for ; k != nil; k, v = vc.c.Next() {
		if len(k) < 10 {
			if vc.restored != 0 {
				break
			}
			continue
		}
		if vc.restored == 0 {
			vc.group, vc.index, vc.value = k[:len(k)-8], binary.BigEndian.Uint64(k[len(k)-8:]), v
			return
		}
		if binary.BigEndian.Uint64(k[:8]) == vc.restored {
			vc.group, vc.index, vc.value = k[8:], vc.restored, v
			return
		}
		break
	}
	vc.group, vc.value = nil, nil
}

func (vc *versionCursor) next() { vc.step(vc.c.Next()) }

// VersionsAt calls fn for every entity changed after index upto, with
// its value as of upto (nil if it did not exist then), in key order. A
// past state is the present one with these entities put back; the scan
// reads every key but decodes nothing. It merges the versions bucket
// with each run of the restored bucket, all in entity order.
func (h *History) VersionsAt(upto uint64, fn func(kind, id string, value []byte) error) error {
	return h.db.View(func(tx *bolt.Tx) error {
		main := &versionCursor{c: tx.Bucket(versionsBucket).Cursor()}
		main.step(main.c.First())
		cursors := []*versionCursor{main}
		rc := tx.Bucket(restoredBucket).Cursor()
		for k, _ := rc.First(); k != nil; k, _ = rc.Seek(key(binary.BigEndian.Uint64(k[:8]) + 1)) {
			if len(k) < 8 {
				break
			}
			vc := &versionCursor{c: tx.Bucket(restoredBucket).Cursor(), restored: binary.BigEndian.Uint64(k[:8])}
			vc.step(vc.c.Seek(k[:8]))
			cursors = append(cursors, vc)
			if binary.BigEndian.Uint64(k[:8]) == ^uint64(0) {
				break
			}
		}
		type entry struct {
			index uint64
			value []byte
		}
		var group []byte
		var entries []entry
		for {
			// The next entity is the least group any run is at.
			group = group[:0]
			have := false
			for _, vc := range cursors {
				if vc.group != nil && (!have || bytes.Compare(vc.group, group) < 0) {
					group, have = append(group[:0], vc.group...), true
				}
			}
			if !have {
				return nil
			}
			entries = entries[:0]
			mixed := false
			for i, vc := range cursors {
				for vc.group != nil && bytes.Equal(vc.group, group) {
					entries = append(entries, entry{vc.index, vc.value})
					mixed = mixed || i > 0
					vc.next()
				}
			}
			if mixed {
				sort.SliceStable(entries, func(a, b int) bool { return entries[a].index < entries[b].index })
			}
			var at []byte // the value as of upto, nil if none
			changed := false
			for _, e := range entries {
				if e.index <= upto {
					at = nil
					if len(e.value) > 0 {
						at = e.value // valid for the transaction: fn runs inside it
					}
				} else {
					changed = true
				}
			}
			if changed {
				kind, id, _ := strings.Cut(string(group[:len(group)-1]), "\x00")
				if err := fn(kind, id, at); err != nil {
					return err
				}
			}
		}
	})
}

// TimeAt returns the time of the last record at or before index i.
func (h *History) TimeAt(i uint64) (int64, error) {
	var t int64
	err := h.db.View(func(tx *bolt.Tx) error {
		c := records(tx)
		k, v := c.Seek(key(i))
		if k == nil || binary.BigEndian.Uint64(k) > i {
			k, v = c.Prev()
		}
		if k == nil {
			return nil
		}
		var err error
		_, t, err = peekHead(v)
		return err
	})
	return t, err
}
