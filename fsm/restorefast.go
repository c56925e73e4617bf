package fsm

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"hash"
	"slices"
	"unsafe"

	"github.com/vmihailenco/msgpack/v5"
)

// Consumers and their key-auth credentials are the kinds a state holds by
// the million, and restoring one went through a map of its fields only to
// read four of them and drop the map: decoding, reshaping for JSON and
// collecting those maps was most of a restart at 1,000,000 consumers.
// These two are decoded straight into the fields that indexing and the
// view read, by a decoder each restore worker keeps. Every string such an
// entity keeps (its key in each tree, its id, the view's fields) is a
// piece of one string laid out for it: decoded one by one they were five
// to seven objects an entity, most of a restart's allocations and of what
// the collector marks afterwards. TestFastRestoreMatchesTheGenericOne holds
// the two paths to the same entity, keys and view.

// fastRestoreFits reports whether the fields the fast path indexes are
// still the schema's: if a unique field or a reference of these kinds is
// added, the fast path steps aside rather than index them wrongly (and
// the test says so).
var fastRestoreFits = slices.Equal(uniqueFields[Consumers], []string{"username", "custom_id"}) &&
	len(foreignFields[Consumers]) == 0 &&
	slices.Equal(uniqueFields[KeyAuths], []string{"key"}) &&
	slices.Equal(foreignFields[KeyAuths], []foreignRef{{"consumer", Consumers, true}})

// restoreDecoder is one restore worker's state for the fast path, reused
// from entity to entity.
//
// What a restored entity keeps (the Entity, its view, its strings) is
// handed out from chunks of a few hundred: Go's collector
// does not move objects, and entities allocated one by one among the
// restore's own short-lived allocations end up scattered over spans that
// later stay mostly empty. A chunk is one large allocation in spans of
// its own; it lives while any entity in it does, which for a state
// restored and then changed here and there is most of them anyway.
type restoreDecoder struct {
	r    bytes.Reader
	dec  *msgpack.Decoder
	hash hash.Hash
	str  []byte // the string fields read so far, end to end
	out  []byte // the strings the entity keeps, being laid out

	tagBuf    []string // a tag list being read
	strs      []byte   // chunks handed out from:
	keyLists  []string // the index keys' lists, dropped after the restore
	entities  []Entity
	consumers []Consumer
	keyAuths  []KeyAuth
}

// next returns the next element of the chunk *c, starting a new chunk of
// n when it is full.
func next[T any](c *[]T, n int) *T {
	if len(*c) == cap(*c) {
		*c = make([]T, 0, n)
	}
	*c = (*c)[:len(*c)+1]
	return &(*c)[len(*c)-1]
}

// keep returns rd.out as a string in the string chunk. The chunk's bytes
// are never written again once handed out (appends write past them).
func (rd *restoreDecoder) keep() string {
	n := len(rd.out)
	if n == 0 {
		return ""
	}
	if cap(rd.strs)-len(rd.strs) < n {
		rd.strs = make([]byte, 0, max(snapSlab, n))
	}
	at := len(rd.strs)
	rd.strs = append(rd.strs, rd.out...)
	return unsafe.String(&rd.strs[at], n)
}

// list returns n strings from the chunk *c, capped so that an append to
// one list cannot reach the next.
func list(c *[]string, n int) []string {
	if n == 0 {
		return nil
	}
	if cap(*c)-len(*c) < n {
		*c = make([]string, 0, max(1024, n))
	}
	at := len(*c)
	*c = (*c)[:at+n]
	return (*c)[at : at+n : at+n]
}

func newRestoreDecoder() *restoreDecoder {
	rd := &restoreDecoder{hash: sha256.New()}
	rd.dec = msgpack.NewDecoder(&rd.r)
	return rd
}

// span is a string field's bytes in rd.str.
type span struct{ at, n int }

// piece is a string laid out in rd.out: the whole of it, and the part
// copied from a field.
type piece struct{ lo, mid, hi int }

var errLength = errors.New("length beyond the data")

// field reads a string (nil reads as empty) into rd.str.
func (rd *restoreDecoder) field() (span, error) {
	n, err := rd.dec.DecodeBytesLen()
	if err != nil || n <= 0 {
		return span{}, err
	}
	if n > rd.r.Len() {
		return span{}, errLength
	}
	at := len(rd.str)
	rd.str = slices.Grow(rd.str, n)[:at+n]
	return span{at, n}, rd.dec.ReadFull(rd.str[at:])
}

// key reads a map key; the bytes are good until the next read.
func (rd *restoreDecoder) key() ([]byte, error) {
	s, err := rd.field()
	b := rd.str[s.at : s.at+s.n]
	rd.str = rd.str[:s.at]
	return b, err
}

// tags reads a list of tags, interned.
func (rd *restoreDecoder) tags() ([]string, error) {
	n, err := rd.dec.DecodeArrayLen()
	if err != nil || n <= 0 {
		return nil, err
	}
	if n > rd.r.Len() {
		return nil, errLength
	}
	rd.tagBuf = rd.tagBuf[:0]
	for range n {
		t, err := rd.dec.DecodeString()
		if err != nil {
			return nil, err
		}
		rd.tagBuf = append(rd.tagBuf, t)
	}
	return internTags(rd.tagBuf), nil
}

// put lays out prefix followed by the field's bytes.
func (rd *restoreDecoder) put(prefix string, s span) piece {
	lo := len(rd.out)
	rd.out = append(rd.out, prefix...)
	mid := len(rd.out)
	rd.out = append(rd.out, rd.str[s.at:s.at+s.n]...)
	return piece{lo, mid, len(rd.out)}
}

// restoredFast returns the index keys of a restored entity (the sealed
// entity among them) for a kind with a fast path; ok is false for any
// other kind, or for data the typed decoding does not take (the generic
// path then decides).
func (rd *restoreDecoder) restoredFast(r snapEntityRaw) (ik indexKeys, ok bool) {
	if !fastRestoreFits || (r.Kind != Consumers && r.Kind != KeyAuths) {
		return ik, false
	}
	rd.r.Reset(r.Data)
	rd.dec.Reset(&rd.r)
	rd.str, rd.out = rd.str[:0], rd.out[:0]
	var e *Entity
	var err error
	if r.Kind == Consumers {
		e, ik, err = rd.consumer()
	} else {
		e, ik, err = rd.keyAuth()
	}
	if err != nil {
		return indexKeys{}, false
	}
	e.enc = r.Data
	rd.hash.Reset()
	rd.hash.Write([]byte(e.Kind))
	rd.hash.Write([]byte{0})
	rd.hash.Write(e.enc)
	rd.hash.Sum(ik.hash[:0])
	ik.e = e
	return ik, true
}

func (rd *restoreDecoder) consumer() (*Entity, indexKeys, error) {
	var id, user, custom span
	var tags []string
	err := rd.fields(func(name []byte) (err error) {
		switch string(name) {
		case "id":
			id, err = rd.field()
		case "username":
			user, err = rd.field()
		case "custom_id":
			custom, err = rd.field()
		case "tags":
			tags, err = rd.tags()
		default:
			err = rd.dec.Skip()
		}
		return err
	})
	if err != nil {
		return nil, indexKeys{}, err
	}
	pk := rd.put(Consumers+"\x00", id)
	var pu, pc piece
	if user.n > 0 {
		pu = rd.put(Consumers+"\x00username\x00", user)
	}
	if custom.n > 0 {
		pc = rd.put(Consumers+"\x00custom_id\x00", custom)
	}
	s := rd.keep()
	v := next(&rd.consumers, 1024)
	*v = Consumer{ID: s[pk.mid:pk.hi], Username: s[pu.mid:pu.hi], CustomID: s[pc.mid:pc.hi]}
	e := next(&rd.entities, 512)
	*e = Entity{Kind: Consumers, ID: v.ID, View: v, tags: tags}
	// The unique keys laid out above (an empty piece is a field not set).
	var unique [2]string
	nu := 0
	for _, p := range [...]piece{pu, pc} {
		if p.hi > p.lo {
			unique[nu], nu = s[p.lo:p.hi], nu+1
		}
	}
	ik := indexKeys{entity: s[pk.lo:pk.hi], unique: append(list(&rd.keyLists, nu)[:0], unique[:nu]...)}
	return e, ik, nil
}

func (rd *restoreDecoder) keyAuth() (*Entity, indexKeys, error) {
	var id, key, consumer span
	var ttl, createdAt float64
	var tags []string
	err := rd.fields(func(name []byte) (err error) {
		switch string(name) {
		case "id":
			id, err = rd.field()
		case "key":
			key, err = rd.field()
		case "consumer":
			consumer, err = rd.reference()
		case "ttl":
			ttl, err = rd.dec.DecodeFloat64()
		case "created_at":
			createdAt, err = rd.dec.DecodeFloat64()
		case "tags":
			tags, err = rd.tags()
		default:
			err = rd.dec.Skip()
		}
		return err
	})
	if err != nil {
		return nil, indexKeys{}, err
	}
	pk := rd.put(KeyAuths+"\x00", id)
	var pu, pc, pcid piece
	if key.n > 0 {
		pu = rd.put(KeyAuths+"\x00key\x00", key)
	}
	if consumer.n > 0 {
		pc = rd.put(Consumers+"\x00", consumer)
		pcid = rd.put("\x00"+KeyAuths+"\x00", id)
	}
	s := rd.keep()
	v := next(&rd.keyAuths, 1024)
	*v = KeyAuth{ID: s[pk.mid:pk.hi], ConsumerID: s[pc.mid:pc.hi], Key: s[pu.mid:pu.hi]}
	if ttl > 0 {
		v.ExpiresAt = int64(createdAt + ttl)
	}
	e := next(&rd.entities, 512)
	*e = Entity{Kind: KeyAuths, ID: v.ID, View: v, tags: tags}
	ik := indexKeys{entity: s[pk.lo:pk.hi]}
	if key.n > 0 {
		ik.unique = list(&rd.keyLists, 1)
		ik.unique[0] = s[pu.lo:pu.hi]
	}
	if consumer.n > 0 {
		ik.children = list(&rd.keyLists, 1)
		ik.children[0] = s[pc.lo:pcid.hi]
	}
	return e, ik, nil
}

// reference reads a foreign key ({"id": ...}, or nil) for its id.
func (rd *restoreDecoder) reference() (id span, err error) {
	err = rd.fields(func(name []byte) (err error) {
		if string(name) == "id" {
			id, err = rd.field()
		} else {
			err = rd.dec.Skip()
		}
		return err
	})
	return id, err
}

// fields reads a map (nil reads as empty), handing each key to read,
// which reads or skips its value.
func (rd *restoreDecoder) fields(read func(name []byte) error) error {
	n, err := rd.dec.DecodeMapLen()
	for i := 0; i < n && err == nil; i++ {
		var name []byte
		if name, err = rd.key(); err == nil {
			err = read(name)
		}
	}
	return err
}
