package log

import (
	"encoding/binary"
	"fmt"
	"io"

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

var bucket = []byte("events")

// History is the node's permanent event history in a bbolt file separate
// from the Raft log, so it survives Raft log compaction. Writes skip fsync:
// the Raft log is the durable copy until a snapshot, and Sync is called
// when a snapshot is persisted, after which Raft may drop its log.
type History struct {
	db *bolt.DB
}

// OpenHistory opens (creating if needed) the history file at path.
func OpenHistory(path string) (*History, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{NoSync: true})
	if err != nil {
		return nil, fmt.Errorf("open history %s: %w", path, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucket)
		return err
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("init history: %w", err)
	}
	return &History{db: db}, nil
}

// Close closes the file after syncing it.
func (h *History) Close() error {
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
func (h *History) Append(recs ...*Record) error {
	if len(recs) == 0 {
		return nil
	}
	return h.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		for _, r := range recs {
			prev, err := prevHash(b, r.Event.Index)
			if err != nil {
				return err
			}
			r.PrevHash = prev
			r.Hash = ""
			r.Hash = RowOf(r).ComputeHash()
			v, err := msgpack.Marshal(r)
			if err != nil {
				return fmt.Errorf("encode history record %d: %w", r.Event.Index, err)
			}
			if err := b.Put(key(r.Event.Index), v); err != nil {
				return fmt.Errorf("store history record %d: %w", r.Event.Index, err)
			}
		}
		return nil
	})
}

// prevHash is the hash of the record just before index i ("" for the
// first). A replayed index finds the same predecessor, so re-appending
// after a restart rebuilds the same chain.
func prevHash(b *bolt.Bucket, i uint64) (string, error) {
	c := b.Cursor()
	k, v := c.Seek(key(i))
	if k == nil {
		k, v = c.Last()
	} else {
		k, v = c.Prev()
	}
	if k == nil || binary.BigEndian.Uint64(k) >= i {
		return "", nil
	}
	var prev Record
	if err := msgpack.Unmarshal(v, &prev); err != nil {
		return "", fmt.Errorf("decode history record: %w", err)
	}
	return prev.Hash, nil
}

// IndexAt returns the last index whose event time is at or before t
// (unix nanoseconds), 0 if none. Event times never decrease along the
// log (the fold clamps them), so this is a binary search: about forty
// reads whatever the history's length.
func (h *History) IndexAt(t int64) (uint64, error) {
	var found uint64
	err := h.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucket).Cursor()
		first, _ := c.First()
		last, _ := c.Last()
		if first == nil {
			return nil
		}
		lo, hi := binary.BigEndian.Uint64(first), binary.BigEndian.Uint64(last)
		for lo <= hi {
			mid := lo + (hi-lo)/2
			k, v := c.Seek(key(mid)) // never nil: mid <= last
			var r struct {
				Event struct {
					Time int64 `msgpack:"t"`
				} `msgpack:"ev"`
			}
			if err := msgpack.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("decode history record: %w", err)
			}
			if ki := binary.BigEndian.Uint64(k); r.Event.Time <= t {
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
		v := tx.Bucket(bucket).Get(key(i))
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
		c := tx.Bucket(bucket).Cursor()
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
		c := tx.Bucket(bucket).Cursor()
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
		c := tx.Bucket(bucket).Cursor()
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

// Load replaces the history with the records streamed by Dump (a
// snapshot being installed or restored at startup).
func (h *History) Load(r io.Reader) error {
	return h.db.Update(func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket(bucket); err != nil {
			return err
		}
		b, err := tx.CreateBucket(bucket)
		if err != nil {
			return err
		}
		var lenb [4]byte
		for {
			if _, err := io.ReadFull(r, lenb[:]); err != nil {
				return fmt.Errorf("read history length: %w", err)
			}
			n := binary.BigEndian.Uint32(lenb[:])
			if n == 0 {
				return nil
			}
			v := make([]byte, n)
			if _, err := io.ReadFull(r, v); err != nil {
				return fmt.Errorf("read history record: %w", err)
			}
			var rec Record
			if err := msgpack.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("decode history record: %w", err)
			}
			if err := b.Put(key(rec.Event.Index), v); err != nil {
				return err
			}
		}
	})
}
