package fsm

import (
	"log/slog"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// A bulk change (a declarative config, a consumer batch, a restore or a
// snapshot install) leaves gigabytes of garbage behind it at a million
// consumers: decoded commands, the old versions of replaced entities,
// the answer's rendering. Left to the pacer, that garbage is collected
// whenever allocation next crosses the goal, which after a load is under
// proxy traffic: a cycle marks the whole live heap (about 10 s on two
// cores at 3 GB) and took key-auth throughput to half and proxy p99 to
// three times its figure in the windows it fell in. So once bulk changes
// have stopped for a moment, the machine collects at once and returns
// the freed memory to the OS; the next cycle is then a live heap's worth
// of allocation away.
const (
	bulkChanges = 10_000          // changes in one apply that make it bulk
	bulkQuiet   = 2 * time.Second // no bulk apply for this long: collect
)

type collector struct {
	mu    sync.Mutex
	timer *time.Timer
	runs  atomic.Int64 // collections made, for the test
}

// soon (re)arms the collection: a load of many batches is collected
// once, after its last.
func (c *collector) soon() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.timer != nil {
		c.timer.Reset(bulkQuiet)
		return
	}
	c.timer = time.AfterFunc(bulkQuiet, c.now)
}

func (c *collector) now() {
	c.runs.Add(1)
	t0 := time.Now()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	slog.Info("collected after bulk changes", "took", time.Since(t0).Round(time.Millisecond),
		"heap_mb", ms.HeapAlloc>>20, "released_mb", ms.HeapReleased>>20)
}
