package fsm

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/gatehouse-gw/gatehouse/log"
)

// Time-travel tests: a machine's past states (StateAt) must be exactly the
// states it passed through, whether the machine recorded every version
// as it applied, or was restored from a snapshot (versions from the
// snapshot's state on, the older ones rebuilt in the background). IndexAt must find the last event at or before a time although
// events may be stamped out of time order (the fold clamps their times).

// ttModel is an independent record of the services a generated history
// holds: id -> "name retries", with an order-independent digest of its
// content kept up to date (the XOR of each entry's SHA-256).
type ttModel struct {
	entries map[string]string
	digest  [32]byte
}

func newTTModel() *ttModel { return &ttModel{entries: map[string]string{}} }

func entryDigest(id, v string) [32]byte { return sha256.Sum256([]byte(id + " " + v)) }

func (m *ttModel) xor(d [32]byte) {
	for i := range m.digest {
		m.digest[i] ^= d[i]
	}
}

func (m *ttModel) put(id, v string) {
	if old, ok := m.entries[id]; ok {
		m.xor(entryDigest(id, old))
	}
	m.entries[id] = v
	m.xor(entryDigest(id, v))
}

func (m *ttModel) remove(id string) {
	if old, ok := m.entries[id]; ok {
		m.xor(entryDigest(id, old))
		delete(m.entries, id)
	}
}

func (m *ttModel) fingerprint() string { return hex.EncodeToString(m.digest[:]) }

// stateFingerprint is the same digest computed from a state's services.
func stateFingerprint(s *State) string {
	m := newTTModel()
	s.Walk(Services, "", func(e *Entity) bool {
		m.put(e.ID, fmt.Sprintf("%v %v", e.Data()["name"], e.Data()["retries"]))
		return true
	})
	return m.fingerprint()
}

// ttGen generates a deterministic history of service creates, updates,
// upserts and deletes, with some rejected writes (duplicate names), some
// batches, and some webhook, cursor and member events in between. Event
// times mostly grow but sometimes go back.
type ttGen struct {
	rng     *rand.Rand
	model   *ttModel
	names   map[string]string // id -> name
	ids     []string          // live ids, in creation order
	counter int
	index   uint64
	rawTime int64
	clamped int64 // the time the fold is expected to record
	// backwards counts events stamped earlier than the one before.
	backwards int
}

func newTTGen(seed int64) *ttGen {
	return &ttGen{rng: rand.New(rand.NewSource(seed)), model: newTTModel(), names: map[string]string{},
		rawTime: 1_700_000_000_000_000_000}
}

func (g *ttGen) newID() string {
	g.counter++
	return fmt.Sprintf("%08x-%04x-4%03x-8%03x-%012x", g.rng.Uint32(), g.counter%0xffff, g.rng.Intn(0xfff), g.rng.Intn(0xfff), g.counter)
}

func (g *ttGen) freshName() string {
	g.counter++
	return fmt.Sprintf("svc-%d", g.counter)
}

func (g *ttGen) pick() (string, bool) {
	if len(g.ids) == 0 {
		return "", false
	}
	return g.ids[g.rng.Intn(len(g.ids))], true
}

func (g *ttGen) forget(id string) {
	for i, x := range g.ids {
		if x == id {
			g.ids = append(g.ids[:i], g.ids[i+1:]...)
			break
		}
	}
	g.model.remove(id)
	delete(g.names, id)
}

func (g *ttGen) set(id, name string, retries int) {
	if _, ok := g.names[id]; !ok {
		g.ids = append(g.ids, id)
	}
	g.names[id] = name
	g.model.put(id, fmt.Sprintf("%s %v", name, float64(retries)))
}

// retriesOf reads the model's retries of a live service.
func (g *ttGen) retriesOf(id string) int {
	var name string
	var r float64
	fmt.Sscanf(g.model.entries[id], "%s %g", &name, &r)
	return int(r)
}

// createCmd, updateCmd, ... build a command and apply it to the model.
func (g *ttGen) createCmd() *Command {
	id, name, r := g.newID(), g.freshName(), g.rng.Intn(11)
	g.set(id, name, r)
	return &Command{Op: log.OpCreate, Kind: Services, NewID: id,
		Body: map[string]any{"name": name, "host": name + ".test", "retries": float64(r)}}
}

func (g *ttGen) updateCmd(id string) *Command {
	if g.rng.Intn(4) == 0 {
		name := g.freshName()
		g.set(id, name, g.retriesOf(id))
		return &Command{Op: log.OpUpdate, Kind: Services, Key: id, Body: map[string]any{"name": name}}
	}
	r := g.rng.Intn(11)
	g.set(id, g.names[id], r)
	return &Command{Op: log.OpUpdate, Kind: Services, Key: id, Body: map[string]any{"retries": float64(r)}}
}

// next returns the encoded event for the next index.
func (g *ttGen) next(t testing.TB) []byte {
	t.Helper()
	g.index++
	switch {
	case g.rng.Intn(10) == 0:
		g.rawTime -= 1 + int64(g.rng.Intn(8000)) // stamped out of order
		g.backwards++
	case g.rng.Intn(10) == 0:
		// same time as the event before
	default:
		g.rawTime += 1000 + int64(g.rng.Intn(1000))
	}
	g.clamped = max(g.clamped, g.rawTime)
	ev := &log.Event{Type: log.TypeEntity, Time: g.rawTime, Actor: "test", Node: "n1"}
	var cmd *Command
	p := g.rng.Intn(100)
	if p < 35 && len(g.ids) > 80 {
		p = 75 // keep the state small: delete instead of creating
	}
	switch {
	case p < 35 || len(g.ids) < 3:
		cmd = g.createCmd()
	case p < 60:
		id, _ := g.pick()
		cmd = g.updateCmd(id)
	case p < 70:
		// A PUT: the whole entity replaced (or created when new).
		id, name, r := "", g.freshName(), g.rng.Intn(11)
		if g.rng.Intn(2) == 0 {
			id, _ = g.pick()
		} else {
			id = g.newID()
		}
		g.set(id, name, r)
		cmd = &Command{Op: log.OpUpsert, Kind: Services, Key: id, NewID: id,
			Body: map[string]any{"name": name, "host": "upserted.test", "retries": float64(r)}}
	case p < 84:
		id, _ := g.pick()
		g.forget(id)
		cmd = &Command{Op: log.OpDelete, Kind: Services, Key: id}
	case p < 88:
		// Rejected: a name that is taken. The model does not change.
		id, _ := g.pick()
		cmd = &Command{Op: log.OpCreate, Kind: Services, NewID: g.newID(),
			Body: map[string]any{"name": g.names[id], "host": "dup.test"}}
	case p < 93:
		// A batch: a creation and an update of an existing service,
		// atomically.
		id, _ := g.pick()
		cmds := []*Command{g.createCmd(), g.updateCmd(id)}
		payload, err := EncodeBatch(cmds)
		if err != nil {
			t.Fatal(err)
		}
		ev.Type, ev.Op, ev.Entity, ev.Payload = log.TypeBatch, "batch", "config", payload
	case p < 96:
		wh := Webhook{Cursor: g.index - 1}
		ev.Type, ev.Op, ev.Entity = log.TypeCursor, "deliver", "audit_webhook"
		if g.rng.Intn(3) == 0 {
			wh = Webhook{URL: fmt.Sprintf("http://127.0.0.1:%d/hook", 1000+g.index), BatchSize: 1 + int(g.index%50)}
			ev.Type, ev.Op = log.TypeWebhook, "update"
		}
		payload, err := EncodeWebhook(wh)
		if err != nil {
			t.Fatal(err)
		}
		ev.Payload = payload
	default:
		mb := Member{ID: fmt.Sprintf("node%d", g.rng.Intn(3)+1), Admin: fmt.Sprintf("127.0.0.1:%d", 2000+g.index)}
		payload, err := EncodeMember(mb)
		if err != nil {
			t.Fatal(err)
		}
		ev.Type, ev.Op, ev.Entity, ev.Payload = log.TypeMember, "update", "member", payload
	}
	if cmd != nil {
		payload, err := EncodeCommand(cmd)
		if err != nil {
			t.Fatal(err)
		}
		ev.Op, ev.Entity, ev.EntityID, ev.Payload = cmd.Op, cmd.Kind, cmd.Key, payload
	}
	data, err := log.Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// ttPoint is what a state at one index must look like.
type ttPoint struct {
	hash, model string
	webhook     Webhook
	members     int
	time        int64 // the event's clamped time
}

// ttRecorder applies events one at a time to its own machine and records
// every state it passes through.
type ttRecorder struct {
	m      *Machine
	points []ttPoint // by index; points[0] is the empty state
}

func newTTRecorder(t testing.TB, dir string) *ttRecorder {
	h, err := log.OpenHistory(filepath.Join(dir, "recorder.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	e := Empty()
	m := New(h, testPlugins{})
	t.Cleanup(m.Close)
	return &ttRecorder{m: m, points: []ttPoint{{hash: e.Hash(), model: newTTModel().fingerprint()}}}
}

func (r *ttRecorder) apply(t testing.TB, index uint64, data []byte, g *ttGen) *Result {
	t.Helper()
	if uint64(len(r.points)) != index {
		t.Fatalf("recorder at %d, applying %d", len(r.points)-1, index)
	}
	res := r.m.Apply(index, data)
	s := r.m.State()
	if s.Index != index {
		t.Fatalf("state index %d after applying %d", s.Index, index)
	}
	p := ttPoint{hash: s.Hash(), model: g.model.fingerprint(), webhook: s.Webhook(), members: len(s.Members()), time: g.clamped}
	// The model is only worth comparing past states with if it agrees
	// with the live ones (checked now and then: a walk is not free).
	if index%128 == 0 {
		if got := stateFingerprint(s); got != p.model {
			t.Fatalf("index %d: the live state's services differ from the generator's model", index)
		}
	}
	r.points = append(r.points, p)
	return res
}

// feed generates count events and applies them to the recorder (one by
// one) and to each machine in ms (in ApplyBatch batches of random size,
// so that batches straddle one another's versions).
func feed(t testing.TB, g *ttGen, rec *ttRecorder, count int, ms ...*Machine) {
	t.Helper()
	var pending []Entry
	var want []*Result
	flush := func() {
		for _, m := range ms {
			got := m.ApplyBatch(pending)
			for i, r := range got {
				if (r.Err != nil) != (want[i].Err != nil) || r.Index != pending[i].Index {
					t.Fatalf("index %d: ApplyBatch result %+v, one-by-one apply %+v", pending[i].Index, r, want[i])
				}
			}
		}
		pending, want = pending[:0], want[:0]
	}
	batch := 1 + g.rng.Intn(9)
	for i := 0; i < count; i++ {
		data := g.next(t)
		want = append(want, rec.apply(t, g.index, data, g))
		pending = append(pending, Entry{Index: g.index, Data: data})
		if len(pending) >= batch {
			flush()
			batch = 1 + g.rng.Intn(9)
		}
	}
	if len(pending) > 0 {
		flush()
	}
	last := rec.points[len(rec.points)-1]
	for _, m := range ms {
		if s := m.State(); s.Index != g.index || s.Hash() != last.hash {
			t.Fatalf("machine at index %d hash %.12s; recorder at %d hash %.12s", s.Index, s.Hash(), g.index, last.hash)
		}
	}
}

// ttStride spaces the indexes checked around: every one would take long.
const ttStride = 2048

// strideIndexes are indexes at and around every ttStride boundary up
// to last, plus the ends.
func strideIndexes(last uint64) []uint64 {
	var out []uint64
	add := func(i int64) {
		if i >= 0 && uint64(i) <= last {
			out = append(out, uint64(i))
		}
	}
	for b := int64(0); uint64(b) <= last+ttStride; b += ttStride {
		for d := int64(-1); d <= 1; d++ {
			add(b + d)
		}
	}
	for d := int64(0); d < 2; d++ {
		add(int64(last) - d)
		add(1 + d)
	}
	return out
}

// sampleIndexes is the given indexes plus n pseudo-random ones in
// [0, last], shuffled, without repeats.
func sampleIndexes(rng *rand.Rand, last uint64, n int, also ...uint64) []uint64 {
	seen := map[uint64]bool{}
	var out []uint64
	for _, i := range also {
		if !seen[i] {
			seen[i] = true
			out = append(out, i)
		}
	}
	for k := 0; k < n; k++ {
		i := uint64(rng.Int63n(int64(last) + 1))
		if !seen[i] {
			seen[i] = true
			out = append(out, i)
		}
	}
	rng.Shuffle(len(out), func(a, b int) { out[a], out[b] = out[b], out[a] })
	return out
}

// checkStatesAt compares m.StateAt(i) with the recorded state for every i.
func checkStatesAt(t *testing.T, what string, m *Machine, points []ttPoint, idx []uint64) {
	t.Helper()
	bad := 0
	for _, i := range idx {
		s, err := m.StateAt(i)
		if err != nil {
			t.Fatalf("%s: StateAt(%d): %v", what, i, err)
		}
		p := points[i]
		var problems []string
		if s.Index != i {
			problems = append(problems, fmt.Sprintf("index %d", s.Index))
		}
		if s.Hash() != p.hash {
			problems = append(problems, fmt.Sprintf("hash %.12s, want %.12s", s.Hash(), p.hash))
		}
		if f := stateFingerprint(s); f != p.model {
			problems = append(problems, "services differ from the model")
		}
		if s.Webhook() != p.webhook {
			problems = append(problems, fmt.Sprintf("webhook %+v, want %+v", s.Webhook(), p.webhook))
		}
		if len(s.Members()) != p.members {
			problems = append(problems, fmt.Sprintf("%d members, want %d", len(s.Members()), p.members))
		}
		if len(problems) > 0 {
			bad++
			if bad <= 10 {
				t.Errorf("%s: StateAt(%d): %s", what, i, strings.Join(problems, "; "))
			}
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d of %d past states wrong", what, bad, len(idx))
	}
}

func openMachine(t *testing.T, dir, name string) *Machine {
	t.Helper()
	h, err := log.OpenHistory(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	m := New(h, testPlugins{})
	t.Cleanup(m.Close)
	return m
}

// restoredCopy persists m's current state and restores it into a fresh
// machine, which then holds the whole history but versions only from its
// state on until WarmTimeTravel has rebuilt the older ones.
func restoredCopy(t *testing.T, m *Machine, dir, name string) *Machine {
	t.Helper()
	var buf bytes.Buffer
	if err := m.Persist(m.State(), &buf); err != nil {
		t.Fatalf("persist: %v", err)
	}
	r := openMachine(t, dir, name)
	if err := r.Restore(&buf); err != nil {
		t.Fatalf("restore: %v", err)
	}
	if r.State().Index != m.State().Index || r.State().Hash() != m.State().Hash() {
		t.Fatalf("restored state at %d hash %.12s, persisted at %d hash %.12s",
			r.State().Index, r.State().Hash(), m.State().Index, m.State().Hash())
	}
	return r
}

func TestTimeTravelStateAtMatchesEveryPastState(t *testing.T) {
	const events = 2*ttStride + 400
	dir := t.TempDir()
	g := newTTGen(1)
	rec := newTTRecorder(t, dir)
	m := openMachine(t, dir, "main.db")
	feed(t, g, rec, events, m)
	last := g.index
	rng := rand.New(rand.NewSource(2))

	t.Run("live machine", func(t *testing.T) {
		checkStatesAt(t, "live", m, rec.points, sampleIndexes(rng, last, 8, strideIndexes(last)...))
	})

	t.Run("restored machine replays from the start", func(t *testing.T) {
		r := restoredCopy(t, m, dir, "restored.db")
		// Descending first: the oldest points wait for the rebuild.
		idx := strideIndexes(last)
		sort.Slice(idx, func(a, b int) bool { return idx[a] > idx[b] })
		checkStatesAt(t, "restored, descending", r, rec.points, idx)
		checkStatesAt(t, "restored, random", r, rec.points, sampleIndexes(rng, last, 4))
		if err := r.WarmTimeTravel(); err != nil {
			t.Fatalf("WarmTimeTravel: %v", err)
		}
		checkStatesAt(t, "restored, warmed", r, rec.points, strideIndexes(last))

		// Events applied after the restore: past states on both sides of
		// the restored one.
		feed(t, g, rec, ttStride, r)
		checkStatesAt(t, "restored, applied on", r, rec.points, sampleIndexes(rng, g.index, 4, strideIndexes(g.index)...))
	})

	t.Run("restored machine warmed first", func(t *testing.T) {
		w := restoredCopy(t, m, dir, "warmed.db")
		if err := w.WarmTimeTravel(); err != nil {
			t.Fatalf("WarmTimeTravel: %v", err)
		}
		checkStatesAt(t, "warmed", w, rec.points[:last+1], sampleIndexes(rng, last, 2, strideIndexes(last)...))
	})

	// A past state is a value: querying it changed nothing live.
	if s := m.State(); s.Index != last || s.Hash() != rec.points[last].hash {
		t.Errorf("live state moved to %d (%.12s) after time travel", s.Index, s.Hash())
	}
}

func TestTimeTravelAcrossRestartAndForeignSnapshot(t *testing.T) {
	dir := t.TempDir()
	g := newTTGen(5)
	rec := newTTRecorder(t, dir)
	path := filepath.Join(dir, "node.db")
	h, err := log.OpenHistory(path)
	if err != nil {
		t.Fatal(err)
	}
	m := New(h, testPlugins{})
	feed(t, g, rec, 1500, m)
	var snap bytes.Buffer
	if err := m.Persist(m.State(), &snap); err != nil {
		t.Fatal(err)
	}
	snapIndex := g.index
	// The log goes on after the snapshot, as Raft's does.
	var tail []Entry
	for i := 0; i < 300; i++ {
		data := g.next(t)
		rec.apply(t, g.index, data, g)
		tail = append(tail, Entry{Index: g.index, Data: data})
	}
	m.ApplyBatch(tail)
	m.Close()
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}

	// A restart: Raft restores the node's own snapshot over the same
	// file, then re-applies the log tail.
	h, err = log.OpenHistory(path)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	r := New(h, testPlugins{})
	defer r.Close()
	if err := r.Restore(bytes.NewReader(snap.Bytes())); err != nil {
		t.Fatal(err)
	}
	if from, _ := h.VersionsFrom(); from != 0 {
		t.Errorf("after reloading its own snapshot the versions start at %d, want 0 (kept)", from)
	}
	if last, _ := h.Last(); last != snapIndex {
		t.Errorf("history ends at %d after the reload, want the snapshot's %d (the tail is re-applied)", last, snapIndex)
	}
	r.ApplyBatch(tail)
	rng := rand.New(rand.NewSource(6))
	checkStatesAt(t, "restarted", r, rec.points, sampleIndexes(rng, g.index, 40, strideIndexes(g.index)...))

	// Another cluster's snapshot (a restore from a backup): nothing of
	// the old versions may leak into the new past.
	g2 := newTTGen(7)
	rec2 := newTTRecorder(t, t.TempDir())
	other := openMachine(t, dir, "other.db")
	feed(t, g2, rec2, 700, other)
	var osnap bytes.Buffer
	if err := other.Persist(other.State(), &osnap); err != nil {
		t.Fatal(err)
	}
	if err := r.Restore(&osnap); err != nil {
		t.Fatal(err)
	}
	checkStatesAt(t, "foreign snapshot", r, rec2.points, sampleIndexes(rng, g2.index, 40, strideIndexes(g2.index)...))
}

func TestRestoreEventPutsBackThePast(t *testing.T) {
	dir := t.TempDir()
	g := newTTGen(11)
	rec := newTTRecorder(t, dir)
	m := openMachine(t, dir, "main.db")
	feed(t, g, rec, 900, m)
	rng := rand.New(rand.NewSource(12))
	for round := 0; round < 4; round++ {
		cur := m.State()
		at := uint64(rng.Int63n(int64(cur.Index)))
		past, err := m.StateAt(at)
		if err != nil {
			t.Fatal(err)
		}
		// Odd rounds as the leader does it: planned, so the apply uses
		// the planned entities instead of decoding the payload.
		plan := RestorePayload
		if round%2 == 1 {
			plan = m.PlanRestore
		}
		payload, n, err := plan(cur, past)
		if err != nil {
			t.Fatal(err)
		}
		data, err := log.Encode(&log.Event{Type: log.TypeRestore, Time: rec.m.State().lastTime + 1, Op: "restore", Payload: payload})
		if err != nil {
			t.Fatal(err)
		}
		g.index++
		// The recorder applies it too, so later StateAt checks have a
		// point for it.
		res := rec.m.Apply(g.index, data)
		if got := m.Apply(g.index, data); got.Err != nil || res.Err != nil {
			t.Fatalf("restore to %d rejected: %+v %+v", at, got.Err, res.Err)
		}
		s := m.State()
		// Services are the only entities: the whole content hash must be
		// the past one, and so the services themselves.
		if s.Hash() != past.Hash() || stateFingerprint(s) != stateFingerprint(past) {
			t.Fatalf("round %d: after restoring to %d (%d entities) the state is not the one at %d", round, at, n, at)
		}
		rec.points = append(rec.points, ttPoint{hash: s.Hash(), model: stateFingerprint(s), webhook: s.Webhook(),
			members: len(s.Members()), time: s.lastTime})
		// The generator goes on from the restored services.
		g.model, g.names, g.ids = newTTModel(), map[string]string{}, nil
		s.Walk(Services, "", func(e *Entity) bool {
			g.set(e.ID, e.Data()["name"].(string), int(e.Data()["retries"].(float64)))
			return true
		})
		g.clamped = max(g.clamped, s.lastTime)
		feed(t, g, rec, 150, m)
	}
	// Past states across the restores, live and rebuilt from a snapshot
	// (whose warm-up replays the restore events).
	idx := sampleIndexes(rng, g.index, 60, strideIndexes(g.index)...)
	checkStatesAt(t, "live", m, rec.points, idx)
	checkStatesAt(t, "restored", restoredCopy(t, m, dir, "copy.db"), rec.points, idx)
}

// wantIndexAt is the last index whose recorded time is at or before ts.
func wantIndexAt(points []ttPoint, ts int64) uint64 {
	var found uint64
	for i := 1; i < len(points); i++ {
		if points[i].time <= ts {
			found = uint64(i)
		}
	}
	return found
}

func TestTimeTravelIndexAtWithOutOfOrderTimes(t *testing.T) {
	dir := t.TempDir()
	g := newTTGen(3)
	rec := newTTRecorder(t, dir)
	m := openMachine(t, dir, "main.db")
	feed(t, g, rec, 600, m)
	last := g.index

	// The history records every event with its clamped time: never
	// decreasing, and never earlier than the time the leader stamped.
	var prev int64
	err := m.History().Range(1, 0, func(r *log.Record) bool {
		i := r.Event.Index
		if i < 1 || i > last {
			t.Errorf("history holds index %d beyond %d", i, last)
			return false
		}
		if r.Event.Time != rec.points[i].time {
			t.Errorf("index %d recorded at time %d, want the clamped %d", i, r.Event.Time, rec.points[i].time)
		}
		if r.Event.Time < prev {
			t.Errorf("index %d: recorded time goes back from %d to %d", i, prev, r.Event.Time)
		}
		prev = r.Event.Time
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	// The generator did stamp events out of order, or the test is moot.
	if g.backwards < 20 {
		t.Fatalf("only %d events stamped out of order", g.backwards)
	}

	var probes []int64
	for i := 1; i < len(rec.points); i++ {
		ts := rec.points[i].time
		probes = append(probes, ts-1, ts, ts+1)
	}
	probes = append(probes, 0, rec.points[1].time-1_000_000, rec.points[last].time+1_000_000)
	check := func(what string, m *Machine) {
		bad := 0
		for _, ts := range probes {
			got, err := m.IndexAt(ts)
			if err != nil {
				t.Fatalf("%s: IndexAt(%d): %v", what, ts, err)
			}
			if want := wantIndexAt(rec.points, ts); got != want {
				bad++
				if bad <= 10 {
					t.Errorf("%s: IndexAt(%d) = %d, want %d", what, ts, got, want)
				}
			}
		}
		if bad > 0 {
			t.Errorf("%s: %d of %d IndexAt answers wrong", what, bad, len(probes))
		}
	}
	check("live", m)
	check("restored", restoredCopy(t, m, dir, "restored.db"))

	empty := openMachine(t, dir, "empty.db")
	if got, err := empty.IndexAt(rec.points[last].time); err != nil || got != 0 {
		t.Errorf("IndexAt on an empty history = %d, %v; want 0", got, err)
	}
}

func TestTimeTravelDiffAndChangedFields(t *testing.T) {
	const (
		sa = "aaaaaaaa-0000-4000-8000-000000000001"
		sb = "bbbbbbbb-0000-4000-8000-000000000002"
		sc = "cccccccc-0000-4000-8000-000000000003"
		sd = "dddddddd-0000-4000-8000-000000000004"
		ca = "aaaaaaaa-0000-4000-8000-0000000000c1"
	)
	f := &Fold{Plugins: testPlugins{}}
	at := func(s *State, sec int64, cmd *Command) *State {
		t.Helper()
		next, _, err := f.Apply(s, s.Index+1, sec*1e9, cmd)
		if err != nil {
			t.Fatalf("apply %s %s: %v (%v)", cmd.Op, cmd.Key, err, err.Fields)
		}
		return next
	}
	a := Empty()
	a = at(a, 100, &Command{Op: "create", Kind: Services, NewID: sa, Body: map[string]any{"name": "alpha", "host": "a.test", "retries": 5.0}})
	a = at(a, 100, &Command{Op: "create", Kind: Services, NewID: sb, Body: map[string]any{"name": "beta", "host": "b.test", "tags": []any{"x"}}})
	a = at(a, 100, &Command{Op: "create", Kind: Services, NewID: sd, Body: map[string]any{"name": "delta", "host": "d.test"}})
	a = at(a, 100, &Command{Op: "create", Kind: Consumers, NewID: ca, Body: map[string]any{"username": "carol"}})

	b := at(a, 200, &Command{Op: "update", Kind: Services, Key: sa, Body: map[string]any{"retries": 7.0, "host": "a2.test"}})
	b = at(b, 200, &Command{Op: "delete", Kind: Services, Key: sb})
	b = at(b, 200, &Command{Op: "create", Kind: Services, NewID: sc, Body: map[string]any{"name": "gamma", "host": "c.test"}})
	// Rewritten with the same content later: only updated_at moves.
	b = at(b, 300, &Command{Op: "update", Kind: Services, Key: sd, Body: map[string]any{"host": "d.test"}})
	if a.Get(Services, sd).Data()["updated_at"] == b.Get(Services, sd).Data()["updated_at"] {
		t.Fatal("the rewrite did not move updated_at; the example tests nothing")
	}

	got := []string{}
	for _, d := range Diff(a, b, []string{Services, Consumers}) {
		got = append(got, d.Kind+" "+d.ID[:8]+" "+d.Op())
		switch d.Op() {
		case "created":
			if d.Before != nil || d.After == nil || d.After.ID != d.ID {
				t.Errorf("created %s: before %v after %v", d.ID, d.Before, d.After)
			}
		case "deleted":
			if d.After != nil || d.Before == nil || d.Before.ID != d.ID {
				t.Errorf("deleted %s: before %v after %v", d.ID, d.Before, d.After)
			}
		case "updated":
			if fields := ChangedFields(d.Before.Data(), d.After.Data()); !reflect.DeepEqual(fields, []string{"host", "retries"}) {
				t.Errorf("updated %s: changed fields %v, want [host retries]", d.ID, fields)
			}
		}
	}
	want := []string{"services aaaaaaaa updated", "services bbbbbbbb deleted", "services cccccccc created"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Diff(a, b) = %v, want %v", got, want)
	}
	// The other way round, creations and deletions swap.
	got = got[:0]
	for _, d := range Diff(b, a, []string{Services}) {
		got = append(got, d.ID[:8]+" "+d.Op())
	}
	if want := []string{"aaaaaaaa updated", "bbbbbbbb created", "cccccccc deleted"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Diff(b, a) = %v, want %v", got, want)
	}
	// Only the kinds asked for; nothing between a state and itself.
	if d := Diff(a, b, []string{Consumers}); len(d) != 0 {
		t.Errorf("consumers did not change, Diff = %v", d)
	}
	if d := Diff(b, b, Kinds); len(d) != 0 {
		t.Errorf("Diff of a state with itself = %v", d)
	}

	// ChangedFields: added, removed and changed fields, sorted; timestamps
	// never count.
	before := map[string]any{"id": sa, "name": "x", "retries": 5.0, "tags": []any{"a"}, "gone": true,
		"created_at": 1.0, "updated_at": 1.0}
	after := map[string]any{"id": sa, "name": "x", "retries": 6.0, "tags": []any{"a", "b"}, "new": nil,
		"created_at": 2.0, "updated_at": 3.0}
	if got := ChangedFields(before, after); !reflect.DeepEqual(got, []string{"gone", "new", "retries", "tags"}) {
		t.Errorf("ChangedFields = %v, want [gone new retries tags]", got)
	}
	if got := ChangedFields(before, before); len(got) != 0 {
		t.Errorf("ChangedFields of identical data = %v", got)
	}
	onlyTimes := map[string]any{"id": sa, "name": "x", "retries": 5.0, "tags": []any{"a"}, "gone": true,
		"created_at": 9.0, "updated_at": 9.0}
	if got := ChangedFields(before, onlyTimes); len(got) != 0 {
		t.Errorf("ChangedFields with only timestamps changed = %v", got)
	}
}

// A large event's versions are stored as a run of their own, and time
// travel reads them with the rest: the randomized past-state check again,
// with every batch (two changes) counted as large.
func TestTimeTravelReadsBulkVersionRuns(t *testing.T) {
	defer func(n int) { versionRunAbove = n }(versionRunAbove)
	versionRunAbove = 2
	big := []Change{{Kind: Consumers, ID: id1}, {Kind: Consumers, ID: id2}}
	vs, err := versionsOf(&log.Event{Type: log.TypeBatch, Index: 7}, Empty(), big, nil)
	if err != nil || len(vs) != 2 || !vs[0].ByIndex || !vs[1].ByIndex {
		t.Fatalf("versions of a large batch: %+v, %v", vs, err)
	}
	vs, _ = versionsOf(&log.Event{Type: log.TypeBatch, Index: 8}, Empty(), big[:1], nil)
	if len(vs) != 1 || vs[0].ByIndex {
		t.Fatalf("versions of a small batch: %+v", vs)
	}
	TestTimeTravelStateAtMatchesEveryPastState(t)
}
