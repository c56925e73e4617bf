package fsm

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/gatehouse-gw/gatehouse/log"
)

// A command's payload is msgpack, and the reflective encoder and decoder
// were a sixth of a 100,000-consumer POST /config: the admin encodes
// 200,000 commands and the plan decodes them again before folding. These
// write and read the same format by hand.
//
// appendCommands writes what msgpack.Marshal writes for cmds (with
// log.AppendMsgpackValue for the bodies). readCommands reads
// only the shapes msgpack writes for a Command and its JSON-like body,
// and gives up on anything else (bins, extensions, non-string keys, a
// field it does not know, a repeated field, nesting past maxDepth,
// trailing bytes): the reflective decoder then reads the payload, so
// what any payload decodes to is what it decoded to before.

// appendCommands appends the encoding of cmds (a batch payload) to b.
func appendCommands(b []byte, cmds []*Command) ([]byte, error) {
	if cmds == nil {
		return append(b, 0xc0), nil
	}
	b = log.AppendMsgpackArrayLen(b, len(cmds))
	var err error
	for _, c := range cmds {
		if b, err = appendCommand(b, c); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// appendCommand appends c as msgpack writes the struct: a map of its
// fields, the omitempty ones left out when empty.
func appendCommand(b []byte, c *Command) ([]byte, error) {
	if c == nil {
		return append(b, 0xc0), nil
	}
	n := 2
	for _, set := range []bool{c.Key != "", c.Named != "", c.NewID != "", c.Parent != nil, len(c.Body) > 0} {
		if set {
			n++
		}
	}
	b = log.AppendMsgpackMapLen(b, n)
	b = log.AppendMsgpackString(log.AppendMsgpackString(b, "op"), c.Op)
	b = log.AppendMsgpackString(log.AppendMsgpackString(b, "kind"), c.Kind)
	if c.Key != "" {
		b = log.AppendMsgpackString(log.AppendMsgpackString(b, "key"), c.Key)
	}
	if c.Named != "" {
		b = log.AppendMsgpackString(log.AppendMsgpackString(b, "named"), c.Named)
	}
	if c.NewID != "" {
		b = log.AppendMsgpackString(log.AppendMsgpackString(b, "new_id"), c.NewID)
	}
	if p := c.Parent; p != nil {
		b = log.AppendMsgpackMapLen(log.AppendMsgpackString(b, "parent"), 3)
		b = log.AppendMsgpackString(log.AppendMsgpackString(b, "kind"), p.Kind)
		b = log.AppendMsgpackString(log.AppendMsgpackString(b, "key"), p.Key)
		b = log.AppendMsgpackString(log.AppendMsgpackString(b, "field"), p.Field)
	}
	if len(c.Body) > 0 {
		return log.AppendMsgpackValue(log.AppendMsgpackString(b, "body"), c.Body)
	}
	return b, nil
}

// maxDepth bounds the nesting readCommands follows; deeper bodies are
// the reflective decoder's.
const maxDepth = 64

// cmdReader reads a payload; ok turns false at the first thing it does
// not read, and every read after that returns zero values.
type cmdReader struct {
	b  []byte
	ok bool
	// shared holds the strings read in arrays (tags, methods,
	// protocols), which repeat from one command to the next.
	shared map[string]string
}

// readCommands decodes a payload as decodeCommands does (bodies in their
// JSON shapes), or reports false when it leaves the payload to msgpack.
func readCommands(b []byte, batch bool) ([]*Command, bool) {
	r := &cmdReader{b: b, ok: true}
	var cmds []*Command
	if batch {
		if r.peek() == 0xc0 {
			r.b = r.b[1:]
		} else {
			n := r.arrayLen()
			if n > len(r.b) { // every command takes a byte at least
				return nil, false
			}
			cmds = make([]*Command, n)
			slab := make([]Command, n)
			for i := range cmds {
				cmds[i] = &slab[i]
				r.command(cmds[i])
			}
		}
	} else {
		cmds = []*Command{new(Command)}
		r.command(cmds[0])
	}
	if !r.ok || len(r.b) != 0 {
		return nil, false
	}
	return cmds, true
}

func (r *cmdReader) fail() { r.ok, r.b = false, nil }

func (r *cmdReader) peek() byte {
	if len(r.b) == 0 {
		r.fail()
		return 0
	}
	return r.b[0]
}

// zeros is what a failed read of a number reads.
var zeros [8]byte

func (r *cmdReader) next(n int) []byte {
	if !r.ok || n > len(r.b) {
		r.fail()
		return zeros[:min(n, len(zeros))]
	}
	p := r.b[:n]
	r.b = r.b[n:]
	return p
}

func (r *cmdReader) u8() int  { return int(r.next(1)[0]) }
func (r *cmdReader) u16() int { return int(binary.BigEndian.Uint16(r.next(2))) }
func (r *cmdReader) u32() int { return int(binary.BigEndian.Uint32(r.next(4))) }

func (r *cmdReader) arrayLen() int { return r.length(0x90, 0xdc, 0xdd) }
func (r *cmdReader) mapLen() int   { return r.length(0x80, 0xde, 0xdf) }

// length reads the header of an array or a map: fix is the code of its
// fixed form of length 0, c16 and c32 those of its 16- and 32-bit forms.
func (r *cmdReader) length(fix, c16, c32 byte) int {
	switch c := r.peek(); {
	case c >= fix && c <= fix|0x0f:
		r.b = r.b[1:]
		return int(c & 0x0f)
	case c == c16:
		r.b = r.b[1:]
		return r.u16()
	case c == c32:
		r.b = r.b[1:]
		return r.u32()
	}
	r.fail()
	return 0
}

// raw reads a string's bytes; strings are the str family only.
func (r *cmdReader) raw() []byte {
	var n int
	switch c := r.peek(); {
	case c >= 0xa0 && c <= 0xbf:
		r.b = r.b[1:]
		n = int(c & 0x1f)
	case c == 0xd9:
		r.b = r.b[1:]
		n = r.u8()
	case c == 0xda:
		r.b = r.b[1:]
		n = r.u16()
	case c == 0xdb:
		r.b = r.b[1:]
		n = r.u32()
	default:
		r.fail()
	}
	return r.next(n)
}

// str reads a string, shared when it is a kind, an op or a field name:
// a batch repeats those 200,000 times.
func (r *cmdReader) str() string {
	p := r.raw()
	if s, ok := interned[string(p)]; ok {
		return s
	}
	return string(p)
}

// sharedStr reads a short string as one seen before, if it was.
func (r *cmdReader) sharedStr() string {
	p := r.raw()
	if s, ok := r.shared[string(p)]; ok {
		return s
	}
	s := string(p)
	if r.shared == nil {
		r.shared = map[string]string{}
	}
	if len(r.shared) < 1024 {
		r.shared[s] = s
	}
	return s
}

// fields reads a map of named fields: field reads the value of the one
// it is given the name of and returns that field's bit, or 0 for a name
// it does not know. An unknown or repeated name leaves the payload to
// msgpack.
func (r *cmdReader) fields(field func(name []byte) uint8) {
	n := r.mapLen()
	var seen uint8
	for range n {
		if !r.ok {
			return
		}
		bit := field(r.raw())
		if bit == 0 || seen&bit != 0 {
			r.fail()
		}
		seen |= bit
	}
}

func (r *cmdReader) command(c *Command) {
	r.fields(func(name []byte) uint8 {
		switch string(name) {
		case "op":
			c.Op = r.str()
			return 1
		case "kind":
			c.Kind = r.str()
			return 2
		case "key":
			c.Key = r.str()
			return 4
		case "named":
			c.Named = r.str()
			return 8
		case "new_id":
			// A declarative load names the id twice: one string.
			if p := r.raw(); string(p) == c.Key {
				c.NewID = c.Key
			} else {
				c.NewID = string(p)
			}
			return 16
		case "parent":
			c.Parent = r.parent()
			return 32
		case "body":
			if r.peek() == 0xc0 {
				r.b = r.b[1:]
				c.Body = nil
			} else {
				c.Body = r.object(0)
			}
			return 64
		}
		return 0
	})
}

func (r *cmdReader) parent() *Parent {
	if r.peek() == 0xc0 {
		r.b = r.b[1:]
		return nil
	}
	p := &Parent{}
	r.fields(func(name []byte) uint8 {
		switch string(name) {
		case "kind":
			p.Kind = r.str()
			return 1
		case "key":
			p.Key = r.str()
			return 2
		case "field":
			p.Field = r.str()
			return 4
		}
		return 0
	})
	if !r.ok {
		return nil
	}
	return p
}

func (r *cmdReader) object(depth int) map[string]any {
	n := r.mapLen()
	if depth > maxDepth || 2*n > len(r.b) {
		r.fail()
		return nil
	}
	m := make(map[string]any, n)
	for range n {
		k := r.str()
		if !r.ok {
			return nil
		}
		m[k] = r.value(depth + 1)
	}
	return m
}

// value reads one body value in the shape fixBody leaves it: numbers
// are float64.
func (r *cmdReader) value(depth int) any {
	c := r.peek()
	if !r.ok {
		return nil
	}
	switch {
	case c <= 0x7f:
		r.b = r.b[1:]
		return float64(c)
	case c >= 0xe0:
		r.b = r.b[1:]
		return float64(int8(c))
	case c >= 0x80 && c <= 0x8f, c == 0xde, c == 0xdf:
		if m := r.object(depth); r.ok {
			return m
		}
		return nil
	case c >= 0x90 && c <= 0x9f, c == 0xdc, c == 0xdd:
		n := r.arrayLen()
		if depth > maxDepth || n > len(r.b) {
			r.fail()
			return nil
		}
		s := make([]any, 0, n)
		for range n {
			if c := r.peek(); c >= 0xa0 && c <= 0xbf {
				s = append(s, r.sharedStr())
				continue
			}
			s = append(s, r.value(depth+1))
		}
		return s
	case c >= 0xa0 && c <= 0xbf, c == 0xd9, c == 0xda, c == 0xdb:
		return r.str()
	}
	r.b = r.b[1:]
	switch c {
	case 0xc0:
		return nil
	case 0xc2:
		return false
	case 0xc3:
		return true
	case 0xca:
		return float64(math.Float32frombits(binary.BigEndian.Uint32(r.next(4))))
	case 0xcb:
		return math.Float64frombits(binary.BigEndian.Uint64(r.next(8)))
	case 0xcc:
		return float64(r.u8())
	case 0xcd:
		return float64(r.u16())
	case 0xce:
		return float64(binary.BigEndian.Uint32(r.next(4)))
	case 0xcf:
		return float64(binary.BigEndian.Uint64(r.next(8)))
	case 0xd0:
		return float64(int8(r.u8()))
	case 0xd1:
		return float64(int16(r.u16()))
	case 0xd2:
		return float64(int32(binary.BigEndian.Uint32(r.next(4))))
	case 0xd3:
		return float64(int64(binary.BigEndian.Uint64(r.next(8))))
	}
	r.fail()
	return nil
}

// interned holds the strings a payload repeats: ops, kinds, and the
// field names of every schema.
var interned = func() map[string]string {
	m := map[string]string{}
	for _, s := range []string{log.OpCreate, log.OpUpsert, log.OpUpdate, log.OpDelete} {
		m[s] = s
	}
	for _, k := range Kinds {
		m[k] = k
	}
	for _, sch := range Schemas {
		for _, f := range sch.Fields {
			m[f.Name] = f.Name
			for _, sub := range f.Fields {
				m[sub.Name] = sub.Name
			}
		}
	}
	return m
}()

// decodeCommandsSlow is the reflective decoder, for what readCommands
// leaves to it.
func decodeCommandsSlow(ev *log.Event) ([]*Command, error) {
	if ev.Type == log.TypeBatch {
		var cmds []*Command
		if err := msgpack.Unmarshal(ev.Payload, &cmds); err != nil {
			return nil, fmt.Errorf("decode batch: %w", err)
		}
		for _, c := range cmds {
			fixBody(c)
		}
		return cmds, nil
	}
	var c Command
	if err := msgpack.Unmarshal(ev.Payload, &c); err != nil {
		return nil, fmt.Errorf("decode command: %w", err)
	}
	fixBody(&c)
	return []*Command{&c}, nil
}
