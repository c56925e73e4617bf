package fsm

import (
	"slices"

	"github.com/vmihailenco/msgpack/v5"
)

// Consumers and their key-auth credentials are the kinds a state holds by
// the million, and restoring one went through a map of its fields only to
// read four of them and drop the map: decoding, reshaping for JSON and
// collecting those maps was most of a restart at 1,000,000 consumers.
// These two are decoded straight into the fields that indexing and the
// view read. TestFastRestoreMatchesTheGenericOne holds the two paths to
// the same entity, keys and view.

type restoredConsumer struct {
	ID       string   `msgpack:"id"`
	Username string   `msgpack:"username"`
	CustomID string   `msgpack:"custom_id"`
	Tags     []string `msgpack:"tags"`
}

type restoredKeyAuth struct {
	ID       string `msgpack:"id"`
	Key      string `msgpack:"key"`
	Consumer struct {
		ID string `msgpack:"id"`
	} `msgpack:"consumer"`
	TTL       float64  `msgpack:"ttl"`
	CreatedAt float64  `msgpack:"created_at"`
	Tags      []string `msgpack:"tags"`
}

// fastRestoreFits reports whether the fields the fast path indexes are
// still the schema's: if a unique field or a reference of these kinds is
// added, the fast path steps aside rather than index them wrongly (and
// the test says so).
var fastRestoreFits = slices.Equal(uniqueFields[Consumers], []string{"username", "custom_id"}) &&
	len(foreignFields[Consumers]) == 0 &&
	slices.Equal(uniqueFields[KeyAuths], []string{"key"}) &&
	slices.Equal(foreignFields[KeyAuths], []foreignRef{{"consumer", Consumers, true}})

// restoredFast returns the index keys of a restored entity (the sealed
// entity among them) for a kind with a fast path; ok is false for any
// other kind, or for data the typed decoding does not take (the generic
// path then decides).
func restoredFast(r snapEntityRaw) (ik indexKeys, ok bool) {
	if !fastRestoreFits {
		return ik, false
	}
	var e *Entity
	var tags []string
	switch r.Kind {
	case Consumers:
		var c restoredConsumer
		if msgpack.Unmarshal(r.Data, &c) != nil {
			return ik, false
		}
		e = &Entity{Kind: Consumers, ID: c.ID, View: &Consumer{ID: c.ID, Username: c.Username, CustomID: c.CustomID}}
		tags = c.Tags
		ik.unique = appendUnique(appendUnique(nil, Consumers, "username", c.Username), Consumers, "custom_id", c.CustomID)
	case KeyAuths:
		var ka restoredKeyAuth
		if msgpack.Unmarshal(r.Data, &ka) != nil {
			return ik, false
		}
		v := &KeyAuth{ID: ka.ID, ConsumerID: ka.Consumer.ID, Key: ka.Key}
		if ka.TTL > 0 {
			v.ExpiresAt = int64(ka.CreatedAt + ka.TTL)
		}
		e = &Entity{Kind: KeyAuths, ID: ka.ID, View: v}
		tags = ka.Tags
		ik.unique = appendUnique(nil, KeyAuths, "key", ka.Key)
		if ka.Consumer.ID != "" {
			ik.children = []string{k(Consumers, ka.Consumer.ID, KeyAuths, ka.ID)}
		}
	default:
		return ik, false
	}
	e.enc = r.Data
	e.hash = entityHash(e)
	e.tags = internTags(tags)
	ik.e, ik.entity = e, k(e.Kind, e.ID)
	return ik, true
}
