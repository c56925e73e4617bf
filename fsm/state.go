package fsm

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"unique"
	"unsafe"

	"github.com/gatehouse-gw/gatehouse/fsm/keytree"
	"github.com/gatehouse-gw/gatehouse/log"
	"github.com/vmihailenco/msgpack/v5"
)

// Entity is one stored entity. Data is its canonical Kong JSON shape with
// every schema field present; View is the typed form the proxy reads
// (*Service, *Route, ...), built once when the event is applied. Neither is
// ever mutated after the state holding it is published.
//
// A published entity keeps its fields only as their canonical encoding
// (enc), and Data decodes them on each call. A map per entity was most
// of the heap at 1,000,000 consumers: a dozen objects each (the map, its
// boxed values, nested reference maps) for the collector to mark on every
// cycle, while the proxy reads only View and the admin API reads a page
// at a time.
type Entity struct {
	Kind string
	ID   string
	View any

	// data is the fields while the entity is being folded, until seal.
	data map[string]any
	// tags are kept out of enc for select_tags, which tests every entity
	// of a declarative load; the strings are interned.
	tags []string

	// enc is the canonical msgpack encoding of the fields: what hash is
	// taken over, what versions and snapshots store, and, once sealed,
	// the only copy of the fields.
	enc []byte
}

// NewEntity returns an unpublished entity with the given fields.
func NewEntity(kind, id string, data map[string]any) *Entity {
	return &Entity{Kind: internKind(kind), ID: id, data: data}
}

// internKind returns the package's own string for a known kind, so the
// millions of entities of a kind share one (a kind decoded from an event
// or a snapshot is a fresh string each time).
func internKind(kind string) string {
	for _, k := range Kinds {
		if k == kind {
			return k
		}
	}
	return kind
}

// Data returns the entity's fields. For a published entity it is a fresh
// decoding, which the caller may keep or change.
func (e *Entity) Data() map[string]any {
	if e.data != nil || e.enc == nil {
		return e.data
	}
	var d map[string]any
	if err := msgpack.Unmarshal(e.enc, &d); err != nil {
		// enc was written by canonical from a map; a failure is a bug.
		slog.Error("decode entity", "kind", e.Kind, "id", e.ID, "err", err)
		return nil
	}
	log.JSONShape(d)
	return d
}

// AppendJSON appends the JSON of Data() to b: for a published entity
// straight from its encoding, without decoding it into a map first.
func (e *Entity) AppendJSON(b []byte) ([]byte, error) {
	if e.data == nil && e.enc != nil {
		if out, err := log.AppendJSONFromMsgpack(b, e.enc); err == nil {
			return out, nil
		}
	}
	return log.AppendJSON(b, e.Data())
}

// Tags returns the entity's tags.
func (e *Entity) Tags() []string {
	if e.data != nil {
		return strs(e.data, "tags")
	}
	return e.tags
}

// seal drops the field map once the entity is about to be published,
// keeping its encoding. Only the goroutine folding it may call it.
func (e *Entity) seal() {
	if e.data == nil {
		return
	}
	if e.enc == nil {
		e.enc = canonical(e.data)
	}
	e.tags = internTags(strs(e.data, "tags"))
	e.data = nil
}

// internTags returns tags as the process's one copy of that list, of
// the process's one copy of each string (nil for none). Entities loaded
// together usually carry the same tags (a declarative load's
// select_tags): a list each was 16 bytes and an object per consumer, 40
// MB at 1,000,000 consumers. The list is shared, so it is only read.
// Past maxTagLists distinct lists, a new one is no longer remembered,
// so that tags unique to each entity do not grow the table forever.
func internTags(tags []string) []string {
	if len(tags) == 0 {
		return nil
	}
	var buf [256]byte
	key := buf[:0]
	for _, t := range tags {
		if strings.IndexByte(t, 0) >= 0 {
			// The 0 ends a tag in the key; such a list is not shared.
			return internEach(tags)
		}
		key = append(append(key, t...), 0)
	}
	tagLists.Lock()
	defer tagLists.Unlock()
	if l, ok := tagLists.m[string(key)]; ok {
		return l
	}
	out := internEach(tags)
	if tagLists.m == nil {
		tagLists.m = map[string][]string{}
	}
	if len(tagLists.m) < maxTagLists {
		tagLists.m[string(key)] = out
	}
	return out
}

func internEach(tags []string) []string {
	out := make([]string, len(tags))
	for i, t := range tags {
		out[i] = unique.Make(t).Value()
	}
	return out
}

const maxTagLists = 4096

var tagLists struct {
	sync.Mutex
	m map[string][]string // the list's tags, each followed by a 0
}

// State is an immutable configuration snapshot. Its indexes are
// copy-on-write B-trees: applying one event copies O(log n) nodes, never
// the world, so a 100,000-route config changes as cheaply as a 10-route
// one. (They were persistent radix trees, which held about 3 KB per entity
// across the three indexes: gigabytes at a million consumers. A B-tree
// holds a key and a pointer per entry.)
type State struct {
	// Index is the Raft log index of the last event folded into this state.
	Index uint64

	entities *tree[*Entity]  // kind \0 id → *Entity
	unique   *tree[string]   // kind \0 field \0 value → id
	children *tree[struct{}] // parentKind \0 parentID \0 childKind \0 childID

	// pluginNames counts configured plugins per name, so the proxy only
	// looks up names that are in use.
	pluginNames map[string]int
	// consumerPlugins counts plugins scoped to a consumer: when zero, the
	// proxy never re-resolves plugins after authentication.
	consumerPlugins int

	meta

	// hash is the XOR of every entity's content hash: order-independent
	// and updated in O(1) per change, so nodes can compare configurations
	// without walking them.
	hash [32]byte
}

// meta is the cluster-wide state that is not gateway configuration. It is
// small and copied on write.
type meta struct {
	// members holds each node's advertised addresses, replicated so any
	// node can find the leader's admin API.
	members map[string]Member

	// webhook is the audit webhook destination and how far delivery got;
	// replicated so a new leader resumes where the old one stopped.
	webhook Webhook

	// lastTime is the time of the last folded event. Event times are
	// clamped to never go backwards, so the history is ordered by time as
	// well as by index and a time maps to an index by binary search.
	lastTime int64

	// salt keys the HMAC that stands in for secrets in audit views (Vault's
	// approach): equal secrets hash equally, so an auditor can still tell
	// "same key" from "different key" without ever seeing one.
	salt []byte
}

// Member is a cluster node's advertised addresses.
type Member struct {
	ID      string `msgpack:"id" json:"id"`
	Admin   string `msgpack:"admin" json:"admin_address"`
	Proxy   string `msgpack:"proxy" json:"proxy_address"`
	Status  string `msgpack:"status" json:"status_address"`
	Cluster string `msgpack:"cluster" json:"cluster_address"`
	// Gossip is the node's rate-limit gossip (memberlist) address.
	Gossip string `msgpack:"gossip,omitempty" json:"gossip_address,omitempty"`
	// PublicKey is the node's Ed25519 audit signing key, base64url.
	PublicKey string `msgpack:"pk,omitempty" json:"public_key,omitempty"`
	// Snapshot is the newest snapshot version the node reads. Nodes
	// older than the field leave it 0, and they read version 2.
	Snapshot int  `msgpack:"snap,omitempty" json:"snapshot_version,omitempty"`
	Removed  bool `msgpack:"removed,omitempty" json:"-"`
}

// Webhook is the audit webhook configuration and delivery cursor.
type Webhook struct {
	URL       string `msgpack:"url" json:"url"`
	BatchSize int    `msgpack:"batch" json:"batch_size"`
	Cursor    uint64 `msgpack:"cursor" json:"cursor"` // last delivered index
}

// Webhook returns the audit webhook settings.
func (s *State) Webhook() Webhook { return s.webhook }

// Members returns the advertised addresses by node id.
func (s *State) Members() map[string]Member { return s.members }

// Hash is a digest of the configuration: equal on two nodes exactly when
// they hold the same entities.
func (s *State) Hash() string { return hex.EncodeToString(s.hash[:]) }

// entityHash is the content hash: SHA-256 of the kind and the canonical
// encoding of the data, which the entity keeps as enc for its version
// (one encoding serves both; hashing JSON and then encoding msgpack for
// the version was a fifth of a history replay).
func entityHash(e *Entity) [32]byte {
	if e.enc == nil {
		e.enc = canonical(e.Data())
	}
	h := sha256.New()
	h.Write([]byte(e.Kind))
	h.Write([]byte{0})
	h.Write(e.enc)
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}

// canonical is the msgpack encoding of d with every map's keys sorted and
// every number in its shortest form: the same data gives the same bytes on
// every node, whether it was just folded (where a default may be an int)
// or decoded from a snapshot (where every number is a float64).
func canonical(d map[string]any) []byte {
	buf := encBufs.Get().(*bytes.Buffer)
	defer encBufs.Put(buf)
	buf.Reset()
	enc := msgpack.GetEncoder()
	defer msgpack.PutEncoder(enc)
	enc.Reset(buf)
	enc.SetSortMapKeys(true)
	enc.UseCompactInts(true)
	enc.UseCompactFloats(true)
	if err := enc.Encode(d); err != nil {
		// Data holds only what JSON decoding and the fold produce, all
		// encodable; a failure is a bug, and an empty encoding still
		// hashes deterministically.
		return nil
	}
	// An exact-size copy: every entity keeps its encoding, and a grown
	// buffer's spare capacity was a fifth of the heap at 1,000,000
	// consumers.
	return bytes.Clone(buf.Bytes())
}

var encBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func xorInto(dst *[32]byte, h [32]byte) {
	for i := range dst {
		dst[i] ^= h[i]
	}
}

// Empty returns the state before any event.
func Empty() *State {
	return &State{
		entities:    keytree.New[*Entity](kindOrder),
		unique:      keytree.New[string](uniqueOrder),
		children:    keytree.New[struct{}](kindOrder),
		pluginNames: map[string]int{},
		meta:        meta{members: map[string]Member{}},
	}
}

func k(parts ...string) string { return strings.Join(parts, "\x00") }

// lookupKey is k built in buf, for lookups on the proxy's path (a key-auth
// request makes three): it does not allocate when the key fits. The
// string shares buf's memory, so it is only for a lookup that does not
// keep its key, and only until buf is reused.
func lookupKey(buf []byte, parts ...string) string {
	for i, p := range parts {
		if i > 0 {
			buf = append(buf, 0)
		}
		buf = append(buf, p...)
	}
	return unsafe.String(unsafe.SliceData(buf), len(buf))
}

// tree is an index of a State. A published state's trees are only read,
// by any number of goroutines; a fold writes to a fork.
type tree[V any] = keytree.Tree[V]

// The trees' key orders know the groups the keys fall in (keytree.Order):
// entities by kind, unique entries by kind and field, children by the
// parent's kind. A key outside them is ordered all the same, only
// searched more slowly.
var kindOrder, uniqueOrder = indexOrders()

// indexOrders returns the order of keys grouped by kind (the entity and
// children trees') and by kind and field (the unique tree's).
func indexOrders() (kinds, unique *keytree.Order) {
	var groups, fields []string
	for kind := range Schemas {
		groups = append(groups, k(kind, ""))
		for _, f := range uniqueFields[kind] {
			fields = append(fields, k(kind, f, ""))
		}
	}
	fields = append(fields, k(Plugins, "cache_key", ""), k(Targets, "target", ""))
	return keytree.NewOrder(1, groups), keytree.NewOrder(2, fields)
}

// fork returns a writable copy of a published tree, sharing its nodes
// until they are written. Copy itself marks the tree it is called on, and
// published trees are read concurrently, so it is called on a duplicate
// of the tree's header.
func fork[V any](t *tree[V]) *tree[V] {
	dup := *t
	return dup.Copy()
}

// Get returns the entity of kind with the given id, or nil.
func (s *State) Get(kind, id string) *Entity {
	var buf [96]byte
	e, _ := s.entities.Get(lookupKey(buf[:0], kind, id))
	return e
}

// Find looks an entity up by id or, for a non-UUID key, by its endpoint key
// (name, username, key, target ...).
func (s *State) Find(kind, key string) *Entity {
	if IsUUID(key) {
		if e := s.Get(kind, strings.ToLower(key)); e != nil {
			return e
		}
	}
	f := endpointKeys[kind]
	if f == "" {
		return nil
	}
	return s.FindUnique(kind, f, key)
}

// FindUnique returns the entity whose unique field equals value.
func (s *State) FindUnique(kind, field, value string) *Entity {
	var buf [128]byte
	id, ok := s.unique.Get(lookupKey(buf[:0], kind, field, value))
	if !ok {
		return nil
	}
	return s.Get(kind, id)
}

// Walk calls fn for each entity of kind in id order, starting after the id
// `after` ("" for the beginning); fn returning false stops.
func (s *State) Walk(kind, after string, fn func(*Entity) bool) {
	prefix := k(kind, "")
	start := prefix
	if after != "" {
		start = k(kind, after, "")
	}
	s.entities.Ascend(start, func(key string, e *Entity) bool {
		return strings.HasPrefix(key, prefix) && fn(e)
	})
}

// Children calls fn for each entity of childKind referencing parent.
func (s *State) Children(parentKind, parentID, childKind string, fn func(*Entity) bool) {
	prefix := k(parentKind, parentID, childKind, "")
	s.children.Ascend(prefix, func(key string, _ struct{}) bool {
		if !strings.HasPrefix(key, prefix) {
			return false
		}
		e := s.Get(childKind, key[len(prefix):])
		return e == nil || fn(e)
	})
}

// HasChildren reports whether any childKind entity references parent.
func (s *State) HasChildren(parentKind, parentID, childKind string) bool {
	found := false
	s.Children(parentKind, parentID, childKind, func(*Entity) bool { found = true; return false })
	return found
}

// Tagged reports whether the entity carries tag. It reads the entity's
// own tags: an index of them would be kept up on every write for nothing
// (an entity carries a handful).
func (s *State) Tagged(tag, kind, id string) bool {
	e := s.Get(kind, id)
	return e != nil && e.HasTag(tag)
}

// HasTag reports whether e carries tag: for a caller that already holds
// the entity (a filter over every entity of a walk), without Tagged's
// lookup.
func (e *Entity) HasTag(tag string) bool { return slices.Contains(e.Tags(), tag) }

// PluginNames lists the plugin names configured anywhere.
func (s *State) PluginNames() []string {
	out := make([]string, 0, len(s.pluginNames))
	for n := range s.pluginNames {
		out = append(out, n)
	}
	return out
}

// HasConsumerPlugins reports whether any plugin is scoped to a consumer.
func (s *State) HasConsumerPlugins() bool { return s.consumerPlugins > 0 }

// PluginFor returns the plugin configured for name at exactly this scope
// (empty strings meaning "not scoped to"), or nil.
func (s *State) PluginFor(name, routeID, serviceID, consumerID string) *Plugin {
	e := s.FindUnique(Plugins, "cache_key", pluginKey(name, routeID, serviceID, consumerID))
	if e == nil {
		return nil
	}
	return e.View.(*Plugin)
}

func pluginKey(name, route, service, consumer string) string {
	return name + "|" + route + "|" + service + "|" + consumer
}

// Count returns the number of entities of kind (a walk; admin use only).
func (s *State) Count(kind string) int {
	n := 0
	s.Walk(kind, "", func(*Entity) bool { n++; return true })
	return n
}

// IsUUID reports whether s is a UUID in canonical text form
// (8-4-4-4-12 hex digits). It runs for every id of every write; a regexp
// was 5% of loading a large configuration.
func IsUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < 36; i++ {
		c := s[i]
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if c != '-' {
				return false
			}
			continue
		}
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

func isIP(s string) bool { return net.ParseIP(strings.Trim(s, "[]")) != nil }
