package fsm

import (
	"log/slog"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse-gw/gatehouse/log"
)

// A bulk change (a declarative config, a consumer batch, a restore or a
// snapshot install) leaves gigabytes of garbage behind it at a million
// consumers: decoded commands, the old versions of replaced entities,
// the answer's rendering. Left to the pacer, that garbage is collected
// whenever allocation next crosses the goal, which after a load is under
// proxy traffic: a cycle marks the whole live heap (about 10 s on two
// cores at 3 GB). So once bulk work has stopped for a moment, the machine
// collects at once and returns the freed memory to the OS; the next
// cycle is then a live heap's worth of allocation away.
//
// The same moment releases the history file's pages that the bulk
// commits mapped into the resident set (log.History.ReleaseMapped; a
// snapshot's dump of the history releases its own).
//
// "Stopped" has to see the whole of a load: between two consumer batches
// the machine is idle while the leader validates the next one, so that
// validation marks itself busy (Busy), and the quiet period only starts
// when neither is running. Collecting between batches made a load of ten
// batches a quarter slower.
const bulkChanges = 10_000 // changes in one apply that make it bulk

// bulkQuiet is how long bulk work must have stopped (a variable for the
// test).
var bulkQuiet = 5 * time.Second

// While bulk work runs, the collector's target is raised to
// bulkGCPercent (unless GOGC asks for more, or for none): a
// 100,000-consumer batch allocates about 2 GB, as much as the live heap
// midway through a million-consumer load, so at Go's default each batch
// was a full cycle, and its mark assists (2 to 3 s of CPU per cycle by
// gctrace) ran on the goroutines folding and answering. At 300, seven
// batches took 84 s instead of 103-109 s. The heap grows larger
// meanwhile, so unless GOMEMLIMIT is set, a soft limit of three quarters
// of the machine's (or cgroup's) memory holds it; the collection after
// bulk work restores both before it runs.
const bulkGCPercent = 300

type collector struct {
	mu      sync.Mutex
	busy    int  // bulk operations running (snapshots and history commits too)
	outside int  // of those, the ones outside the machine
	pending bool // bulk changes not yet collected
	timer   *time.Timer
	// folded counts the changes of bulk folds since the state was last
	// rebuilt (compact.go); compact, when set, is handed it before the
	// collection.
	folded  int
	compact func(folded int) (again bool)
	runs    atomic.Int64 // collections made, for the test
	history *log.History // its mapped pages are released too (nil in tests)

	boosted   bool  // the target is raised for bulk work
	prevGC    int   // the GC percent before it
	prevLimit int64 // the memory limit before it
}

// boostLocked raises the collector's target for bulk work.
func (c *collector) boostLocked() {
	if c.boosted {
		return
	}
	prev := debug.SetGCPercent(bulkGCPercent)
	if prev < 0 || prev >= bulkGCPercent {
		debug.SetGCPercent(prev) // GOGC=off, or already higher
		return
	}
	c.boosted, c.prevGC = true, prev
	c.prevLimit = debug.SetMemoryLimit(-1)
	if c.prevLimit == math.MaxInt64 {
		if total := memoryTotal(); total > 0 {
			debug.SetMemoryLimit(total / 4 * 3)
		}
	}
}

// unboostLocked restores the target bulk work raised.
func (c *collector) unboostLocked() {
	if !c.boosted {
		return
	}
	c.boosted = false
	debug.SetGCPercent(c.prevGC)
	debug.SetMemoryLimit(c.prevLimit)
}

// memoryTotal is the memory this process may use: the cgroup's limit if
// it has one, else the machine's (0 if neither can be read).
func memoryTotal() int64 {
	if b, err := os.ReadFile("/sys/fs/cgroup/memory.max"); err == nil {
		if n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && n > 0 {
			return n
		}
	}
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err == nil {
				return kb << 10
			}
		}
	}
	return 0
}

// Busy marks a bulk operation outside the machine (a declarative load's
// validation) as running until the returned function is called, so that
// the collection after bulk changes waits for it.
func (m *Machine) Busy() (done func()) { return m.collect.hold(true) }

// BulkRunning reports whether a bulk operation outside the machine is
// running: a declarative load being validated, whose event is on its
// way. The snapshot that applied bytes ask for waits for it too
// (cluster/raft.go).
func (m *Machine) BulkRunning() bool {
	m.collect.mu.Lock()
	defer m.collect.mu.Unlock()
	return m.collect.outside > 0
}

// hold marks bulk work as running until the returned function is called.
func (c *collector) hold(outside bool) (done func()) {
	n := 0
	if outside {
		n = 1
	}
	c.mu.Lock()
	c.busy++
	c.outside += n
	if outside {
		c.boostLocked()
	}
	if c.timer != nil {
		c.timer.Stop()
	}
	c.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.busy--
			c.outside -= n
			c.armLocked()
		})
	}
}

// boost raises the collector's target for bulk work starting here (a
// restore); bulk, once it has ended, lets the collection restore it.
func (c *collector) boost() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.boostLocked()
}

// bulk records bulk changes to collect once bulk work stops.
func (c *collector) bulk() { c.bulkFold(0) }

// bulkFold is bulk for a fold of n changes, which leaves the state's
// memory scattered (compact.go); a restore builds it compact.
func (c *collector) bulkFold(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.boostLocked()
	c.pending = true
	c.folded += n
	c.armLocked()
}

func (c *collector) armLocked() {
	if c.busy > 0 {
		return
	}
	if !c.pending {
		c.unboostLocked() // bulk work that changed nothing (a rejected load)
		return
	}
	if c.timer == nil {
		c.timer = time.AfterFunc(bulkQuiet, c.fire)
		return
	}
	c.timer.Reset(bulkQuiet)
}

func (c *collector) fire() {
	c.mu.Lock()
	if !c.pending || c.busy > 0 {
		c.mu.Unlock()
		return
	}
	c.pending = false
	folded := c.folded
	c.folded = 0
	c.unboostLocked()
	c.mu.Unlock()
	c.runs.Add(1)
	if c.compact != nil && folded > 0 && c.compact(folded) {
		c.mu.Lock()
		c.folded += folded
		c.mu.Unlock()
	}
	t0 := time.Now()
	// Two cycles, not one: bbolt returns the page buffers of a large
	// commit to a sync.Pool, which lets go of them only at the second
	// collection after (a heap profile after loading 1,000,000 consumers
	// held 507 MB of them).
	runtime.GC()
	debug.FreeOSMemory()
	if c.history != nil {
		if err := c.history.ReleaseMapped(); err != nil {
			slog.Warn("history pages not released", "err", err)
		}
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	slog.Info("collected after bulk changes", "took", time.Since(t0).Round(time.Millisecond),
		"heap_mb", ms.HeapAlloc>>20, "released_mb", ms.HeapReleased>>20)
}
