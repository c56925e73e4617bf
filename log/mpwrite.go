package log

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Hand-written msgpack for what a load writes by the million: commands
// (fsm/cmdcodec.go) and history records. msgpack's reflective encoder was
// a sixth of a 100,000-consumer POST /config and an eighth of its history
// commit. These functions write what msgpack.Marshal writes for the same
// value, up to the order of a map's keys (Go's map order, as there): a
// value decodes to what msgpack's own encoding decodes to, types
// included. Types a JSON or YAML body does not hold go to msgpack itself.

// AppendMsgpackValue appends the encoding of a JSON-like value.
func AppendMsgpackValue(b []byte, v any) ([]byte, error) {
	var err error
	switch x := v.(type) {
	case nil:
		return append(b, 0xc0), nil
	case string:
		return AppendMsgpackString(b, x), nil
	case bool:
		if x {
			return append(b, 0xc3), nil
		}
		return append(b, 0xc2), nil
	case float64:
		return binary.BigEndian.AppendUint64(append(b, 0xcb), math.Float64bits(x)), nil
	case int:
		return appendMsgpackInt(b, int64(x)), nil
	case map[string]any:
		return appendMsgpackMap(b, x)
	case []any:
		if x == nil {
			return append(b, 0xc0), nil
		}
		b = AppendMsgpackArrayLen(b, len(x))
		for _, el := range x {
			if b, err = AppendMsgpackValue(b, el); err != nil {
				return nil, err
			}
		}
		return b, nil
	case []string:
		if x == nil {
			return append(b, 0xc0), nil
		}
		b = AppendMsgpackArrayLen(b, len(x))
		for _, s := range x {
			b = AppendMsgpackString(b, s)
		}
		return b, nil
	}
	return AppendMsgpack(b, v)
}

func appendMsgpackMap(b []byte, m map[string]any) ([]byte, error) {
	if m == nil {
		return append(b, 0xc0), nil
	}
	b = AppendMsgpackMapLen(b, len(m))
	var err error
	for k, el := range m {
		if b, err = AppendMsgpackValue(AppendMsgpackString(b, k), el); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// AppendMsgpackString appends s as a msgpack str.
func AppendMsgpackString(b []byte, s string) []byte {
	switch n := len(s); {
	case n < 32:
		b = append(b, 0xa0|byte(n))
	case n <= math.MaxUint8:
		b = append(b, 0xd9, byte(n))
	case n <= math.MaxUint16:
		b = binary.BigEndian.AppendUint16(append(b, 0xda), uint16(n))
	default:
		b = binary.BigEndian.AppendUint32(append(b, 0xdb), uint32(n))
	}
	return append(b, s...)
}

// AppendMsgpackMapLen and AppendMsgpackArrayLen append a map's or an
// array's header.
func AppendMsgpackMapLen(b []byte, n int) []byte   { return appendMsgpackLen(b, n, 0x80, 0xde, 0xdf) }
func AppendMsgpackArrayLen(b []byte, n int) []byte { return appendMsgpackLen(b, n, 0x90, 0xdc, 0xdd) }

// appendMsgpackLen writes a header: fix is the code of the form that
// holds lengths below 16, c16 and c32 those of the 16- and 32-bit forms.
func appendMsgpackLen(b []byte, n int, fix, c16, c32 byte) []byte {
	switch {
	case n < 16:
		return append(b, fix|byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, c16), uint16(n))
	}
	return binary.BigEndian.AppendUint32(append(b, c32), uint32(n))
}

// appendMsgpackInt writes an int in its smallest form, as msgpack writes
// an int: unsigned forms for what is not negative.
func appendMsgpackInt(b []byte, n int64) []byte {
	if n >= 0 {
		return appendMsgpackUint(b, uint64(n))
	}
	switch {
	case n >= -32:
		return append(b, byte(int8(n)))
	case n >= math.MinInt8:
		return append(b, 0xd0, byte(int8(n)))
	case n >= math.MinInt16:
		return binary.BigEndian.AppendUint16(append(b, 0xd1), uint16(int16(n)))
	case n >= math.MinInt32:
		return binary.BigEndian.AppendUint32(append(b, 0xd2), uint32(int32(n)))
	}
	return binary.BigEndian.AppendUint64(append(b, 0xd3), uint64(n))
}

func appendMsgpackUint(b []byte, n uint64) []byte {
	switch {
	case n <= math.MaxInt8:
		return append(b, byte(n))
	case n <= math.MaxUint8:
		return append(b, 0xcc, byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xcd), uint16(n))
	case n <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(b, 0xce), uint32(n))
	}
	return binary.BigEndian.AppendUint64(append(b, 0xcf), n)
}

// appendRecord appends r as msgpack.Marshal writes it, its fields in
// their declared order: peekHead reads the event's index and time from a
// record's first bytes.
func appendRecord(b []byte, r *Record) ([]byte, error) {
	n := 3
	for _, set := range []bool{r.Error != "", len(r.Changes) > 0, r.PrevHash != "", r.Hash != ""} {
		if set {
			n++
		}
	}
	b = AppendMsgpackMapLen(b, n)
	b = appendEvent(AppendMsgpackString(b, "ev"), &r.Event)
	b = append(AppendMsgpackString(b, "ty"), 0xcc, byte(r.Type)) // a uint8 keeps its width too
	b = AppendMsgpackString(AppendMsgpackString(b, "out"), r.Outcome)
	if r.Error != "" {
		b = AppendMsgpackString(AppendMsgpackString(b, "err"), r.Error)
	}
	if len(r.Changes) > 0 {
		b = AppendMsgpackArrayLen(AppendMsgpackString(b, "ch"), len(r.Changes))
		var err error
		for i := range r.Changes {
			if b, err = appendChange(b, &r.Changes[i]); err != nil {
				return nil, fmt.Errorf("change %d: %w", i, err)
			}
		}
	}
	if r.PrevHash != "" {
		b = AppendMsgpackString(AppendMsgpackString(b, "ph"), r.PrevHash)
	}
	if r.Hash != "" {
		b = AppendMsgpackString(AppendMsgpackString(b, "h"), r.Hash)
	}
	return b, nil
}

func appendEvent(b []byte, e *Event) []byte {
	n := 9
	if e.Index != 0 {
		n++
	}
	b = AppendMsgpackMapLen(b, n)
	if e.Index != 0 {
		b = binary.BigEndian.AppendUint64(append(AppendMsgpackString(b, "i"), 0xcf), e.Index)
	}
	// A sized integer keeps its width, as msgpack writes it; an int
	// (appendMsgpackInt) does not.
	b = binary.BigEndian.AppendUint64(append(AppendMsgpackString(b, "t"), 0xd3), uint64(e.Time))
	for _, f := range [...]struct{ k, v string }{{"a", e.Actor}, {"s", e.Source}, {"r", e.RequestID}, {"n", e.Node},
		{"o", e.Op}, {"e", e.Entity}, {"id", e.EntityID}} {
		b = AppendMsgpackString(AppendMsgpackString(b, f.k), f.v)
	}
	b = AppendMsgpackString(b, "p")
	switch p := e.Payload; {
	case p == nil:
		return append(b, 0xc0)
	case len(p) <= math.MaxUint8:
		b = append(b, 0xc4, byte(len(p)))
	case len(p) <= math.MaxUint16:
		b = binary.BigEndian.AppendUint16(append(b, 0xc5), uint16(len(p)))
	default:
		b = binary.BigEndian.AppendUint32(append(b, 0xc6), uint32(len(p)))
	}
	return append(b, e.Payload...)
}

func appendChange(b []byte, c *Change) ([]byte, error) {
	n := 3
	if len(c.Before) > 0 {
		n++
	}
	if len(c.After) > 0 {
		n++
	}
	b = AppendMsgpackMapLen(b, n)
	b = AppendMsgpackString(AppendMsgpackString(b, "k"), c.EntityType)
	b = AppendMsgpackString(AppendMsgpackString(b, "id"), c.EntityID)
	b = AppendMsgpackString(AppendMsgpackString(b, "op"), c.Op)
	var err error
	if len(c.Before) > 0 {
		if b, err = appendMsgpackMap(AppendMsgpackString(b, "b"), c.Before); err != nil {
			return nil, err
		}
	}
	if len(c.After) > 0 {
		if b, err = appendMsgpackMap(AppendMsgpackString(b, "a"), c.After); err != nil {
			return nil, err
		}
	}
	return b, nil
}
