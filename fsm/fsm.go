// Package fsm is Gatehouse's configuration model and the fold of events into
// immutable configuration snapshots. It knows nothing of Raft: the cluster
// package feeds it committed log entries and asks it for snapshots.
package fsm

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/gatehouse-gw/gatehouse/fsm/keytree"
	"github.com/gatehouse-gw/gatehouse/log"
)

// Update is what subscribers see after each applied batch of events.
// Reset means the whole state was replaced (snapshot restore): derived
// structures must be rebuilt from Next.
type Update struct {
	Prev, Next *State
	Changes    []Change
	// Reset says Next replaces Prev wholesale (a snapshot was
	// installed): Changes is empty and subscribers start over.
	Reset bool
	// Rebuilt says Next is Prev's configuration in new memory
	// (compact.go): nothing changed, but whatever holds Prev's entities
	// should let go of them.
	Rebuilt bool
}

// Result is the response of applying one event, handed back to the caller
// that appended it.
type Result struct {
	Index  uint64
	Entity *Entity // the created/updated entity; nil for deletes
	Err    *Error
}

// Machine holds the current state and folds committed events into it.
// Reads take the current state with one atomic load and never block.
type Machine struct {
	fold    Fold
	history *log.History // read through hist(), which waits for its writer
	writer  *historyWriter
	state   atomic.Pointer[State]

	mu     sync.Mutex // serialises apply/restore and subscriber calls
	subs   []func(Update)
	notify chan struct{} // closed and replaced on every new state

	warm     sync.Mutex    // held while WarmTimeTravel replays
	warmMu   sync.Mutex    // guards warmDone
	warmDone chan struct{} // closed when no rebuild of old versions is running
	planMu   sync.Mutex
	plan     plannedRestore // the last restore this node planned

	// fromStart is true until a snapshot is restored: the log is then
	// applied from its first entry and records every version.
	fromStart bool

	collect    collector  // after bulk changes (collect.go)
	compacting sync.Mutex // held by the rebuild running (compact.go)
	plans      batchPlans
}

// New creates a machine over history with the given plugin registry.
func New(history *log.History, plugins PluginRegistry) *Machine {
	m := &Machine{fold: Fold{Plugins: plugins}, history: history, notify: make(chan struct{})}
	m.writer = newHistoryWriter(history, func() func() { return m.collect.hold(false) })
	m.state.Store(Empty())
	m.warmDone = make(chan struct{})
	close(m.warmDone)
	m.fromStart = true
	m.collect.history = history
	m.collect.compact = m.compactAfter
	return m
}

// State returns the current snapshot.
func (m *Machine) State() *State { return m.state.Load() }

// Fold returns the fold, for validating commands before they are appended.
func (m *Machine) Fold() *Fold { return &m.fold }

// History returns the permanent event history, holding every event
// applied before the call.
func (m *Machine) History() *log.History { return m.hist() }

// hist is the history once the commits queued so far are in it: what
// every read of the file goes through (historyq.go).
func (m *Machine) hist() *log.History {
	m.writer.flush()
	return m.history
}

// Close commits the history still queued and stops its writer. Events
// applied afterwards commit their history as they apply.
func (m *Machine) Close() { m.writer.close() }

// Subscribe registers fn to be called, in apply order, after every new
// state is published. fn runs on the apply path: it must be quick.
func (m *Machine) Subscribe(fn func(Update)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.subs = append(m.subs, fn)
}

// WaitIndex blocks until the state reflects at least index or ctx ends.
func (m *Machine) WaitIndex(ctx context.Context, index uint64) error {
	for {
		m.mu.Lock()
		ch := m.notify
		m.mu.Unlock()
		if m.State().Index >= index {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Entry is one committed log entry handed to ApplyBatch.
type Entry struct {
	Index uint64
	Data  []byte
}

// Apply folds one committed entry.
func (m *Machine) Apply(index uint64, data []byte) *Result {
	return m.ApplyBatch([]Entry{{Index: index, Data: data}})[0]
}

// ApplyBatch folds several committed entries, publishing one new state and
// writing their history in one transaction.
func (m *Machine) ApplyBatch(entries []Entry) []*Result {
	m.mu.Lock()
	defer m.mu.Unlock()
	t0 := time.Now()
	prev := m.state.Load()
	s := prev
	results := make([]*Result, len(entries))
	hist := make([]historyEntry, 0, len(entries))
	var changes []Change
	for i, en := range entries {
		res, rec, next, ch := m.applyOne(s, en, true)
		results[i] = res
		if rec != nil {
			hist = append(hist, historyEntry{rec: rec, next: next, changes: ch, afters: fieldsAfter(ch), salt: s.salt})
		}
		for _, c := range ch {
			if c.After != nil {
				c.After.seal()
			}
		}
		s = next
		changes = append(changes, ch...)
	}
	// Applying the log from its start, with no snapshot: every version
	// is about to be recorded.
	fromStart := m.fromStart && prev.Index == 0
	m.fromStart = false
	tFold := time.Since(t0)
	m.writer.submit(historyJob{entries: hist, fromStart: fromStart})
	tHistory := time.Since(t0) - tFold // only when the writer is far behind
	m.publish(Update{Prev: prev, Next: s, Changes: changes})
	if len(changes) >= bulkChanges {
		m.collect.bulkFold(len(changes))
	}
	if d := time.Since(t0); d > time.Second {
		// Large batches (a restore, a declarative config) are worth
		// seeing in the log, split by where the time went.
		slog.Info("slow apply", "entries", len(entries), "changes", len(changes), "fold", tFold.Round(time.Millisecond),
			"history_queue", tHistory.Round(time.Millisecond), "publish", (d - tFold - tHistory).Round(time.Millisecond))
	}
	return results
}

// applyOne folds one entry into s and returns its result, its history
// record (without the change list, which describeChanges makes), the
// state after it and its changes. audit is false for a time-travel
// replay, which throws records away, and only quiets its log.
func (m *Machine) applyOne(s *State, en Entry, audit bool) (*Result, *log.Record, *State, []Change) {
	res := &Result{Index: en.Index}
	ev, err := log.Decode(en.Data)
	if errors.Is(err, log.ErrUnknownType) {
		return res, nil, withIndex(s, en.Index), nil
	}
	if err != nil {
		// A malformed entry can only come from a bug or corruption; it
		// must not take down every node, and it must not change state.
		slog.Error("skipping undecodable log entry", "index", en.Index, "err", err)
		res.Err = &Error{Status: 500, Message: "An unexpected error occurred"}
		return res, nil, withIndex(s, en.Index), nil
	}
	ev.Index = en.Index
	return m.applyDecoded(s, ev, audit)
}

func (m *Machine) applyDecoded(s *State, ev *log.Event, audit bool) (*Result, *log.Record, *State, []Change) {
	if ev.Time < s.lastTime {
		// The leader stamps events before they are appended, so two
		// concurrent requests can commit out of time order. Clamping
		// here (deterministically, on every node) keeps the history
		// ordered by time too.
		ev.Time = s.lastTime
	}
	res, rec, next, changes := m.applyEvent(s, ev, audit)
	if next.lastTime != ev.Time {
		if next == s {
			next = withIndex(s, ev.Index)
		}
		next.lastTime = ev.Time
	}
	return res, rec, next, changes
}

func (m *Machine) applyEvent(s *State, ev *log.Event, audit bool) (*Result, *log.Record, *State, []Change) {
	res := &Result{Index: ev.Index}
	en := Entry{Index: ev.Index}
	rec := &log.Record{Event: *ev, Type: ev.Type, Outcome: "applied"}
	if ev.Type == log.TypeDenied {
		rec.Outcome = "denied"
		// The payload names the request's path, which may hold a
		// credential (GET /key-auths/{key}); the record shows only what
		// was missing.
		rec.Error = string(ev.Payload)
		if i := strings.LastIndex(rec.Error, ": "); i >= 0 {
			rec.Error = rec.Error[i+2:]
		}
		return res, rec, withIndex(s, en.Index), nil
	}
	if ev.Type == log.TypeWebhook || ev.Type == log.TypeCursor {
		var wh Webhook
		if err := msgpack.Unmarshal(ev.Payload, &wh); err != nil {
			res.Err = &Error{Status: 400, Message: "bad webhook event"}
			rec.Outcome, rec.Error = "rejected", err.Error()
			return res, rec, withIndex(s, en.Index), nil
		}
		c := *s
		c.Index = en.Index
		if ev.Type == log.TypeWebhook {
			c.webhook.URL, c.webhook.BatchSize = wh.URL, wh.BatchSize
		} else if wh.Cursor > c.webhook.Cursor {
			c.webhook.Cursor = wh.Cursor
		}
		return res, rec, &c, nil
	}
	if ev.Type == log.TypeSalt {
		c := withIndex(s, en.Index)
		if len(c.salt) == 0 && len(ev.Payload) >= 16 {
			c.salt = append([]byte(nil), ev.Payload...)
		}
		// The key stays in the record (payloads are never shown) so that
		// past states rebuilt from the history have it too.
		return res, rec, c, nil
	}
	if ev.Type == log.TypeMember {
		var mb Member
		if err := msgpack.Unmarshal(ev.Payload, &mb); err != nil {
			res.Err = &Error{Status: 400, Message: "bad member event"}
			rec.Outcome, rec.Error = "rejected", err.Error()
			return res, rec, withIndex(s, en.Index), nil
		}
		return res, rec, withMember(s, en.Index, mb), nil
	}
	if ev.Type == log.TypeRestore {
		t0 := time.Now()
		next, changes, err := m.applyRestore(s, en.Index, ev.Payload)
		if audit {
			slog.Info("restore folded", "index", en.Index, "entities", len(changes), "took", time.Since(t0).Round(time.Millisecond))
		}
		if err != nil {
			// Only a corrupt entry gets here: the leader builds the
			// payload from a consistent past state.
			res.Err = &Error{Status: 400, Message: err.Error()}
			rec.Outcome, rec.Error = "rejected", err.Error()
			return res, rec, withIndex(s, en.Index), nil
		}
		return res, rec, next, changes
	}
	var next *State
	var changes []Change
	if ev.Type == log.TypeBatch {
		if p := m.takePlan(s, ev); p != nil {
			next, changes = withIndex(p.next, en.Index), p.changes
			res.Entity = lastWritten(changes, p.lastKind)
			return res, rec, next, changes
		}
	}
	cmds, err := decodeCommands(ev)
	var ferr *Error
	if err != nil {
		ferr = &Error{Status: 400, Message: err.Error()}
	} else if ev.Type == log.TypeBatch {
		next, changes, ferr = m.fold.ApplyAll(s, en.Index, ev.Time, cmds)
	} else {
		next, changes, ferr = m.fold.Apply(s, en.Index, ev.Time, cmds[0])
	}
	if ferr != nil {
		res.Err = ferr
		rec.Outcome = "rejected"
		rec.Error = redactMessage(ferr.Message, cmds, s.salt)
		return res, rec, withIndex(s, en.Index), nil
	}
	if len(cmds) > 0 {
		res.Entity = lastWritten(changes, cmds[len(cmds)-1].Kind)
	}
	return res, rec, next, changes
}

// lastWritten is the entity the last command, of kind, wrote: a command
// may also write others (a certificate's SNIs, an expired credential
// freed).
func lastWritten(changes []Change, kind string) *Entity {
	for i := len(changes) - 1; i >= 0; i-- {
		if c := changes[i]; c.After != nil && c.Kind == kind {
			return c.After
		}
	}
	return nil
}

// redactMessage replaces, in an error recorded in the history, every
// secret the commands carried (a unique-violation message names the
// conflicting key-auth key) by its HMAC.
func redactMessage(msg string, cmds []*Command, salt []byte) string {
	for _, c := range cmds {
		sc := Schemas[c.Kind]
		if sc == nil {
			continue
		}
		for _, f := range sc.Fields {
			if !f.Secret {
				continue
			}
			if v, ok := c.Body[f.Name].(string); ok && v != "" {
				msg = strings.ReplaceAll(msg, v, HMAC(salt, v))
			}
			if c.Key != "" && !IsUUID(c.Key) && EndpointKey(c.Kind) == f.Name {
				msg = strings.ReplaceAll(msg, c.Key, HMAC(salt, c.Key))
			}
		}
	}
	return msg
}

// withMember returns s with a member's addresses set or removed.
func withMember(s *State, index uint64, mb Member) *State {
	c := *s
	c.Index = index
	c.members = make(map[string]Member, len(s.members)+1)
	for id, m := range s.members {
		c.members[id] = m
	}
	if mb.Removed {
		delete(c.members, mb.ID)
	} else {
		c.members[mb.ID] = mb
	}
	return &c
}

// EncodeWebhook builds the payload of a webhook or cursor event.
func EncodeWebhook(w Webhook) ([]byte, error) { return msgpack.Marshal(w) }

// EncodeMember builds the payload of a member event.
func EncodeMember(m Member) ([]byte, error) { return msgpack.Marshal(m) }

// withIndex returns s advanced to index without other change; a rejected
// event still moves the applied index forward.
func withIndex(s *State, index uint64) *State {
	c := *s
	c.Index = index
	return &c
}

func decodeCommands(ev *log.Event) ([]*Command, error) {
	if cmds, ok := readCommands(ev.Payload, ev.Type == log.TypeBatch); ok {
		return cmds, nil
	}
	return decodeCommandsSlow(ev)
}

// fixBody restores JSON shapes (msgpack decodes small integers as ints).
func fixBody(c *Command) {
	if c.Body == nil {
		return
	}
	log.JSONShape(c.Body)
}

// EncodeCommand builds the payload of an entity event.
func EncodeCommand(c *Command) ([]byte, error) { return appendCommand(nil, c) }

// EncodeBatch builds the payload of a batch event.
func EncodeBatch(cmds []*Command) ([]byte, error) {
	return appendCommands(make([]byte, 0, 64+192*len(cmds)), cmds)
}

func (m *Machine) publish(u Update) {
	m.state.Store(u.Next)
	for _, fn := range m.subs {
		fn(u)
	}
	close(m.notify)
	m.notify = make(chan struct{})
}

// snapshot stream: a header, the entities in dependency order, then the
// history. Entities carry their canonical data only; views are rebuilt on
// restore.
type snapHeader struct {
	Version int      `msgpack:"v"`
	Index   uint64   `msgpack:"i"`
	Members []Member `msgpack:"m"`
	Webhook Webhook  `msgpack:"w"`
	// LastTime and Salt were added within version 2; older streams
	// decode them as zero.
	LastTime int64  `msgpack:"lt,omitempty"`
	Salt     []byte `msgpack:"salt,omitempty"`
	// Canonical says every entity's data is its canonical encoding (see
	// canonical), so a restore takes the bytes as the entity's encoding
	// and hashes them instead of encoding the decoded data again. Streams
	// from before it was added are re-encoded.
	Canonical bool `msgpack:"canon,omitempty"`
}

type snapEntity struct {
	Kind string         `msgpack:"k"`
	Data map[string]any `msgpack:"d"`
}

// isMsgpackMap reports whether c is the first byte of a msgpack map.
func isMsgpackMap(c byte) bool { return c&0xf0 == 0x80 || c == 0xde || c == 0xdf }

// snapEntityRaw is snapEntity with the data already encoded: how
// versions 1 and 2 write an entity, its data inline.
type snapEntityRaw struct {
	Kind string             `msgpack:"k"`
	Data msgpack.RawMessage `msgpack:"d"`
}

// snapEntityBin is how version 3 writes an entity: its data (canonical
// msgpack) as a bin, so a reader takes the bytes by their length. Read
// inline, the decoder parsed every entity's data once to find its end
// before the entity was decoded: a third of a restart at 1,000,000
// consumers, on the one goroutine that reads the stream.
type snapEntityBin struct {
	Kind string `msgpack:"k"`
	Data []byte `msgpack:"d"`
}

// encodeSnapEntityBin writes what enc.Encode(&snapEntityBin{kind, data})
// writes, without reflection: a snapshot is 2,000,000 of them at
// 1,000,000 consumers, and encoding each through the struct's reflected
// fields was 1.8 s of a snapshot's CPU.
func encodeSnapEntityBin(enc *msgpack.Encoder, kind string, data []byte) error {
	if err := enc.EncodeMapLen(2); err != nil {
		return err
	}
	if err := enc.EncodeString("k"); err != nil {
		return err
	}
	if err := enc.EncodeString(kind); err != nil {
		return err
	}
	if err := enc.EncodeString("d"); err != nil {
		return err
	}
	return enc.EncodeBytes(data)
}

// snapReader reads a snapshot's entities, one after the other.
type snapReader struct {
	dec     *msgpack.Decoder
	version int
	// slab holds the data of the entities read lately: a restored
	// entity keeps its bytes as its encoding, and 2,000,000 of them in
	// one allocation each were as many objects for the collector to
	// mark, on the one goroutine that reads the stream. A slab lives
	// while any entity in it does; that is what a restored entity that
	// is never changed again (most of them) costs anyway.
	slab []byte
}

const snapSlab = 64 << 10

func newSnapReader(dec *msgpack.Decoder, version int) *snapReader {
	return &snapReader{dec: dec, version: version}
}

// next reads one entity; an empty kind ends the entities.
func (sr *snapReader) next() (snapEntityRaw, error) {
	if sr.version < 3 {
		var se snapEntityRaw
		if err := sr.dec.Decode(&se); err != nil {
			return se, err
		}
		// The bytes outlive the read as the entity's encoding; they
		// are not left pointing into the decoder's buffer.
		se.Kind = internKind(se.Kind)
		se.Data = append(msgpack.RawMessage(nil), se.Data...)
		return se, nil
	}
	// The two fields without reflection, and the kind as the package's
	// own string (every restored entity shares it).
	var se snapEntityRaw
	n, err := sr.dec.DecodeMapLen()
	if err != nil {
		return se, err
	}
	for range n {
		key, err := sr.dec.DecodeString()
		if err != nil {
			return se, err
		}
		switch key {
		case "k":
			kind, err := sr.dec.DecodeString()
			if err != nil {
				return se, err
			}
			se.Kind = internKind(kind)
		case "d":
			if se.Data, err = sr.bytes(); err != nil {
				return se, err
			}
		default:
			if err := sr.dec.Skip(); err != nil {
				return se, err
			}
		}
	}
	return se, nil
}

// bytes reads a bin (or str) into the slab; a large one gets its own
// allocation, grown as it is read so that a corrupt length cannot ask
// for gigabytes up front.
func (sr *snapReader) bytes() ([]byte, error) {
	n, err := sr.dec.DecodeBytesLen()
	if err != nil || n < 0 {
		return nil, err
	}
	if n > snapSlab/8 {
		var b []byte
		for len(b) < n {
			step := min(n-len(b), 1<<20)
			b = slices.Grow(b, step)
			if err := sr.dec.ReadFull(b[len(b) : len(b)+step]); err != nil {
				return nil, err
			}
			b = b[:len(b)+step]
		}
		return b, nil
	}
	if cap(sr.slab)-len(sr.slab) < n {
		sr.slab = make([]byte, 0, snapSlab)
	}
	at := len(sr.slab)
	sr.slab = sr.slab[:at+n]
	b := sr.slab[at : at+n : at+n]
	if err := sr.dec.ReadFull(b); err != nil {
		return nil, err
	}
	return b, nil
}

// Persist writes the given state and the history up to its index to w,
// followed by the SHA-256 of everything before it (so a file can be
// checked before anything is restored from it). It reads only immutable
// data, so it may run concurrently with applies.
func (m *Machine) Persist(s *State, w io.Writer) error {
	// A snapshot keeps s alive (the whole state before a rebuild) and
	// maps the history into the resident set while it dumps it: the
	// collection after bulk changes waits for it to end.
	defer m.collect.hold(false)()
	// Raft may drop its log up to s once this returns: the history must
	// hold it, on disk.
	if err := m.hist().Sync(); err != nil {
		return fmt.Errorf("sync history: %w", err)
	}
	sum := sha256.New()
	mw := io.MultiWriter(w, sum)
	p := m.Parts(s)
	if err := p.WriteState(mw); err != nil {
		return err
	}
	if _, err := p.WriteHistory(mw); err != nil {
		return err
	}
	if _, err := w.Write(sum.Sum(nil)); err != nil {
		return fmt.Errorf("write snapshot checksum: %w", err)
	}
	return nil
}

// Parts is a state's snapshot in its two parts, for a backup archive:
// header and entities, and the history up to the state's index.
// Concatenated, they are a Persist stream without its checksum.
type Parts struct {
	m *Machine
	s *State
}

// Parts returns s's snapshot parts.
func (m *Machine) Parts(s *State) Parts { return Parts{m, s} }

// WriteState writes the header and the entities.
func (p Parts) WriteState(w io.Writer) error {
	s := p.s
	bw := bufio.NewWriterSize(w, 256<<10)
	enc := msgpack.NewEncoder(bw)
	version := s.writeVersion()
	h := &snapHeader{Version: version, Index: s.Index, Webhook: s.webhook, LastTime: s.lastTime, Salt: s.salt, Canonical: true}
	for _, mb := range s.members {
		h.Members = append(h.Members, mb)
	}
	sort.Slice(h.Members, func(i, j int) bool { return h.Members[i].ID < h.Members[j].ID })
	if err := enc.Encode(h); err != nil {
		return fmt.Errorf("write snapshot header: %w", err)
	}
	if err := writeEntities(enc, s, version); err != nil {
		return err
	}
	return bw.Flush()
}

// writeEntities writes s's entities kind by kind, and the empty entity
// that ends them.
func writeEntities(enc *msgpack.Encoder, s *State, version int) error {
	var err error
	for _, kind := range Kinds {
		s.Walk(kind, "", func(e *Entity) bool {
			// The entity's own encoding, written as is: a state of
			// 100,000 entities is not encoded again for every snapshot
			// and backup.
			b := e.enc
			if b == nil {
				b = canonical(e.Data())
			}
			if version >= 3 {
				err = encodeSnapEntityBin(enc, kind, b)
			} else {
				err = enc.Encode(&snapEntityRaw{Kind: kind, Data: b})
			}
			return err == nil
		})
		if err != nil {
			return fmt.Errorf("write snapshot entity: %w", err)
		}
	}
	return enc.Encode(&snapEntity{})
}

// HistorySize returns the length in bytes of WriteHistory's output and
// the number of records it holds, without writing it.
func (p Parts) HistorySize() (int64, int, error) { return p.m.hist().DumpSize(p.s.Index) }

// WriteHistory writes the history and returns the number of records.
func (p Parts) WriteHistory(w io.Writer) (int, error) {
	hw := bufio.NewWriterSize(w, 256<<10)
	n, err := p.m.hist().Dump(hw, p.s.Index)
	// The dump mapped the whole history into the resident set; those
	// pages are the page cache's, not the node's.
	if rerr := p.m.history.ReleaseMapped(); rerr != nil {
		slog.Warn("history pages not released", "err", rerr)
	}
	if err == nil {
		err = hw.Flush()
	}
	if err != nil {
		return 0, fmt.Errorf("write snapshot history: %w", err)
	}
	return n, nil
}

// SnapshotVersion is the newest snapshot format this build writes and
// reads. Version 2 added the trailing SHA-256 (version 1 streams lack
// it); 3 writes entity data as bins (snapEntityBin). Older versions are
// read.
const SnapshotVersion = 3

// writeVersion is the snapshot version s is written in: the newest every
// member reads. The leader sends its snapshot to followers as it is, so
// during a rolling upgrade, while one member still runs a build that
// reads only version 2, snapshots stay version 2. A state without
// members (no cluster formed yet) has no one to wait for.
func (s *State) writeVersion() int {
	v := SnapshotVersion
	for _, mb := range s.members {
		v = min(v, max(mb.Snapshot, 2))
	}
	return v
}

// VerifyBackup checks a backup (a Persist stream) of the given size
// without applying anything: the trailing checksum, then VerifyState and
// VerifyHistory. It is what stands between a truncated or altered file
// and a restore that would replace a cluster's state.
func VerifyBackup(r io.ReadSeeker, size int64) error {
	if size < sha256.Size+4 {
		return errors.New("backup is too short to be a Gatehouse backup")
	}
	sum := sha256.New()
	if _, err := io.CopyN(sum, r, size-sha256.Size); err != nil {
		return fmt.Errorf("read backup: %w", err)
	}
	want := make([]byte, sha256.Size)
	if _, err := io.ReadFull(r, want); err != nil {
		return fmt.Errorf("read backup checksum: %w", err)
	}
	if !bytes.Equal(sum.Sum(nil), want) {
		return errors.New("backup checksum mismatch: the file is truncated or altered")
	}
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return err
	}
	br := bufio.NewReader(io.LimitReader(r, size-sha256.Size))
	if err := verifyState(br); err != nil {
		return err
	}
	if err := verifyHistory(br); err != nil {
		return err
	}
	if _, err := br.ReadByte(); err != io.EOF {
		return errors.New("backup has trailing data")
	}
	_, err := r.Seek(0, io.SeekStart)
	return err
}

// VerifyState checks that r is a state part (WriteState's output) and
// nothing more: the version, and that the header and every entity decode.
func VerifyState(r io.Reader) error {
	br := bufio.NewReader(r)
	if err := verifyState(br); err != nil {
		return err
	}
	if _, err := br.ReadByte(); err != io.EOF {
		return errors.New("backup state has trailing data")
	}
	return nil
}

// VerifyHistory checks that r is a history part: length-prefixed records
// up to the terminating zero length, and nothing more.
func VerifyHistory(r io.Reader) error {
	br := bufio.NewReaderSize(r, 256<<10)
	if err := verifyHistory(br); err != nil {
		return err
	}
	if _, err := br.ReadByte(); err != io.EOF {
		return errors.New("backup history has trailing data")
	}
	return nil
}

func verifyState(br *bufio.Reader) error {
	dec := msgpack.NewDecoder(br)
	var h snapHeader
	if err := dec.Decode(&h); err != nil {
		return fmt.Errorf("backup header: %w", err)
	}
	if h.Version != 2 && h.Version != SnapshotVersion {
		return fmt.Errorf("backup version %d is not supported (want 2 or %d)", h.Version, SnapshotVersion)
	}
	sr := newSnapReader(dec, h.Version)
	for {
		// The data is checked for shape only, not decoded into maps:
		// the restore that follows decodes it, and a verify must keep
		// up with the download.
		se, err := sr.next()
		if err != nil {
			return fmt.Errorf("backup entity: %w", err)
		}
		if se.Kind == "" {
			return nil
		}
		if len(se.Data) == 0 || !isMsgpackMap(se.Data[0]) {
			return fmt.Errorf("backup entity of kind %q is not a map", se.Kind)
		}
		if Schemas[se.Kind] == nil {
			return fmt.Errorf("backup holds an unknown entity kind %q", se.Kind)
		}
	}
}

func verifyHistory(br *bufio.Reader) error {
	var lenb [4]byte
	for {
		if _, err := io.ReadFull(br, lenb[:]); err != nil {
			return fmt.Errorf("backup history: %w", err)
		}
		n := binary.BigEndian.Uint32(lenb[:])
		if n == 0 {
			return nil
		}
		if _, err := br.Discard(int(n)); err != nil {
			return fmt.Errorf("backup history record: %w", err)
		}
	}
}

// Restore replaces the state and history with a snapshot written by
// Persist.
func (m *Machine) Restore(r io.Reader) error {
	br := bufio.NewReader(r)
	dec := msgpack.NewDecoder(br)
	var h snapHeader
	if err := dec.Decode(&h); err != nil {
		return fmt.Errorf("read snapshot header: %w", err)
	}
	if h.Version < 1 || h.Version > SnapshotVersion {
		return fmt.Errorf("unsupported snapshot version %d", h.Version)
	}
	t0 := time.Now()
	m.collect.boost()
	defer m.collect.bulk() // also after a failed one: its garbage is as large
	t := m.fold.begin(Empty())
	if err := m.restoreEntities(dec, h.Version, t, h.Canonical); err != nil {
		return err
	}
	tEntities := time.Since(t0)
	records, err := m.hist().Load(br)
	if err != nil {
		return fmt.Errorf("restore history: %w", err)
	}
	tHistory := time.Since(t0) - tEntities
	next := t.commit(h.Index)
	next.webhook = h.Webhook
	next.lastTime, next.salt = h.LastTime, h.Salt
	next.members = map[string]Member{}
	for _, mb := range h.Members {
		next.members[mb.ID] = mb
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.publish(Update{Prev: m.state.Load(), Next: next, Reset: true})
	m.fromStart = false
	from, err := m.history.VersionsFrom()
	if err == nil && from > next.Index {
		// The history was rewritten (or predates versions): the
		// snapshot's state is the first version of everything.
		err = m.baseVersions(next)
	}
	if err != nil {
		slog.Error("time-travel versions", "err", err)
	}
	// A restart's time is mostly this; where it went is worth a line.
	slog.Info("snapshot restored", "index", next.Index, "entities", next.entities.Len(), "history_upto", records,
		"entities_took", tEntities.Round(time.Millisecond), "history_took", tHistory.Round(time.Millisecond),
		"total", time.Since(t0).Round(time.Millisecond))
	m.warmInBackground()
	return nil
}

// restoreEntities reads a snapshot's entities into t. Decoding them is
// most of a restore (a restart at 1,000,000 consumers), so it runs on
// every core, in chunks, while this goroutine reads on. The workers also
// derive each entity's index keys; the trees are then built from the
// sorted keys (bulkIndex) instead of one insert at a time, which searched
// from the root for every key and was most of the rest. With canonical
// data an entity's bytes are its encoding and only need hashing.
func (m *Machine) restoreEntities(dec *msgpack.Decoder, version int, t *txn, canonicalData bool) error {
	type chunk struct {
		raw  []snapEntityRaw
		keys []indexKeys
		done chan error
	}
	work := make(chan *chunk, 8)
	var chunks []*chunk
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rd := newRestoreDecoder()
			for c := range work {
				var err error
				c.keys = make([]indexKeys, len(c.raw))
				for i, r := range c.raw {
					if c.keys[i], err = m.restoredEntity(rd, r, canonicalData); err != nil {
						break
					}
				}
				c.raw = nil
				c.done <- err
			}
		}()
	}
	var err error
	const chunkLen = 1024
	c := &chunk{raw: make([]snapEntityRaw, 0, chunkLen)}
	sr := newSnapReader(dec, version)
	for {
		var se snapEntityRaw
		if se, err = sr.next(); err != nil {
			err = fmt.Errorf("read snapshot entity: %w", err)
			break
		}
		if se.Kind == "" {
			break
		}
		c.raw = append(c.raw, se)
		if len(c.raw) == chunkLen {
			c.done = make(chan error, 1)
			chunks = append(chunks, c)
			work <- c
			c = &chunk{raw: make([]snapEntityRaw, 0, chunkLen)}
		}
	}
	c.done = make(chan error, 1)
	chunks = append(chunks, c)
	work <- c
	close(work)
	wg.Wait()
	var all [][]indexKeys
	for _, c := range chunks {
		if cerr := <-c.done; err == nil {
			err = cerr
		}
		all = append(all, c.keys)
	}
	if err != nil {
		return err
	}
	bulkIndex(t, all)
	return nil
}

// indexKeys is what indexing an entity writes: its key in each tree.
type indexKeys struct {
	e        *Entity
	entity   string
	unique   []string
	children []string
	plugin   string   // a plugin's name, counted
	consumer bool     // a consumer-scoped plugin
	hash     [32]byte // e's content hash, for the state's
}

// keysOf derives e's index keys from its fields, as swap would write them.
func keysOf(e *Entity) indexKeys {
	d := e.data
	ik := indexKeys{e: e, entity: k(e.Kind, e.ID), unique: uniqueKeys(e.Kind, d)}
	for _, fr := range foreignFields[e.Kind] {
		if id := ref(d, fr.field); id != "" {
			ik.children = append(ik.children, k(fr.kind, id, e.Kind, e.ID))
		}
	}
	if e.Kind == Plugins {
		ik.plugin, ik.consumer = str(d, "name"), ref(d, "consumer") != ""
	}
	ik.hash = entityHash(e)
	return ik
}

// bulkIndex fills t's empty trees with every entity's keys: each tree's
// keys sorted (the three in parallel) and loaded in order, which appends
// to the last leaf rather than searching for each key.
func bulkIndex(t *txn, all [][]indexKeys) {
	n := 0
	for _, ks := range all {
		n += len(ks)
	}
	type pair struct {
		key, id string
		seq     int // position in the stream, the tie-break
	}
	// Sized first: grown by appending, these were a second of copying
	// at 1,000,000 consumers, after the workers had finished.
	nu, nk := 0, 0
	for _, ks := range all {
		for _, ik := range ks {
			nu, nk = nu+len(ik.unique), nk+len(ik.children)
		}
	}
	ents := make([]entityKey, 0, n)
	uniq := make([]pair, 0, nu)
	kids := make([]string, 0, nk)
	for _, ks := range all {
		for _, ik := range ks {
			ents = append(ents, entityKey{ik.entity, ik.e})
			for _, u := range ik.unique {
				uniq = append(uniq, pair{u, ik.e.ID, len(uniq)})
			}
			kids = append(kids, ik.children...)
			xorInto(&t.hash, ik.hash)
			if ik.plugin != "" {
				t.countPlugin(ik.plugin, 1)
				if ik.consumer {
					t.consumer++
				}
			}
		}
	}
	var wg sync.WaitGroup
	wg.Add(3)
	go func() {
		defer wg.Done()
		t.entities = buildTree(t.entities, sortEntityKeys(ents), func(ek *entityKey) (string, *Entity) { return ek.key, ek.e })
	}()
	go func() {
		defer wg.Done()
		// Duplicates (only in a hand-made snapshot) end as indexing one
		// by one left them: the last one wins. A stable sort did that in
		// twice the time of this one.
		uniq = sortByKey(uniq, 2, func(u *pair) string { return u.key }, func(a, b *pair) int { return a.seq - b.seq })
		t.unique = buildTree(t.unique, uniq, func(u *pair) (string, string) { return u.key, u.id })
	}()
	go func() {
		defer wg.Done()
		kids = sortByKey(kids, 1, func(k *string) string { return *k }, func(a, b *string) int { return 0 })
		t.children = buildTree(t.children, kids, func(c *string) (string, struct{}) { return *c, struct{}{} })
	}()
	wg.Wait()
}

// buildTree returns into with the entries of xs, which are sorted by key,
// set in turn (so the last of equal keys wins). Into an empty tree the
// tree is built whole, its nodes packed (keytree.FromSorted): a tree set
// key by key has its nodes about half full.
func buildTree[T, V any](into *tree[V], xs []T, entry func(*T) (string, V)) *tree[V] {
	if into.Len() > 0 {
		for i := range xs {
			into.Set(entry(&xs[i]))
		}
		return into
	}
	last := xs[:0] // the last of each run of equal keys, in place
	for i := range xs {
		ki, _ := entry(&xs[i])
		if i+1 < len(xs) {
			if kn, _ := entry(&xs[i+1]); kn == ki {
				continue
			}
		}
		last = append(last, xs[i])
	}
	return keytree.FromSorted(into.Order(), len(last), func(i int) (string, V) { return entry(&last[i]) })
}

// sortInHalves sorts xs by cmp, which must order every pair (no ties):
// each half on its own goroutine, then merged. The unique keys of
// 1,000,000 consumers and their credentials are the longest sort of a
// restore, and the other two share the cores with it only at the start.
func sortInHalves[T any](xs []T, cmp func(a, b T) int) []T {
	if len(xs) < 1<<16 {
		slices.SortFunc(xs, cmp)
		return xs
	}
	lo, hi := xs[:len(xs)/2], xs[len(xs)/2:]
	done := make(chan struct{})
	go func() {
		defer close(done)
		slices.SortFunc(lo, cmp)
	}()
	slices.SortFunc(hi, cmp)
	<-done
	out := make([]T, 0, len(xs))
	for len(lo) > 0 && len(hi) > 0 {
		if cmp(lo[0], hi[0]) <= 0 {
			out, lo = append(out, lo[0]), lo[1:]
		} else {
			out, hi = append(out, hi[0]), hi[1:]
		}
	}
	return append(append(out, lo...), hi...)
}

// entityKey is an entity under its key in the entities tree.
type entityKey struct {
	key string
	e   *Entity
}

// sortEntityKeys orders ents by key; among equal keys the later one in
// ents comes last. A snapshot writes entities kind by kind, each kind in
// key order, so they arrive as a few ascending runs that do not overlap:
// ordering the runs by their first key is then enough, without sorting
// 2,000,000 keys (3 s of CPU at 1,000,000 consumers). Anything else, a
// hand-made snapshot, is sorted stably.
func sortEntityKeys(ents []entityKey) []entityKey {
	var runs [][]entityKey
	start := 0
	for i := 1; i <= len(ents); i++ {
		if i == len(ents) || ents[i].key <= ents[i-1].key {
			runs = append(runs, ents[start:i])
			start = i
		}
		if len(runs) > 64 {
			break
		}
	}
	if len(runs) <= 64 {
		slices.SortFunc(runs, func(a, b []entityKey) int { return strings.Compare(a[0].key, b[0].key) })
		disjoint := true
		for i := 1; i < len(runs) && disjoint; i++ {
			disjoint = runs[i-1][len(runs[i-1])-1].key < runs[i][0].key
		}
		if disjoint {
			out := make([]entityKey, 0, len(ents))
			for _, r := range runs {
				out = append(out, r...)
			}
			return out
		}
	}
	slices.SortStableFunc(ents, func(a, b entityKey) int { return strings.Compare(a.key, b.key) })
	return ents
}

// restoredEntity builds one snapshot entity, sealed, with its index keys.
func (m *Machine) restoredEntity(rd *restoreDecoder, r snapEntityRaw, canonicalData bool) (indexKeys, error) {
	if canonicalData {
		if ik, ok := rd.restoredFast(r); ok {
			return ik, nil
		}
	}
	return m.restoredGeneric(r, canonicalData)
}

// restoredGeneric is restoredEntity through a map of the fields.
func (m *Machine) restoredGeneric(r snapEntityRaw, canonicalData bool) (indexKeys, error) {
	var d map[string]any
	if err := msgpack.Unmarshal(r.Data, &d); err != nil {
		return indexKeys{}, fmt.Errorf("read snapshot entity: %w", err)
	}
	log.JSONShape(d)
	e := NewEntity(r.Kind, str(d, "id"), d)
	if canonicalData {
		e.enc = r.Data
	}
	e.View = buildView(r.Kind, d, m.compile(r.Kind, d))
	ik := keysOf(e)
	e.seal()
	return ik, nil
}

// compile rebuilds a plugin's compiled config when restoring; the config
// was validated when first applied.
func (m *Machine) compile(kind string, d map[string]any) any {
	if kind != Plugins || m.fold.Plugins == nil {
		return nil
	}
	def, ok := m.fold.Plugins.Plugin(str(d, "name"))
	if !ok {
		return nil
	}
	cfg, _ := d["config"].(map[string]any)
	c, _ := def.Compile(cfg)
	return c
}

// SnapshotIndex reads the log index a snapshot stream (a backup) was
// taken at, and rewinds r.
func SnapshotIndex(r io.ReadSeeker) (uint64, error) {
	var h snapHeader
	if err := msgpack.NewDecoder(bufio.NewReader(r)).Decode(&h); err != nil {
		return 0, fmt.Errorf("read snapshot header: %w", err)
	}
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return 0, err
	}
	return h.Index, nil
}
