package fsm

import (
	"bytes"
	"fmt"
	"math/rand"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/gatehouse-gw/gatehouse/fsm/schema"
	"github.com/gatehouse-gw/gatehouse/log"
)

// testPlugins is a one-plugin registry for fold tests.
type testPlugins struct{}

type testDef struct{}

func (testPlugins) Plugin(name string) (PluginDef, bool) {
	if name != "demo" {
		return nil, false
	}
	return testDef{}, true
}

func (testDef) ConfigSchema() *schema.Schema {
	return &schema.Schema{Fields: []*schema.Field{
		{Name: "minute", Type: schema.Number},
		{Name: "policy", Type: schema.String, Default: "local"},
		{Name: "nested", Type: schema.Record, Fields: []*schema.Field{{Name: "a", Type: schema.Integer, Default: 1.0}}},
	}}
}

func (testDef) Compile(c map[string]any) (any, schema.Errors) {
	if c["minute"] == nil {
		return nil, schema.Errors{"minute": "required field missing"}
	}
	return c["minute"], nil
}

const (
	id1 = "11111111-1111-4111-8111-111111111111"
	id2 = "22222222-2222-4222-8222-222222222222"
	id3 = "33333333-3333-4333-8333-333333333333"
)

func apply(t *testing.T, f *Fold, s *State, cmd *Command) *State {
	t.Helper()
	next, _, err := f.Apply(s, s.Index+1, 1_700_000_000_000_000_000, cmd)
	if err != nil {
		t.Fatalf("apply %s %s: %v (%v)", cmd.Op, cmd.Kind, err, err.Fields)
	}
	return next
}

func TestServiceDefaultsAndURLShorthand(t *testing.T) {
	f := &Fold{Plugins: testPlugins{}}
	s := apply(t, f, Empty(), &Command{Op: "create", Kind: Services, NewID: id1,
		Body: map[string]any{"name": "example", "url": "https://example.test:8443/api"}})
	e := s.Get(Services, id1)
	if e == nil {
		t.Fatal("service not stored")
	}
	want := map[string]any{"protocol": "https", "host": "example.test", "port": 8443.0, "path": "/api",
		"retries": 5.0, "connect_timeout": 60000.0, "enabled": true, "tags": nil, "created_at": 1.7e9}
	for k, v := range want {
		if e.Data()[k] != v {
			t.Errorf("%s = %v, want %v", k, e.Data()[k], v)
		}
	}
	if s.Find(Services, "example") != e {
		t.Error("lookup by name failed")
	}
	if e.View.(*Service).Port != 8443 {
		t.Error("view not built")
	}
}

func TestURLShorthandTable(t *testing.T) {
	cases := []struct {
		url, proto, host string
		port             float64
		path             any
	}{
		{"http://service.test/", "http", "service.test", 80, "/"},
		{"https://service.test/", "https", "service.test", 443, "/"},
		{"http://example.test:443", "http", "example.test", 443, nil},
		{"https://example2.test:80/", "https", "example2.test", 80, "/"},
		{"http://example2.test", "http", "example2.test", 80, nil},
	}
	for _, c := range cases {
		got, err := ParseServiceURL(c.url)
		if err != nil {
			t.Fatalf("%s: %v", c.url, err)
		}
		if got["protocol"] != c.proto || got["host"] != c.host || got["port"] != c.port || got["path"] != c.path {
			t.Errorf("%s: got %v", c.url, got)
		}
	}
	for _, bad := range []string{"", " ", "invalid url"} {
		if _, err := ParseServiceURL(bad); err == nil {
			t.Errorf("%q: expected an error", bad)
		}
	}
}

func TestUniqueAndReferences(t *testing.T) {
	f := &Fold{Plugins: testPlugins{}}
	s := apply(t, f, Empty(), &Command{Op: "create", Kind: Consumers, NewID: id1, Body: map[string]any{"username": "bob"}})
	_, _, err := f.Apply(s, 2, 0, &Command{Op: "create", Kind: Consumers, NewID: id2, Body: map[string]any{"username": "bob"}})
	if err == nil || err.Status != 409 || err.Message != `UNIQUE violation detected on '{username="bob"}'` {
		t.Fatalf("duplicate username: %+v", err)
	}
	_, _, err = f.Apply(s, 2, 0, &Command{Op: "create", Kind: Routes, NewID: id2,
		Body: map[string]any{"paths": []any{"/x"}, "service": map[string]any{"name": "nope"}}})
	if err == nil || err.Code != 13 {
		t.Fatalf("unresolved service name: %+v", err)
	}
	_, _, err = f.Apply(s, 2, 0, &Command{Op: "create", Kind: Routes, NewID: id2, Body: map[string]any{}})
	if err == nil || err.Code != 2 ||
		err.Message != "schema violation (must set one of 'methods', 'hosts', 'headers', 'paths', 'snis' when 'protocols' is 'https')" {
		t.Fatalf("empty route: %+v", err)
	}
}

func TestCascadeAndRestrict(t *testing.T) {
	f := &Fold{Plugins: testPlugins{}}
	s := apply(t, f, Empty(), &Command{Op: "create", Kind: Services, NewID: id1, Body: map[string]any{"host": "a.test"}})
	s = apply(t, f, s, &Command{Op: "create", Kind: Routes, NewID: id2,
		Parent: &Parent{Kind: Services, Key: id1, Field: "service"}, Body: map[string]any{"paths": []any{"/a"}}})
	s = apply(t, f, s, &Command{Op: "create", Kind: Plugins, NewID: id3,
		Body: map[string]any{"name": "demo", "route": map[string]any{"id": id2}, "config": map[string]any{"minute": 5.0}}})
	if _, _, err := f.Apply(s, 9, 0, &Command{Op: "delete", Kind: Services, Key: id1}); err == nil || err.Code != 4 {
		t.Fatalf("deleting a referenced service must fail: %+v", err)
	}
	next, changes, err := f.Apply(s, 9, 0, &Command{Op: "delete", Kind: Routes, Key: id2})
	if err != nil {
		t.Fatal(err)
	}
	if next.Get(Plugins, id3) != nil || len(changes) != 2 {
		t.Fatalf("route delete must cascade to its plugin; changes=%d", len(changes))
	}
	if s.Get(Plugins, id3) == nil {
		t.Fatal("older state must be unchanged")
	}
}

func TestPluginPatchDeepMerges(t *testing.T) {
	f := &Fold{Plugins: testPlugins{}}
	s := apply(t, f, Empty(), &Command{Op: "create", Kind: Plugins, NewID: id1,
		Body: map[string]any{"name": "demo", "config": map[string]any{"minute": 5.0, "policy": "x"}}})
	s = apply(t, f, s, &Command{Op: "update", Kind: Plugins, Key: id1, Body: map[string]any{"config": map[string]any{"minute": 7.0}}})
	cfg := s.Get(Plugins, id1).Data()["config"].(map[string]any)
	if cfg["minute"] != 7.0 || cfg["policy"] != "x" || cfg["nested"].(map[string]any)["a"] != 1.0 {
		t.Fatalf("config after patch: %v", cfg)
	}
	if s.Get(Plugins, id1).View.(*Plugin).Compiled != 7.0 {
		t.Fatal("compiled config not rebuilt")
	}
	_, _, err := f.Apply(s, 9, 0, &Command{Op: "create", Kind: Plugins, NewID: id2, Body: map[string]any{"name": "demo", "config": map[string]any{"minute": 1.0}}})
	if err == nil || err.Status != 409 {
		t.Fatalf("same plugin at same scope must conflict: %+v", err)
	}
	_, _, err = f.Apply(s, 9, 0, &Command{Op: "create", Kind: Plugins, NewID: id2, Body: map[string]any{"name": "nope"}})
	if err == nil || err.Fields.(schema.Errors)["name"] != "plugin 'nope' not enabled; add it to the 'plugins' configuration property" {
		t.Fatalf("unknown plugin: %+v", err)
	}
}

// testMachine returns a machine over a fresh history, closed with the
// test.
func testMachine(t *testing.T) *Machine {
	t.Helper()
	h, err := log.OpenHistory(filepath.Join(t.TempDir(), "h.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	m := New(h, testPlugins{})
	t.Cleanup(m.Close) // first: its queued history commits
	return m
}

// applyCmd applies cmd to m as the entity event at index, stamped ts.
func applyCmd(m *Machine, index uint64, ts int64, cmd *Command) *Result {
	payload, _ := EncodeCommand(cmd)
	data, _ := log.Encode(&log.Event{Type: log.TypeEntity, Time: ts, Op: cmd.Op, Entity: cmd.Kind, Payload: payload})
	return m.Apply(index, data)
}

// roundTrip restores m's current state, persisted, into a fresh machine.
func roundTrip(t *testing.T, m *Machine) *Machine {
	t.Helper()
	var buf bytes.Buffer
	if err := m.Persist(m.State(), &buf); err != nil {
		t.Fatal(err)
	}
	m2 := testMachine(t)
	if err := m2.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	return m2
}

func TestMachineSnapshotRoundTrip(t *testing.T) {
	m := testMachine(t)
	for i, cmd := range []*Command{
		{Op: "create", Kind: Services, NewID: id1, Body: map[string]any{"host": "a.test", "name": "svc"}},
		{Op: "create", Kind: Consumers, NewID: id2, Body: map[string]any{"username": "luka"}},
		{Op: "create", Kind: Consumers, NewID: id3, Body: map[string]any{"username": "luka"}}, // rejected
	} {
		res := applyCmd(m, uint64(i+1), 1, cmd)
		if (res.Err != nil) != (i == 2) {
			t.Fatalf("event %d: unexpected result %+v", i, res.Err)
		}
	}
	if rec, _ := m.History().Get(3); rec == nil || rec.Outcome != "rejected" {
		t.Fatalf("rejected event must be in the history: %+v", rec)
	}
	m2 := roundTrip(t, m)
	h2 := m2.History()
	s := m2.State()
	if s.Index != 3 || s.Find(Services, "svc") == nil || s.Find(Consumers, "luka") == nil {
		t.Fatalf("restored state incomplete: index %d", s.Index)
	}
	// The restore hashes the snapshot's bytes as they are: the same
	// configuration hash as the state written.
	if s.Hash() != m.State().Hash() {
		t.Fatalf("restored hash %s, written %s", s.Hash(), m.State().Hash())
	}
	if last, _ := h2.Last(); last != 3 {
		t.Fatalf("restored history last index %d", last)
	}
}

// The config hash depends on what is stored, not on the order it arrived
// in, and returns to its old value when a change is undone.
func TestStateHashIsOrderIndependent(t *testing.T) {
	f := &Fold{Plugins: testPlugins{}}
	a := &Command{Op: "create", Kind: Consumers, NewID: id1, Body: map[string]any{"username": "a"}}
	b := &Command{Op: "create", Kind: Consumers, NewID: id2, Body: map[string]any{"username": "b"}}
	s1 := apply(t, f, apply(t, f, Empty(), a), b)
	s2 := apply(t, f, apply(t, f, Empty(), b), a)
	if s1.Hash() != s2.Hash() {
		t.Fatal("same entities, different hashes")
	}
	one := apply(t, f, Empty(), a)
	back := apply(t, f, s1, &Command{Op: "delete", Kind: Consumers, Key: id2})
	if back.Hash() != one.Hash() || back.Hash() == s1.Hash() {
		t.Fatal("hash does not follow the content")
	}
}

func TestConsumerScopedPluginCount(t *testing.T) {
	f := &Fold{Plugins: testPlugins{}}
	s := apply(t, f, Empty(), &Command{Op: "create", Kind: Consumers, NewID: id1, Body: map[string]any{"username": "c"}})
	s = apply(t, f, s, &Command{Op: "create", Kind: Plugins, NewID: id2,
		Body: map[string]any{"name": "demo", "config": map[string]any{"minute": 1.0}}})
	if s.HasConsumerPlugins() {
		t.Fatal("a global plugin is not consumer-scoped")
	}
	s = apply(t, f, s, &Command{Op: "create", Kind: Plugins, NewID: id3, Parent: &Parent{Kind: Consumers, Key: "c", Field: "consumer"},
		Body: map[string]any{"name": "demo", "config": map[string]any{"minute": 2.0}}})
	if !s.HasConsumerPlugins() {
		t.Fatal("consumer-scoped plugin not counted")
	}
	// Deleting the consumer cascades to its plugin and the count follows.
	s = apply(t, f, s, &Command{Op: "delete", Kind: Consumers, Key: "c"})
	if s.HasConsumerPlugins() || s.Get(Plugins, id3) != nil {
		t.Fatal("cascade did not remove the consumer's plugin from the count")
	}
}

// The content hash must not depend on how a value was typed in memory: a
// folded entity (defaults may be ints, lists []string) and the same entity
// decoded from a snapshot (float64s, []any) are one entity.
func TestEntityHashIgnoresInMemoryTypes(t *testing.T) {
	folded := &Entity{Kind: Plugins, data: map[string]any{"id": "p", "config": map[string]any{
		"minute": 5, "limit": int64(-3), "big": uint32(1 << 31), "ratio": 0.5, "names": []string{"a", "b"},
		"headers": map[string]string{"x": "y"}}, "created_at": 1764577304.0}}
	decoded := &Entity{Kind: Plugins, data: map[string]any{"id": "p", "config": map[string]any{
		"minute": 5.0, "limit": -3.0, "big": float64(1 << 31), "ratio": 0.5, "names": []any{"a", "b"},
		"headers": map[string]any{"x": "y"}}, "created_at": int64(1764577304)}}
	if a, b := entityHash(folded), entityHash(decoded); a != b {
		t.Errorf("hash of the folded entity %x differs from the decoded one %x", a[:6], b[:6])
	}
	other := &Entity{Kind: Plugins, data: map[string]any{"id": "p", "config": map[string]any{"minute": 6.0}}}
	if entityHash(other) == entityHash(decoded) {
		t.Error("different data, same hash")
	}
}

func TestIsUUID(t *testing.T) {
	for s, want := range map[string]bool{
		"6a1f6d2c-5b0e-4c3e-9a57-2f0d1f3b7c11": true,
		"6A1F6D2C-5B0E-4C3E-9A57-2F0D1F3B7C11": true,
		"6a1f6d2c-5b0e-4c3e-9a57-2f0d1f3b7c1":  false,
		"6a1f6d2c-5b0e-4c3e-9a57-2f0d1f3b7c1g": false,
		"6a1f6d2c05b0e-4c3e-9a57-2f0d1f3b7c11": false,
		"6a1f6d2c-5b0e-4c3e-9a57-2f0d1f3b-c11": false,
		"{a1f6d2c-5b0e-4c3e-9a57-2f0d1f3b7c1}": false,
		"":                                     false,
	} {
		if IsUUID(s) != want {
			t.Errorf("IsUUID(%q) = %v, want %v", s, !want, want)
		}
	}
}

// A published state never changes: folds from it (several at once, as
// the FSM and a time-travel query do) write to their own copies, and a
// batch's cascading delete walks a view its own writes do not disturb.
// Run with -race: readers of the base run during the folds.
func TestStatesStayImmutable(t *testing.T) {
	f := &Fold{Plugins: testPlugins{}}
	base := Empty()
	var cmds []*Command
	for i := range 300 {
		id := fmt.Sprintf("%08d-0000-4000-8000-000000000000", i)
		cmds = append(cmds, &Command{Op: "create", Kind: Consumers, NewID: id,
			Body: map[string]any{"username": fmt.Sprintf("c%d", i)}})
		cmds = append(cmds, &Command{Op: "create", Kind: KeyAuths, NewID: fmt.Sprintf("%08d-0000-4000-8000-000000000001", i),
			Body: map[string]any{"key": fmt.Sprintf("k%d", i), "consumer": map[string]any{"id": id}}})
	}
	base, _, err := f.ApplyAll(base, 1, 1_700_000_000_000_000_000, cmds)
	if err != nil {
		t.Fatal(err)
	}
	want := base.Hash()
	count := func(s *State) (n int) {
		s.Walk(KeyAuths, "", func(*Entity) bool { n++; return true })
		return n
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if n := count(base); n != 300 {
				t.Errorf("base has %d keys during folds", n)
				return
			}
		}
	}()
	var folds sync.WaitGroup
	for w := range 2 {
		folds.Add(1)
		go func() {
			defer folds.Done()
			// Delete every other consumer, cascading to its key, in one
			// batch.
			var batch []*Command
			for i := w; i < 300; i += 2 {
				batch = append(batch, &Command{Op: "delete", Kind: Consumers, Key: fmt.Sprintf("%08d-0000-4000-8000-000000000000", i)})
			}
			next, _, err := f.ApplyAll(base, 2, 1_700_000_000_000_000_001, batch)
			if err != nil {
				t.Error(err)
				return
			}
			if n := count(next); n != 150 {
				t.Errorf("fold %d left %d keys, want 150", w, n)
			}
		}()
	}
	folds.Wait()
	close(stop)
	wg.Wait()
	if base.Hash() != want || count(base) != 300 || base.Get(Consumers, "00000000-0000-4000-8000-000000000000") == nil {
		t.Fatal("the base state changed")
	}
}

// A published entity keeps only its encoding; Data decodes the same
// fields the fold produced, a fresh map each call, and Tags needs no
// decoding. Checked for a folded, a restored and a time-travelled entity.
func TestPublishedEntitiesKeepOnlyTheirEncoding(t *testing.T) {
	m := testMachine(t)
	f := &Fold{Plugins: testPlugins{}}
	cmd := &Command{Op: "create", Kind: Services, NewID: id1,
		Body: map[string]any{"host": "a.test", "name": "svc", "tags": []any{"blue", "green"}}}
	folded := apply(t, f, Empty(), cmd).Get(Services, id1).Data()
	if res := applyCmd(m, 1, 1_700_000_000_000_000_000, cmd); res.Err != nil {
		t.Fatal(res.Err)
	}
	check := func(name string, e *Entity) {
		t.Helper()
		if e == nil || e.data != nil || e.enc == nil {
			t.Fatalf("%s: entity %v should hold only its encoding", name, e)
		}
		got := e.Data()
		if fmt.Sprint(got) != fmt.Sprint(folded) {
			t.Errorf("%s: Data() = %v, folded %v", name, got, folded)
		}
		got["host"] = "changed"
		if e.Data()["host"] != "a.test" {
			t.Errorf("%s: changing Data()'s map changed the entity", name)
		}
		if fmt.Sprint(e.Tags()) != "[blue green]" || !m.State().Tagged("green", Services, id1) {
			t.Errorf("%s: tags %v", name, e.Tags())
		}
	}
	check("folded", m.State().Get(Services, id1))
	if res := applyCmd(m, 2, 1_700_000_000_000_000_000, &Command{Op: "create", Kind: Routes, NewID: id2,
		Body: map[string]any{"name": "r", "paths": []any{"/r"}, "service": map[string]any{"id": id1}}}); res.Err != nil {
		t.Fatal(res.Err)
	}

	m2 := roundTrip(t, m)
	check("restored", m2.State().Get(Services, id1))
	// The restore builds its indexes in bulk: every one answers as the
	// folded state's does.
	rs := m2.State()
	if rs.Find(Routes, "r") == nil || rs.Find(Services, "svc") == nil || !rs.HasChildren(Services, id1, Routes) ||
		rs.Hash() != m.State().Hash() {
		t.Errorf("restored indexes differ: route by name %v, service by name %v, children %v, hash %s vs %s",
			rs.Find(Routes, "r"), rs.Find(Services, "svc"), rs.HasChildren(Services, id1, Routes), rs.Hash(), m.State().Hash())
	}

	if res := applyCmd(m, 3, 1_700_000_000_000_000_001, &Command{Op: "update", Kind: Services, Key: id1,
		Body: map[string]any{"host": "b.test"}}); res.Err != nil {
		t.Fatal(res.Err)
	}
	past, err := m.StateAt(2)
	if err != nil {
		t.Fatal(err)
	}
	check("past", past.Get(Services, id1))
}

// snapshotHeader decodes the header of a Persist stream.
func snapshotHeader(t *testing.T, b []byte) snapHeader {
	t.Helper()
	var hd snapHeader
	if err := msgpack.NewDecoder(bytes.NewReader(b)).Decode(&hd); err != nil {
		t.Fatal(err)
	}
	return hd
}

// applyMember applies a member event at index.
func applyMember(t *testing.T, m *Machine, index uint64, mb Member) {
	t.Helper()
	payload, err := EncodeMember(mb)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := log.Encode(&log.Event{Type: log.TypeMember, Time: int64(index), Op: "update", Entity: "member", Payload: payload})
	if res := m.Apply(index, data); res.Err != nil {
		t.Fatal(res.Err)
	}
}

// While one member runs a build that reads only version 2 (its member
// record has no snapshot version), snapshots are written in version 2,
// which this build still restores, backups included. Once every member
// reads version 3, they are written in 3.
func TestSnapshotVersionFollowsTheOldestMember(t *testing.T) {
	m := testMachine(t)
	for i, cmd := range []*Command{
		{Op: "create", Kind: Services, NewID: id1, Body: map[string]any{"host": "a.test", "name": "svc"}},
		{Op: "create", Kind: Routes, NewID: id2, Body: map[string]any{"paths": []any{"/a"}, "service": map[string]any{"id": id1}}},
	} {
		if res := applyCmd(m, uint64(i+1), 1, cmd); res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	applyMember(t, m, 3, Member{ID: "new", Admin: "127.0.0.1:1", Snapshot: SnapshotVersion})
	applyMember(t, m, 4, Member{ID: "old", Admin: "127.0.0.1:2"})
	var v2 bytes.Buffer
	if err := m.Persist(m.State(), &v2); err != nil {
		t.Fatal(err)
	}
	if hd := snapshotHeader(t, v2.Bytes()); hd.Version != 2 {
		t.Fatalf("with a member that reads version 2, the snapshot is version %d", hd.Version)
	}
	if err := VerifyBackup(bytes.NewReader(v2.Bytes()), int64(v2.Len())); err != nil {
		t.Fatalf("a version 2 backup must verify: %v", err)
	}
	m2 := testMachine(t)
	if err := m2.Restore(&v2); err != nil {
		t.Fatal(err)
	}
	s := m2.State()
	if s.Hash() != m.State().Hash() || !s.HasChildren(Services, id1, Routes) || s.Find(Services, "svc") == nil {
		t.Fatalf("version 2 restore: hash %s want %s, children %v", s.Hash(), m.State().Hash(), s.HasChildren(Services, id1, Routes))
	}

	applyMember(t, m, 5, Member{ID: "old", Admin: "127.0.0.1:2", Snapshot: SnapshotVersion})
	m3 := roundTrip(t, m)
	var v3 bytes.Buffer
	if err := m.Persist(m.State(), &v3); err != nil {
		t.Fatal(err)
	}
	if hd := snapshotHeader(t, v3.Bytes()); hd.Version != SnapshotVersion {
		t.Fatalf("once every member reads version %d, the snapshot is version %d", SnapshotVersion, hd.Version)
	}
	if m3.State().Hash() != m.State().Hash() {
		t.Fatalf("version %d restore: hash %s want %s", SnapshotVersion, m3.State().Hash(), m.State().Hash())
	}
}

// sortEntityKeys must order keys exactly as a stable sort does, whether
// the input is a snapshot's few ascending runs (the fast path) or not.
func TestSortEntityKeysMatchesAStableSort(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for round := range 500 {
		var ents []entityKey
		runs := rng.Intn(80) + 1
		for r := range runs {
			// Ascending runs with distinct prefixes, in shuffled order,
			// sometimes overlapping or with a duplicate.
			prefix := fmt.Sprintf("kind%02d\x00", rng.Intn(runs+3))
			n := rng.Intn(20)
			for i := range n {
				key := fmt.Sprintf("%s%04d", prefix, i*3+rng.Intn(3))
				if round%5 == 0 && rng.Intn(10) == 0 {
					key = fmt.Sprintf("kind%02d\x00%04d", rng.Intn(3), rng.Intn(5))
				}
				ents = append(ents, entityKey{key: key, e: &Entity{ID: fmt.Sprint(r, "/", i)}})
			}
		}
		want := slices.Clone(ents)
		slices.SortStableFunc(want, func(a, b entityKey) int { return strings.Compare(a.key, b.key) })
		got := sortEntityKeys(slices.Clone(ents))
		if len(got) != len(want) {
			t.Fatalf("round %d: %d keys out of %d", round, len(got), len(want))
		}
		for i := range want {
			if got[i].key != want[i].key || got[i].e != want[i].e {
				t.Fatalf("round %d: at %d got %q (%s), want %q (%s)", round, i, got[i].key, got[i].e.ID, want[i].key, want[i].e.ID)
			}
		}
	}
}

func TestSortInHalvesSorts(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	for _, n := range []int{0, 1, 5, 1<<16 - 1, 1 << 16, 1<<16 + 7, 200_001} {
		xs := make([]int, n)
		for i := range xs {
			xs[i] = rng.Intn(n/2 + 1)
		}
		want := slices.Clone(xs)
		slices.Sort(want)
		if got := sortInHalves(xs, func(a, b int) int { return a - b }); !slices.Equal(got, want) {
			t.Fatalf("n=%d: not sorted", n)
		}
	}
}

// A batch's commands see the writes of the commands before them, and the
// state it started from stays as it was: a consumer created earlier in
// the batch is found by username, an expired key passes to a new
// credential, and a consumer renamed frees its name for the next command.
func TestBatchCommandsSeeEarlierWrites(t *testing.T) {
	f := &Fold{Plugins: testPlugins{}}
	const t0 = 1_700_000_000_000_000_000
	base, _, err := f.ApplyAll(Empty(), 1, t0, []*Command{
		{Op: "create", Kind: Consumers, NewID: id1, Body: map[string]any{"username": "alice"}},
		{Op: "create", Kind: KeyAuths, NewID: id2, Body: map[string]any{"key": "shared", "ttl": 1.0,
			"consumer": map[string]any{"id": id1}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	const id4 = "44444444-4444-4444-8444-444444444444"
	next, changes, err := f.ApplyAll(base, 2, t0+5e9, []*Command{
		{Op: "update", Kind: Consumers, Key: "alice", Body: map[string]any{"username": "alice-old"}},
		{Op: "create", Kind: Consumers, NewID: id3, Body: map[string]any{"username": "alice"}},
		{Op: "create", Kind: KeyAuths, NewID: id4, Body: map[string]any{"key": "shared",
			"consumer": map[string]any{"username": "alice"}}},
	})
	if err != nil {
		t.Fatalf("batch: %v (%v)", err, err.Fields)
	}
	if e := next.FindUnique(KeyAuths, "key", "shared"); e == nil || e.ID != id4 || ref(e.Data(), "consumer") != id3 {
		t.Fatalf("key shared is held by %v, want the new credential of the new alice", e)
	}
	if next.Get(KeyAuths, id2) != nil {
		t.Fatal("the expired credential is still there")
	}
	if e := next.FindUnique(Consumers, "username", "alice-old"); e == nil || e.ID != id1 {
		t.Fatal("the renamed consumer is not found by its new name")
	}
	if len(changes) != 4 { // rename, create, expiry, create
		t.Fatalf("%d changes, want 4", len(changes))
	}
	if e := base.FindUnique(KeyAuths, "key", "shared"); e == nil || e.ID != id2 {
		t.Fatal("the base state lost its credential")
	}
	if e := base.FindUnique(Consumers, "username", "alice"); e == nil || e.ID != id1 {
		t.Fatal("the base state lost alice")
	}
}

// BenchmarkBulkFold folds one declarative batch, 10,000 consumers each
// with a key, into a state that already holds 200,000 of each: the shape
// of a bulk load's later batches.
func BenchmarkBulkFold(b *testing.B) {
	f := &Fold{Plugins: testPlugins{}}
	batch := func(lo, hi int) []*Command {
		cmds := make([]*Command, 0, 2*(hi-lo))
		for i := lo; i < hi; i++ {
			id := fmt.Sprintf("%08x-0000-4000-8000-%012x", rand.Uint32(), i)
			cmds = append(cmds, &Command{Op: "upsert", Kind: Consumers, Key: id, NewID: id,
				Body: map[string]any{"username": fmt.Sprintf("c%d", i)}})
			kid := fmt.Sprintf("%08x-0000-4000-8001-%012x", rand.Uint32(), i)
			cmds = append(cmds, &Command{Op: "upsert", Kind: KeyAuths, Key: kid, NewID: kid,
				Body: map[string]any{"key": fmt.Sprintf("k%d", i), "consumer": map[string]any{"id": id}}})
		}
		return cmds
	}
	size := 200_000
	if testing.Short() {
		size = 20_000
	}
	base := Empty()
	for lo := 0; lo < size; lo += 50_000 {
		var err *Error
		if base, _, err = f.ApplyAll(base, base.Index+1, 1_700_000_000_000_000_000, batch(lo, min(lo+50_000, size))); err != nil {
			b.Fatal(err)
		}
	}
	cmds := batch(size, size+10_000)
	b.ResetTimer()
	for range b.N {
		if _, _, err := f.ApplyAll(base, base.Index+1, 1_700_000_000_000_000_000, cmds); err != nil {
			b.Fatal(err)
		}
	}
}

// Writing an expired credential again, by its id, replaces it once: the
// state's hash is the one a restore computes from the entities, the
// history shows one update, and the credential stays its consumer's.
func TestRewritingAnExpiredCredentialReplacesItOnce(t *testing.T) {
	m := testMachine(t)
	const t0 = 1_700_000_000_000_000_000
	for i, cmd := range []*Command{
		{Op: "create", Kind: Consumers, NewID: id1, Body: map[string]any{"username": "alice"}},
		{Op: "create", Kind: KeyAuths, NewID: id2, Body: map[string]any{"key": "k", "ttl": 1.0, "consumer": map[string]any{"id": id1}}},
	} {
		if res := applyCmd(m, uint64(i+1), t0, cmd); res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	res := applyCmd(m, 3, t0+5e9, &Command{Op: "upsert", Kind: KeyAuths, Key: id2, NewID: id2,
		Body: map[string]any{"key": "k", "consumer": map[string]any{"id": id1}}})
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	if got, want := m.State().Hash(), roundTrip(t, m).State().Hash(); got != want {
		t.Fatal("the folded hash differs from the restored one")
	}
	rec, err := m.History().Get(3)
	if err != nil || len(rec.Changes) != 1 || rec.Changes[0].Op != "updated" {
		t.Fatalf("history of the rewrite: %+v, %v", rec, err)
	}
	// The credential is still its consumer's: deleting her takes it too.
	if res := applyCmd(m, 4, t0+6e9, &Command{Op: "delete", Kind: Consumers, Key: id1}); res.Err != nil {
		t.Fatal(res.Err)
	}
	if m.State().Get(KeyAuths, id2) != nil {
		t.Fatal("the credential outlived its consumer")
	}
}

// An id names one entity: a create reusing one is Kong's primary key
// violation; an upsert by id (in any case) rewrites its entity, and by a
// free id creates one with it.
func TestIdsNameOneEntity(t *testing.T) {
	f := &Fold{}
	s := apply(t, f, Empty(), &Command{Op: "create", Kind: Consumers, NewID: id1, Body: map[string]any{"username": "ann"}})
	_, _, err := f.Apply(s, 2, 0, &Command{Op: "create", Kind: Consumers, NewID: id2, Body: map[string]any{"id": id1, "username": "bob"}})
	if err == nil || err.Status != 409 || err.Name != "primary key violation" {
		t.Fatalf("a create with a taken id: %+v", err)
	}
	s = apply(t, f, s, &Command{Op: "upsert", Kind: Consumers, Key: strings.ToUpper(id1), NewID: id3, Body: map[string]any{"username": "ann2"}})
	if e := s.Get(Consumers, id1); e == nil || str(e.Data(), "username") != "ann2" || s.Get(Consumers, id3) != nil {
		t.Fatalf("an upsert by an existing id did not rewrite it: %v", e)
	}
	s = apply(t, f, s, &Command{Op: "upsert", Kind: Consumers, Key: id2, NewID: id3, Body: map[string]any{"username": "bob"}})
	if e := s.Get(Consumers, id2); e == nil || str(e.Data(), "username") != "bob" || s.Get(Consumers, id3) != nil {
		t.Fatalf("an upsert by a free id did not create it with that id: %v", e)
	}
	if n := s.entities.Len(); n != 2 {
		t.Fatalf("%d entities, want 2", n)
	}
}
