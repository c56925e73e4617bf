package fsm

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"sort"
	"sync"

	"github.com/klauspost/compress/s2"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/gatehouse-gw/gatehouse/log"
)

// Time travel reads entity versions. Every applied event stores, in the
// history file and in the same transaction as its record, each entity it
// changed as that event left it (see log.Version). The state at a past
// index is the present one with every entity changed since put back as
// it was then: one scan of the version keys, and work only for what
// changed. Nothing is held in memory, and a query's cost does not grow
// with the history's length (replaying from checkpoints did, and the
// checkpoints held gigabytes at a million events).
//
// A snapshot install brings the history but not the versions. The
// snapshot's own state is stored as versions at its index straight away,
// so points from there on are served at once, and WarmTimeTravel rebuilds
// the older versions by replaying the history once, in the background.

// metaKind is the version key of the cluster metadata (members, webhook,
// salt): it changes by its own events and past states need it too.
const metaKind = "_meta"

type metaVersion struct {
	Members []Member `msgpack:"m"`
	Webhook Webhook  `msgpack:"w"`
	Salt    []byte   `msgpack:"salt,omitempty"`
}

// entityVersion encodes an entity for the version store: its content
// hash, then its data.
func entityVersion(e *Entity, index uint64) (log.Version, error) {
	v := log.Version{Kind: e.Kind, ID: e.ID, Index: index}
	b := e.enc
	if b == nil {
		var err error
		if b, err = msgpack.Marshal(e.Data()); err != nil {
			return v, fmt.Errorf("encode version of %s %s: %w", e.Kind, e.ID, err)
		}
	}
	h := entityHash(e)
	v.Value = append(h[:], b...)
	return v, nil
}

func metaVersionOf(s *State, index uint64) (log.Version, error) {
	mv := metaVersion{Webhook: s.webhook, Salt: s.salt}
	for _, mb := range s.members {
		mv.Members = append(mv.Members, mb)
	}
	sort.Slice(mv.Members, func(i, j int) bool { return mv.Members[i].ID < mv.Members[j].ID })
	b, err := msgpack.Marshal(&mv)
	if err != nil {
		return log.Version{}, fmt.Errorf("encode metadata version: %w", err)
	}
	return log.Version{Kind: metaKind, Index: index, Value: b}, nil
}

// versionRunAbove is how many changes make an event's versions a run of
// their own. Runs are merged on every time-travel scan, so they are for
// the rare large event: a variable for the test.
var versionRunAbove = bulkChanges

// versionsOf lists the versions one event made: the entities it changed
// (a batch that changes one twice leaves the last), and the metadata if
// the event was of a kind that changes it.
func versionsOf(ev *log.Event, next *State, changes []Change, out []log.Version) ([]log.Version, error) {
	// A restore's or a bulk batch's versions are stored as a run of their
	// own (log.Version.ByIndex).
	byIndex := ev.Type == log.TypeRestore || len(changes) >= versionRunAbove
	for _, c := range changes {
		if c.After == nil {
			out = append(out, log.Version{Kind: c.Kind, ID: c.ID, Index: ev.Index, ByIndex: byIndex})
			continue
		}
		v, err := entityVersion(c.After, ev.Index)
		if err != nil {
			return out, err
		}
		v.ByIndex = byIndex
		out = append(out, v)
	}
	switch ev.Type {
	case log.TypeMember, log.TypeWebhook, log.TypeCursor, log.TypeSalt:
		v, err := metaVersionOf(next, ev.Index)
		if err != nil {
			return out, err
		}
		out = append(out, v)
	}
	return out, nil
}

// baseVersions stores s whole as versions at its index (after a snapshot
// install) and marks the versions complete from there.
func (m *Machine) baseVersions(s *State) error {
	var vs []log.Version
	for _, kind := range Kinds {
		var err error
		s.Walk(kind, "", func(e *Entity) bool {
			var v log.Version
			if v, err = entityVersion(e, s.Index); err == nil {
				vs = append(vs, v)
			}
			return err == nil
		})
		if err != nil {
			return err
		}
	}
	mv, err := metaVersionOf(s, s.Index)
	if err != nil {
		return err
	}
	if err := m.history.PutVersions(append(vs, mv)); err != nil {
		return err
	}
	return m.history.SetVersionsFrom(s.Index)
}

// StateAt returns the configuration as it was right after log index upto.
// The live state is untouched.
func (m *Machine) StateAt(upto uint64) (*State, error) {
	cur := m.State()
	if upto >= cur.Index {
		return cur, nil
	}
	// Every version after upto is reverted, up to cur's own.
	from, err := m.hist().VersionsFrom()
	if err == nil && upto < from {
		// Older than the last snapshot install: wait for the rebuild.
		m.warmMu.Lock()
		done := m.warmDone
		m.warmMu.Unlock()
		<-done
		from, err = m.history.VersionsFrom()
	}
	if err != nil {
		return nil, err
	}
	if upto < from {
		return nil, fmt.Errorf("time travel before index %d is unavailable: rebuilding it failed (see the log)", from)
	}
	// The scan and the decoding overlap: full chunks of backs go to
	// decoders while the scan reads on (each is about half the work).
	const chunkSize = 1024
	var chunks [][]back
	chunk := make([]back, 0, chunkSize)
	todo := make(chan []back, 64)
	decoded := make(chan error, 1)
	go func() { decoded <- m.decodeChunks(todo) }()
	meta, metaChanged := cur.meta, false
	err = m.history.VersionsAt(upto, func(kind, id string, value []byte) error {
		if kind == metaKind {
			metaChanged = true
			meta = cur.meta
			meta.members, meta.webhook, meta.salt = map[string]Member{}, Webhook{}, nil
			if value == nil {
				return nil
			}
			var mv metaVersion
			if err := msgpack.Unmarshal(value, &mv); err != nil {
				return fmt.Errorf("decode metadata version: %w", err)
			}
			for _, mb := range mv.Members {
				meta.members[mb.ID] = mb
			}
			meta.webhook, meta.salt = mv.Webhook, mv.Salt
			return nil
		}
		b := back{Kind: kind, ID: id}
		if value != nil {
			if len(value) < 32 {
				return fmt.Errorf("version of %s %s is corrupt", kind, id)
			}
			// The value is valid only inside the scan.
			b.Hash, b.Data = append([]byte(nil), value[:32]...), append([]byte(nil), value[32:]...)
		}
		chunk = append(chunk, b)
		if len(chunk) == chunkSize {
			chunks = append(chunks, chunk)
			todo <- chunk
			chunk = make([]back, 0, chunkSize)
		}
		return nil
	})
	chunks = append(chunks, chunk)
	todo <- chunk
	close(todo)
	if derr := <-decoded; err == nil {
		err = derr
	}
	if err != nil {
		return nil, fmt.Errorf("read versions: %w", err)
	}
	n := 0
	for _, c := range chunks {
		n += len(c)
	}
	backs := make([]back, 0, n)
	for _, c := range chunks {
		backs = append(backs, c...)
	}
	t := m.fold.begin(cur)
	revert(t, cur, backs)
	s := t.commit(upto)
	if metaChanged {
		s.meta = meta
	}
	if s.lastTime, err = m.history.TimeAt(upto); err != nil {
		return nil, err
	}
	return s, nil
}

// back is one entity put back as it was: Data is its msgpack encoding,
// nil when it did not exist. It is both what StateAt reads from the
// versions and an item of a restore event's payload.
type back struct {
	Kind string             `msgpack:"k"`
	ID   string             `msgpack:"id"`
	Hash []byte             `msgpack:"h,omitempty"`
	Data msgpack.RawMessage `msgpack:"d,omitempty"`
	e    *Entity            // Data decoded
}

// decodeBacks decodes every back's entity, in parallel: decoding is most
// of the work and each entity is independent.
func (m *Machine) decodeBacks(backs []back) error {
	todo := make(chan []back, 1+len(backs)/1024)
	for lo := 0; lo < len(backs); lo += 1024 {
		todo <- backs[lo:min(lo+1024, len(backs))]
	}
	close(todo)
	return m.decodeChunks(todo)
}

// decodeChunks decodes the backs of every chunk received, on every core,
// until todo is closed. After an error it drains todo without decoding.
func (m *Machine) decodeChunks(todo <-chan []back) error {
	workers := runtime.GOMAXPROCS(0)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for chunk := range todo {
				for i := range chunk {
					if errs[w] == nil {
						errs[w] = m.decodeBack(&chunk[i])
					}
				}
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (m *Machine) decodeBack(b *back) error {
	if b.Data == nil {
		return nil
	}
	var d map[string]any
	if err := msgpack.Unmarshal(b.Data, &d); err != nil {
		return fmt.Errorf("decode version of %s %s: %w", b.Kind, b.ID, err)
	}
	if len(b.Hash) != 32 || Schemas[b.Kind] == nil || str(d, "id") != b.ID {
		return fmt.Errorf("version of %s %s is corrupt", b.Kind, b.ID)
	}
	log.JSONShape(d)
	b.e = &Entity{Kind: b.Kind, ID: b.ID, data: d, enc: b.Data}
	b.e.View = buildView(b.Kind, d, m.compile(b.Kind, d))
	return nil
}

// decodeAll decodes the fields of the published entities among es on
// every core. A revert's index passes read each replaced entity's fields
// twice (unique keys, references); decoding tens of thousands of them on
// one goroutine per pass was most of a time-travel query's extra cost.
func decodeAll(es []*Entity) map[*Entity]map[string]any {
	out := make([]map[string]any, len(es))
	var wg sync.WaitGroup
	workers := runtime.GOMAXPROCS(0)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(es); i += workers {
				if es[i] != nil && es[i].data == nil {
					out[i] = es[i].Data()
				}
			}
		}()
	}
	wg.Wait()
	m := make(map[*Entity]map[string]any, len(es))
	for i, e := range es {
		if out[i] != nil {
			m[e] = out[i]
		}
	}
	return m
}

// revert puts each back into t, which starts from cur, and returns the
// changes. Each index tree is its own pass, run in parallel (they share
// nothing). Within a pass removals go first: a unique name may have moved
// from one of these entities to another (swapUnique copes with that among
// the rest).
func revert(t *txn, cur *State, backs []back) []Change {
	olds := make([]*Entity, len(backs))
	for i, b := range backs {
		olds[i] = cur.Get(b.Kind, b.ID)
	}
	t.decoded = decodeAll(olds)
	defer func() { t.decoded = nil }()
	pass := func(swap func(old, e *Entity)) {
		for i, b := range backs {
			if olds[i] != nil && b.e == nil {
				swap(olds[i], nil)
			}
		}
		for i, b := range backs {
			if b.e != nil {
				swap(olds[i], b.e)
			}
		}
	}
	var wg sync.WaitGroup
	for _, swap := range []func(old, e *Entity){t.swapEntity, t.swapUnique, t.swapChildren} {
		wg.Add(1)
		go func() { defer wg.Done(); pass(swap) }()
	}
	pass(t.swapCounts)
	wg.Wait()
	for _, b := range backs {
		if b.e != nil {
			b.e.seal()
		}
	}
	var changes []Change
	for i, b := range backs {
		if olds[i] != nil || b.e != nil {
			changes = append(changes, Change{Kind: b.Kind, ID: b.ID, Before: olds[i], After: b.e})
		}
	}
	return changes
}

// restorable lists the kinds a point-in-time restore rewrites: the gateway
// configuration, not who may change it (restoring RBAC could lock the
// operator out, or back in someone who was removed).
var restorable = []string{Certificates, CACertificates, SNIs, Services, Routes, Consumers, Upstreams, Targets, KeyAuths,
	BasicAuths, JWTSecrets, Plugins}

// PlanRestore is RestorePayload, remembering the entities it encoded: when
// this node (the leader) then applies the event, it uses them instead of
// decoding the payload back, which at 50,000 entities is about a second.
func (m *Machine) PlanRestore(cur, past *State) ([]byte, int, error) {
	payload, backs, err := restorePayload(cur, past)
	if err != nil {
		return nil, 0, err
	}
	m.planMu.Lock()
	m.plan = plannedRestore{sum: sha256.Sum256(payload), backs: backs}
	m.planMu.Unlock()
	return payload, len(backs), nil
}

// plannedRestore is a restore payload with its entities already decoded.
type plannedRestore struct {
	sum   [32]byte
	backs []back
}

// planned returns the decoded entities of payload if PlanRestore made it.
func (m *Machine) planned(payload []byte) []back {
	m.planMu.Lock()
	defer m.planMu.Unlock()
	if m.plan.backs == nil || sha256.Sum256(payload) != m.plan.sum {
		return nil
	}
	backs := m.plan.backs
	m.plan = plannedRestore{}
	return backs
}

// RestorePayload is the payload of a TypeRestore event that turns cur's
// gateway configuration into past's: every entity that differs, exactly
// as it was (timestamps included, so each one's content hash is its old
// one), or deleted. It returns the payload and the number of entities.
// Applying it cannot fail: past was a consistent state, and the kinds it
// leaves alone (admins, RBAC) reference none of these.
func RestorePayload(cur, past *State) ([]byte, int, error) {
	payload, backs, err := restorePayload(cur, past)
	return payload, len(backs), err
}

// sameContent reports whether x and y hold the same content: equal
// canonical encodings, compared without hashing either.
func sameContent(x, y *Entity) bool {
	if x == y {
		return true
	}
	if x.enc != nil && y.enc != nil {
		return x.Kind == y.Kind && bytes.Equal(x.enc, y.enc)
	}
	return entityHash(x) == entityHash(y)
}

func restorePayload(cur, past *State) ([]byte, []back, error) {
	var backs []back
	// By content: a restore puts back timestamps too (so the
	// configuration hash is the past one), and comparing encodings
	// (what the content hash is taken over) is what makes planning
	// 50,000 entities cheap.
	for _, d := range diff(cur, past, restorable, sameContent) {
		b := back{Kind: d.Kind, ID: d.ID}
		if d.After != nil {
			data := d.After.enc // a past entity usually comes from its version
			if data == nil {
				var err error
				if data, err = msgpack.Marshal(d.After.Data()); err != nil {
					return nil, nil, fmt.Errorf("encode %s %s: %w", d.Kind, d.ID, err)
				}
			}
			h := entityHash(d.After)
			b.Hash, b.Data, b.e = h[:], data, d.After
		}
		backs = append(backs, b)
	}
	payload, err := msgpack.Marshal(backs)
	if err != nil {
		return nil, nil, err
	}
	// S2-compressed: the payload is written to the Raft log, replicated
	// and kept in the history; entity data compresses about 5:1, at about
	// a gigabyte a second.
	return s2.Encode(nil, payload), backs, nil
}

// restoreChanges is what a restore's history record says of its changes:
// which entities it put back and how, without their data. The record
// would otherwise hold every restored entity twice (tens of megabytes at
// 50,000 entities, hashed and written on every node), and the before and
// after are exactly the states at the index before the restore and at the
// restore (/audit/diff).
func restoreChanges(changes []Change) []log.Change {
	out := make([]log.Change, 0, len(changes))
	for _, c := range changes {
		op := "updated"
		switch {
		case c.Before == nil:
			op = "created"
		case c.After == nil:
			op = "deleted"
		}
		out = append(out, log.Change{EntityType: c.Kind, EntityID: c.ID, Op: op})
	}
	return out
}

// applyRestore folds a TypeRestore event.
func (m *Machine) applyRestore(s *State, index uint64, payload []byte) (*State, []Change, error) {
	backs := m.planned(payload)
	if backs == nil {
		if n, err := s2.DecodedLen(payload); err != nil || n > 1<<30 {
			return nil, nil, fmt.Errorf("decode restore: corrupt payload")
		}
		raw, err := s2.Decode(nil, payload)
		if err != nil {
			return nil, nil, fmt.Errorf("decode restore: %w", err)
		}
		if err := msgpack.Unmarshal(raw, &backs); err != nil {
			return nil, nil, fmt.Errorf("decode restore: %w", err)
		}
		for _, b := range backs {
			if !slices.Contains(restorable, b.Kind) {
				return nil, nil, fmt.Errorf("a restore may not change %s", b.Kind)
			}
		}
		if err := m.decodeBacks(backs); err != nil {
			return nil, nil, err
		}
	}
	t := m.fold.begin(s)
	changes := revert(t, s, backs)
	return t.commit(index), changes, nil
}

// WarmTimeTravel rebuilds the versions older than the last snapshot
// install by replaying the history up to it (the versions start there;
// see StateAt). It is a no-op when they are complete. Queries for older
// points wait for it.
func (m *Machine) WarmTimeTravel() error {
	m.warm.Lock()
	defer m.warm.Unlock()
	from, err := m.history.VersionsFrom()
	if err != nil || from == 0 {
		return err
	}
	if from == log.NoVersions {
		return nil // a restore is about to lay the base
	}
	// In stretches: versions are written between reads, never inside
	// one (a bbolt write that grows the file waits for every reader).
	const stretch = 8192
	s := Empty()
	for lo := uint64(1); lo <= from; lo += stretch {
		var vs []log.Version
		var werr error
		err := m.history.RangeEvents(lo, min(lo+stretch-1, from), func(ev *log.Event) bool {
			var changes []Change
			_, _, s, changes = m.applyDecoded(s, ev, false)
			vs, werr = versionsOf(ev, s, changes, vs)
			return werr == nil
		})
		if err == nil {
			err = werr
		}
		if err == nil {
			err = m.history.PutVersions(vs)
		}
		if err != nil {
			return fmt.Errorf("rebuild time-travel versions: %w", err)
		}
	}
	return m.history.SetVersionsFrom(0)
}

// warmInBackground starts WarmTimeTravel; StateAt waits on it for the
// points it rebuilds.
func (m *Machine) warmInBackground() {
	done := make(chan struct{})
	m.warmMu.Lock()
	m.warmDone = done
	m.warmMu.Unlock()
	go func() {
		defer close(done)
		if err := m.WarmTimeTravel(); err != nil {
			slog.Warn("time travel", "err", err)
		}
	}()
}

// IndexAt returns the last log index whose event time is at or before t
// (unix nanoseconds), 0 if none.
func (m *Machine) IndexAt(t int64) (uint64, error) { return m.hist().IndexAt(t) }

// Difference is one entity that differs between two states. Before is nil
// when the entity did not exist at the first point, After nil when it no
// longer exists at the second.
type Difference struct {
	Kind, ID      string
	Before, After *Entity
}

// Op names the difference: created, updated or deleted.
func (d Difference) Op() string {
	switch {
	case d.Before == nil:
		return "created"
	case d.After == nil:
		return "deleted"
	}
	return "updated"
}

// Diff lists the entities of the given kinds that differ between a and b,
// kind by kind in the order given, by id within a kind. Timestamps alone
// do not make a difference. Entities that a and b share (the common case
// between a state and its past) are skipped by pointer.
func Diff(a, b *State, kinds []string) []Difference {
	return diff(a, b, kinds, func(x, y *Entity) bool { return len(ChangedFields(x.Data(), y.Data())) == 0 })
}

// diff is Diff with the test for two versions of an entity being the
// same.
func diff(a, b *State, kinds []string, same func(x, y *Entity) bool) []Difference {
	var out []Difference
	for _, kind := range kinds {
		var before []*Entity
		a.Walk(kind, "", func(e *Entity) bool { before = append(before, e); return true })
		i := 0
		b.Walk(kind, "", func(e *Entity) bool {
			for i < len(before) && before[i].ID < e.ID {
				out = append(out, Difference{Kind: kind, ID: before[i].ID, Before: before[i]})
				i++
			}
			if i < len(before) && before[i].ID == e.ID {
				if before[i] != e && !same(before[i], e) {
					out = append(out, Difference{Kind: kind, ID: e.ID, Before: before[i], After: e})
				}
				i++
				return true
			}
			out = append(out, Difference{Kind: kind, ID: e.ID, After: e})
			return true
		})
		for ; i < len(before); i++ {
			out = append(out, Difference{Kind: kind, ID: before[i].ID, Before: before[i]})
		}
	}
	return out
}

// ChangedFields lists the top-level fields whose values differ, ignoring
// the timestamps, sorted.
func ChangedFields(a, b map[string]any) []string {
	var out []string
	for k, v := range b {
		if k == "created_at" || k == "updated_at" {
			continue
		}
		if av, ok := a[k]; !ok || !reflect.DeepEqual(av, v) {
			out = append(out, k)
		}
	}
	for k := range a {
		if _, ok := b[k]; !ok && k != "created_at" && k != "updated_at" {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// Salt returns the cluster's audit HMAC key (nil until the first leader
// has chosen one).
func (s *State) Salt() []byte { return s.salt }

// Redact returns a copy of an entity's data for audit views, with secret
// fields replaced by "hmac-sha256:<hex>" of their value under the
// cluster's salt. Without a salt they read "redacted".
func Redact(kind string, data map[string]any, salt []byte) map[string]any {
	sc := Schemas[kind]
	out := make(map[string]any, len(data))
	for k, v := range data {
		out[k] = v
	}
	if sc == nil {
		return out
	}
	for _, f := range sc.Fields {
		if !f.Secret {
			continue
		}
		if v, ok := out[f.Name].(string); ok {
			out[f.Name] = HMAC(salt, v)
		}
	}
	return out
}

// HMAC is how a secret appears in audit views.
func HMAC(salt []byte, v string) string {
	if len(salt) == 0 {
		return "redacted"
	}
	h := hmac.New(sha256.New, salt)
	h.Write([]byte(v))
	return "hmac-sha256:" + hex.EncodeToString(h.Sum(nil))
}

// describeChanges is the change list of a history record of type ty: a
// restore's names the entities it touched, any other's is auditChanges.
func describeChanges(ty log.Type, changes []Change, afters []map[string]any, salt []byte) []log.Change {
	if len(changes) == 0 {
		return nil
	}
	if ty == log.TypeRestore {
		return restoreChanges(changes)
	}
	return auditChanges(changes, afters, salt)
}

// fieldsAfter returns each change's entity fields after it, as the fold
// left them (nil where it kept none): taken before the apply seals the
// entities, so that describing the changes later need not decode them.
// The maps are only read from then on.
func fieldsAfter(changes []Change) []map[string]any {
	if len(changes) == 0 {
		return nil
	}
	out := make([]map[string]any, len(changes))
	for i, c := range changes {
		if c.After != nil {
			out[i] = c.After.data
		}
	}
	return out
}

// auditChanges is what the history records of an event's changes: whole
// entities for creations and deletions, changed fields for updates, all
// redacted. A batch touching an entity twice records each step. afters,
// when not nil, holds each change's fields after it (fieldsAfter).
func auditChanges(changes []Change, afters []map[string]any, salt []byte) []log.Change {
	if len(changes) == 0 {
		return nil
	}
	out := make([]log.Change, 0, len(changes))
	for i, c := range changes {
		lc := log.Change{EntityType: c.Kind, EntityID: c.ID}
		var after map[string]any
		if c.After != nil {
			if afters != nil {
				after = afters[i]
			}
			if after == nil {
				after = c.After.Data()
			}
		}
		switch {
		case c.Before == nil:
			lc.Op = "created"
			lc.After = Redact(c.Kind, after, salt)
		case c.After == nil:
			lc.Op = "deleted"
			lc.Before = Redact(c.Kind, c.Before.Data(), salt)
		default:
			lc.Op = "updated"
			before := c.Before.Data()
			fields := ChangedFields(before, after)
			b, a := Redact(c.Kind, before, salt), Redact(c.Kind, after, salt)
			lc.Before, lc.After = make(map[string]any, len(fields)), make(map[string]any, len(fields))
			for _, f := range fields {
				lc.Before[f], lc.After[f] = b[f], a[f]
			}
		}
		out = append(out, lc)
	}
	return out
}

// Cut rewrites a snapshot stream (a backup) as it was at an earlier point:
// the state then, and the history up to then. at is a log index, or with
// index 0 a time (unix nanoseconds). The work happens in a scratch
// history under dir, which the caller removes.
func Cut(snapshot io.Reader, plugins PluginRegistry, dir string, index uint64, at int64, w io.Writer) (uint64, error) {
	h, err := log.OpenHistory(filepath.Join(dir, "cut-history.db"))
	if err != nil {
		return 0, err
	}
	defer h.Close()
	m := New(h, plugins)
	if err := m.Restore(snapshot); err != nil {
		return 0, fmt.Errorf("read backup: %w", err)
	}
	if index == 0 {
		if index, err = m.IndexAt(at); err != nil {
			return 0, err
		}
	}
	if index > m.State().Index {
		return 0, fmt.Errorf("the backup ends at index %d, before %d", m.State().Index, index)
	}
	s, err := m.StateAt(index)
	if err != nil {
		return 0, err
	}
	return index, m.Persist(s, w)
}
