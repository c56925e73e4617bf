package ratelimiting

import (
	"bytes"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// wireReport is a Report as sent: a msgpack array, not a map, so a
// report costs its key plus at most 37 bytes.
type wireReport struct {
	_msgpack struct{} `msgpack:",as_array"`
	Key      string
	Size     int64
	Start    int64
	Expires  int64
	Count    int64
}

// reportOverhead bounds the encoded size of a report beyond its key: an
// array header, a string header and four int64s.
const reportOverhead = 1 + 3 + 4*9

// Packets encodes this node's due reports as packets of at most max bytes
// each, at most budget of them. Only counts that changed are sent, and
// each is the node's own absolute count, so a lost or repeated packet
// never corrupts a peer's view: the next report replaces it.
func (s *Store) Packets(now time.Time, max, budget int) [][]byte {
	var out [][]byte
	var batch []wireReport
	size := 3 // array header
	flush := func() {
		if len(batch) == 0 {
			return
		}
		b, err := msgpack.Marshal(batch)
		if err == nil {
			out = append(out, b)
		}
		batch, size = batch[:0], 3
	}
	s.Collect(now, func(r Report) bool {
		n := len(r.Key) + reportOverhead
		if size+n > max {
			flush()
			if len(out) >= budget {
				return false
			}
		}
		batch = append(batch, wireReport{Key: r.Key, Size: r.Size, Start: r.Start, Expires: r.Expires, Count: r.Count})
		size += n
		return true
	})
	if len(out) < budget {
		flush()
	}
	return out
}

// Receive merges a packet of reports from node from; a malformed packet
// is dropped whole.
func (s *Store) Receive(from string, now time.Time, packet []byte) {
	d := msgpack.NewDecoder(bytes.NewReader(packet))
	n, err := d.DecodeArrayLen()
	// Each report takes at least 6 bytes: a length that the packet cannot
	// hold is a lie, and must not size an allocation (found by FuzzReceive).
	if err != nil || n < 0 || n > len(packet)/6 {
		return
	}
	reps := make([]Report, 0, n)
	for i := 0; i < n; i++ {
		var w wireReport
		if err := d.Decode(&w); err != nil {
			return
		}
		reps = append(reps, Report{Key: w.Key, Size: w.Size, Start: w.Start, Expires: w.Expires, Count: w.Count})
	}
	s.Merge(from, now, reps)
}
