// Package log defines Gatehouse's event: the envelope every admin mutation
// is wrapped in before it is appended to the Raft log, its msgpack codec,
// and the permanent history that keeps every event after Raft compacts its
// own log.
package log

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// Type is the first byte of an encoded event. The high bit marks a type
// that an older node may skip when it does not know it (Nomad's
// IgnoreUnknownTypeFlag): a rolling upgrade can then introduce new,
// non-essential event types without crashing old followers.
type Type uint8

// IgnoreUnknown is OR-ed into a Type that older nodes may skip.
const IgnoreUnknown Type = 0x80

// Event types.
const (
	// TypeEntity is an admin mutation of one entity (create, upsert,
	// update or delete).
	TypeEntity Type = 1
	// TypeBatch is a list of entity commands applied atomically.
	TypeBatch Type = 2
	// TypeMember records a node's advertised addresses (or its removal).
	TypeMember Type = 3
	// TypeDenied records an admin request refused for lack of permission.
	// It changes no state, so older nodes may skip it.
	TypeDenied Type = 4 | IgnoreUnknown
	// TypeWebhook sets (or clears) the audit webhook destination.
	TypeWebhook Type = 5
	// TypeCursor records how far the audit webhook has delivered.
	TypeCursor Type = 6
	// TypeSalt carries the cluster's audit HMAC key, chosen once by the
	// first leader.
	TypeSalt Type = 7
	// TypeRestore puts entities back exactly as they were at a past
	// point (a point-in-time restore): each with its data, or deleted.
	TypeRestore Type = 8
)

// Ops carried by TypeEntity events.
const (
	OpCreate = "create"
	OpUpsert = "upsert"
	OpUpdate = "update"
	OpDelete = "delete"
)

// ErrUnknownType is returned by Decode for an event type this node does not
// know but may skip.
var ErrUnknownType = errors.New("unknown event type (skippable)")

// Event is the envelope of one admin mutation. Everything that makes the
// fold deterministic (ids, time, generated keys) is chosen before the event
// is appended and travels in it.
type Event struct {
	Type      Type   `msgpack:"-"`
	Index     uint64 `msgpack:"i,omitempty"` // Raft index, known once committed
	Time      int64  `msgpack:"t"`           // unix nanoseconds, chosen by the leader
	Actor     string `msgpack:"a"`
	Source    string `msgpack:"s"` // client address
	RequestID string `msgpack:"r"`
	Node      string `msgpack:"n"` // node that received the request
	Op        string `msgpack:"o"`
	Entity    string `msgpack:"e"`  // entity type, e.g. "services"
	EntityID  string `msgpack:"id"` // id or endpoint key the request named
	Payload   []byte `msgpack:"p"`  // msgpack-encoded command body
}

// Encode returns the type byte followed by the msgpack envelope.
func Encode(e *Event) ([]byte, error) {
	b := make([]byte, 1, 256+len(e.Payload))
	b[0] = byte(e.Type)
	b, err := AppendMsgpack(b, e)
	if err != nil {
		return nil, fmt.Errorf("encode event: %w", err)
	}
	return b, nil
}

// AppendMsgpack appends v's msgpack encoding (msgpack.Marshal's bytes) to
// b. Given room, it writes in place: bulk events and their history records
// are tens of megabytes, and Marshal grows its buffer by doubling, copying
// everything so far each time.
func AppendMsgpack(b []byte, v any) ([]byte, error) {
	buf := bytes.NewBuffer(b)
	enc := msgpack.GetEncoder()
	defer msgpack.PutEncoder(enc)
	enc.Reset(buf)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Decode parses an encoded event. It returns ErrUnknownType for an unknown
// type carrying the IgnoreUnknown flag, and an error for any other unknown
// type, which a node must not silently skip.
func Decode(b []byte) (*Event, error) {
	if len(b) < 2 {
		return nil, errors.New("decode event: too short")
	}
	t := Type(b[0])
	switch t &^ IgnoreUnknown {
	case TypeEntity, TypeBatch, TypeMember, TypeDenied &^ IgnoreUnknown, TypeWebhook, TypeCursor, TypeSalt, TypeRestore:
	default:
		if t&IgnoreUnknown != 0 {
			return nil, ErrUnknownType
		}
		return nil, fmt.Errorf("decode event: unknown type %d", t)
	}
	var e Event
	if err := msgpack.Unmarshal(b[1:], &e); err != nil {
		return nil, fmt.Errorf("decode event: %w", err)
	}
	e.Type = t
	if t != TypeDenied {
		e.Type = t &^ IgnoreUnknown
	}
	return &e, nil
}

// EncodeValue and DecodeValue encode command payloads. Decoded integers of
// any width become float64 so that a payload reads back exactly as the JSON
// it came from.
func EncodeValue(v any) ([]byte, error) { return msgpack.Marshal(v) }

// DecodeValue decodes a payload encoded by EncodeValue into a JSON-shaped
// value (maps, slices, strings, float64, bool, nil).
func DecodeValue(b []byte) (any, error) {
	var v any
	if err := msgpack.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("decode payload: %w", err)
	}
	return JSONShape(v), nil
}

// JSONShape converts, in place, every integer in a decoded msgpack value to
// float64, the shape encoding/json produces.
func JSONShape(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, el := range x {
			x[k] = JSONShape(el)
		}
		return x
	case []any:
		for i, el := range x {
			x[i] = JSONShape(el)
		}
		return x
	case int8:
		return float64(x)
	case int16:
		return float64(x)
	case int32:
		return float64(x)
	case int64:
		return float64(x)
	case uint8:
		return float64(x)
	case uint16:
		return float64(x)
	case uint32:
		return float64(x)
	case uint64:
		return float64(x)
	case float32:
		return float64(x)
	}
	return v
}
