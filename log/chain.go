package log

import (
	"crypto/sha256"
	"encoding/hex"
	"time"
)

// Row is an event as the audit API and exports show it. It never holds a
// payload (which may carry credentials), only the payload's SHA-256.
// Hash covers every other field, PrevHash included, so the rows form a
// chain: changing, removing or reordering one breaks every hash after it.
type Row struct {
	Index         uint64   `json:"index"`
	Time          string   `json:"time"`
	Actor         string   `json:"actor"`
	Source        string   `json:"source"`
	RequestID     string   `json:"request_id"`
	Node          string   `json:"node"`
	Op            string   `json:"op"`
	EntityType    string   `json:"entity_type"`
	EntityID      string   `json:"entity_id"`
	Outcome       string   `json:"outcome"`
	Error         *string  `json:"error"`
	PayloadSHA256 string   `json:"payload_sha256"`
	Changes       []Change `json:"changes,omitempty"`
	PrevHash      string   `json:"prev_hash"`
	Hash          string   `json:"hash,omitempty"`
}

// Change is what an applied event did to one entity. A creation carries
// the entity after it, a deletion the entity before it, an update only the
// fields that changed, before and after: everything else is derivable by
// time travel, and the history stays small. Secret fields (key-auth keys,
// admin token hashes) hold "hmac-sha256:<hex>" instead of their value.
type Change struct {
	EntityType string         `msgpack:"k" json:"entity_type"`
	EntityID   string         `msgpack:"id" json:"entity_id"`
	Op         string         `msgpack:"op" json:"op"` // created, updated or deleted
	Before     map[string]any `msgpack:"b,omitempty" json:"before,omitempty"`
	After      map[string]any `msgpack:"a,omitempty" json:"after,omitempty"`
}

// RowOf builds the audit row of a record (with its stored hashes).
func RowOf(r *Record) Row {
	sum := sha256.Sum256(r.Event.Payload)
	row := Row{
		Index: r.Event.Index, Time: time.Unix(0, r.Event.Time).UTC().Format(time.RFC3339Nano),
		Actor: r.Event.Actor, Source: r.Event.Source, RequestID: r.Event.RequestID, Node: r.Event.Node,
		Op: r.Event.Op, EntityType: r.Event.Entity, EntityID: r.Event.EntityID, Outcome: r.Outcome,
		PayloadSHA256: hex.EncodeToString(sum[:]), Changes: r.Changes, PrevHash: r.PrevHash, Hash: r.Hash,
	}
	if r.Error != "" {
		e := r.Error
		row.Error = &e
	}
	return row
}

// ComputeHash returns the chain hash of a row: SHA-256 of its JSON form
// without the hash itself. Anyone can recompute it from an export.
func (row Row) ComputeHash() string {
	h, _ := row.hashWith(nil)
	return h
}

// hashWith is ComputeHash with the JSON built in buf, which it returns
// (grown if need be) for the caller's next use.
func (row Row) hashWith(buf []byte) (string, []byte) {
	row.Hash = ""
	b, _ := AppendJSON(buf[:0], row)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), b
}
