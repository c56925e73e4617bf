// Package cluster runs the Raft node that orders Gatehouse's events: it
// opens the log and stable stores, bootstraps a new cluster, appends events
// on the leader and hands committed entries to the fsm.Machine.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	bolt "go.etcd.io/bbolt"

	"github.com/gatehouse-gw/gatehouse/fsm"
)

// ErrNoLeader is returned when no leader emerged within the wait bound.
var ErrNoLeader = errors.New("no cluster leader available")

// ErrNotLeader is returned by Apply on a follower.
var ErrNotLeader = errors.New("this node is not the leader")

// Config configures a node.
type Config struct {
	NodeID   string
	DataDir  string
	BindAddr string // Raft transport address, host:port
	// LeaderWait bounds how long a write waits for a leader.
	LeaderWait time.Duration
	// Self is what this node advertises to the others.
	Self fsm.Member
	// Join lists other nodes' admin addresses (URLs or host:port). With
	// BootstrapExpect N > 1, nodes that find no cluster to join form one
	// as soon as N of them (this one included) have announced themselves.
	Join            []string
	BootstrapExpect int
	// SnapshotThreshold is the number of log entries between snapshots
	// (0: 8192, Raft's default).
	SnapshotThreshold uint64
	// SnapshotBytes is how many bytes of applied entries make the node
	// snapshot even before SnapshotThreshold entries (0: 64 MiB).
	SnapshotBytes int64
	// Token authenticates this node's calls to the others' admin APIs
	// when admin authentication is on.
	Token string
	// TLS enables mutual TLS on the Raft transport.
	TLS TLSFiles
}

// Node is one Raft member.
type Node struct {
	cfg     Config
	raft    *raft.Raft
	store   *raftboltdb.BoltStore
	trans   *raft.NetworkTransport
	machine *fsm.Machine
	// startIndex is the last log index on disk when the node opened.
	startIndex uint64
	// stream is the mutual-TLS transport layer, nil without cluster TLS.
	stream *tlsStream

	mu       sync.Mutex
	existing bool                  // had Raft state, or has joined/bootstrapped since
	notified map[string]fsm.Member // nodes that announced themselves (bootstrap-expect)
	done     chan struct{}
	wg       sync.WaitGroup
}

// raftDir holds the Raft log (raft.db), its bulk files and snapshots.
func raftDir(dataDir string) string { return filepath.Join(dataDir, "raft") }

// HasState reports whether dataDir already holds a node's Raft log.
func HasState(dataDir string) bool {
	_, err := os.Stat(filepath.Join(raftDir(dataDir), "raft.db"))
	return err == nil
}

// Open starts the Raft node. On a data dir with no Raft state it
// bootstraps a one-node cluster with itself as the only voter; on a
// restart it recovers from its snapshot and log.
func Open(cfg Config, m *fsm.Machine) (*Node, error) {
	if cfg.LeaderWait == 0 {
		cfg.LeaderWait = 5 * time.Second
	}
	dir := raftDir(cfg.DataDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create raft dir: %w", err)
	}
	// The map freelist finds room for a large entry (a restore or a
	// declarative config: megabytes) without scanning the array one, and
	// etcd's NoFreelistSync keeps it out of every commit.
	store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db"),
		BoltOptions: &bolt.Options{Timeout: time.Second, FreelistType: bolt.FreelistMapType, NoFreelistSync: true}})
	if err != nil {
		return nil, fmt.Errorf("open raft store: %w", err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, hlog("raft-snapshot"))
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("open snapshot store: %w", err)
	}
	addr, err := net.ResolveTCPAddr("tcp", cfg.BindAddr)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("resolve cluster address %q: %w", cfg.BindAddr, err)
	}
	var trans *raft.NetworkTransport
	var stream *tlsStream
	if cfg.TLS.enabled() {
		server, client, err := cfg.TLS.tlsConfigs()
		if err != nil {
			store.Close()
			return nil, err
		}
		if stream, err = newTLSStream(cfg.BindAddr, addr, server, client); err != nil {
			store.Close()
			return nil, err
		}
		trans = raft.NewNetworkTransportWithLogger(stream, 3, 10*time.Second, hlog("raft-net"))
	} else {
		trans, err = raft.NewTCPTransportWithLogger(cfg.BindAddr, addr, 3, 10*time.Second, hlog("raft-net"))
		if err != nil {
			store.Close()
			return nil, fmt.Errorf("listen on cluster address %s: %w", cfg.BindAddr, err)
		}
	}
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.Logger = hlog("raft")
	// Let concurrent admin writes share one fsync (Vault does the same).
	rc.BatchApplyCh = true
	rc.HeartbeatTimeout = 500 * time.Millisecond
	rc.ElectionTimeout = 500 * time.Millisecond
	rc.LeaderLeaseTimeout = 250 * time.Millisecond
	// Followers learn that an entry is committed from the leader's next
	// AppendEntries. Raft waits CommitTimeout (50 ms by default) before
	// sending one when no new entry comes, which shows up directly as
	// propagation latency; 5 ms keeps it small at negligible cost.
	rc.CommitTimeout = 5 * time.Millisecond
	rc.MaxAppendEntries = 256
	if cfg.SnapshotThreshold > 0 {
		rc.SnapshotThreshold = cfg.SnapshotThreshold
		// Keep a tail somewhat longer than the threshold (rqlite uses
		// 1.25×) so a briefly lagging follower catches up from the log.
		rc.TrailingLogs = cfg.SnapshotThreshold + cfg.SnapshotThreshold/4
		rc.SnapshotInterval = 5 * time.Second
	} else {
		rc.SnapshotInterval = 30 * time.Second
	}

	existing, err := raft.HasExistingState(store, store, snaps)
	if err != nil {
		store.Close()
		trans.Close()
		return nil, fmt.Errorf("inspect raft state: %w", err)
	}
	// Entries over 64 KiB keep their data in files beside raft.db
	// (bulklog.go says why).
	bulk, err := openBulkLogs(store, filepath.Join(dir, "bulk"), 64<<10)
	if err != nil {
		store.Close()
		trans.Close()
		return nil, err
	}
	// The recent entries are kept decoded in memory, as Consul does,
	// within 64 MiB (logcache.go says why).
	logs := newLogCache(64, 64<<20, bulk)
	ad := &adapter{m: m, snapshotBytes: cfg.SnapshotBytes, bulkRunning: m.BulkRunning}
	if ad.snapshotBytes <= 0 {
		ad.snapshotBytes = 64 << 20
	}
	r, err := raft.NewRaft(rc, ad, logs, store, snaps, trans)
	if err != nil {
		store.Close()
		trans.Close()
		return nil, fmt.Errorf("start raft: %w", err)
	}
	if !existing && len(cfg.Join) == 0 && cfg.BootstrapExpect <= 1 {
		f := r.BootstrapCluster(raft.Configuration{Servers: []raft.Server{{
			ID: rc.LocalID, Address: trans.LocalAddr(),
		}}})
		if err := f.Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			r.Shutdown()
			store.Close()
			return nil, fmt.Errorf("bootstrap cluster: %w", err)
		}
	}
	last, err := store.LastIndex()
	if err != nil {
		r.Shutdown()
		store.Close()
		return nil, fmt.Errorf("read last log index: %w", err)
	}
	ad.raft.Store(r)
	n := &Node{cfg: cfg, raft: r, store: store, trans: trans, stream: stream, machine: m, startIndex: last,
		existing: existing, notified: map[string]fsm.Member{}, done: make(chan struct{})}
	n.wg.Add(1)
	go n.maintain()
	return n, nil
}

// WaitReplay blocks until the entries that were in the log at startup
// have been applied, so a restarted node does not serve an empty or stale
// configuration. Raft only applies them once a leader has committed in
// its term, which needs a quorum: the wait is bounded by ctx.
func (n *Node) WaitReplay(ctx context.Context) error {
	// Raft's applied index also counts configuration and no-op entries,
	// which never reach the fsm, so poll it rather than the fsm's index.
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for n.raft.AppliedIndex() < n.startIndex {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

func hlog(name string) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: name, Level: hclog.Warn, Output: os.Stderr})
}

// Apply appends an encoded event and waits until it is committed and
// applied here, returning the fold's result. It waits a bounded time for a
// leader to exist.
func (n *Node) Apply(ctx context.Context, data []byte) (*fsm.Result, error) {
	if err := n.waitLeader(ctx); err != nil {
		return nil, err
	}
	if n.raft.State() != raft.Leader {
		return nil, ErrNotLeader
	}
	timeout := 10 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	f := n.raft.Apply(data, timeout)
	if err := f.Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return nil, ErrNotLeader
		}
		return nil, fmt.Errorf("append event: %w", err)
	}
	res, _ := f.Response().(*fsm.Result)
	if res == nil {
		return nil, errors.New("append event: no result from state machine")
	}
	return res, nil
}

func (n *Node) waitLeader(ctx context.Context) error {
	deadline := time.Now().Add(n.cfg.LeaderWait)
	for {
		if addr, _ := n.raft.LeaderWithID(); addr != "" {
			return nil
		}
		if time.Now().After(deadline) {
			return ErrNoLeader
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// IsLeader reports whether this node currently leads.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Leader returns the leader's id and Raft address ("" when unknown).
func (n *Node) Leader() (id, addr string) {
	a, i := n.raft.LeaderWithID()
	return string(i), string(a)
}

// Stats returns Raft's own counters.
func (n *Node) Stats() map[string]string { return n.raft.Stats() }

// Close leaves the Raft node running state cleanly.
func (n *Node) Close() error {
	close(n.done)
	n.wg.Wait()
	err := n.raft.Shutdown().Error()
	n.trans.Close()
	if cerr := n.store.Close(); err == nil {
		err = cerr
	}
	return err
}

// adapter is the raft.FSM: three thin methods delegating to fsm.Machine.
type adapter struct {
	m    *fsm.Machine
	raft atomic.Pointer[raft.Raft]
	// unsnapshotted counts the bytes of entries applied since the last
	// snapshot. Raft snapshots by entry count, and a few bulk writes
	// (declarative configs, restores) are few entries but many
	// megabytes: a restart would fold them all again (a minute at
	// 1,000,000 consumers). Past snapshotBytes the adapter asks for a
	// snapshot itself.
	unsnapshotted atomic.Int64
	snapshotBytes int64
	snapping      atomic.Bool

	lastBulk atomic.Int64 // when an entry of bulkEntry bytes or more last applied (UnixNano)
	// bulkRunning reports a declarative load being validated (m's).
	bulkRunning func() bool
	quietMu     sync.Mutex
	quietWait   *time.Timer // for the pause after bulk entries
}

// A snapshot that the bytes applied ask for waits for bulk entries to
// pause for snapshotQuiet, and for the machine to finish validating a
// declarative load (its entry is on its way), unless snapshotDefer times
// snapshotBytes are waiting. Each snapshot writes the whole state and
// history: at 1,000,000 consumers, gigabytes and about 3 s of CPU, taken
// every other batch of a load in batches (37 MB each) while the load
// shared the two cores with it. The pause alone was not enough: a batch
// of 100,000 consumers takes longer than it to validate. The cap bounds
// what a restart after a crash mid-load folds again.
const (
	bulkEntry     = 1 << 20
	snapshotQuiet = 2 * time.Second
	snapshotDefer = 4
)

var (
	_ raft.FSM         = (*adapter)(nil)
	_ raft.BatchingFSM = (*adapter)(nil)
)

func (a *adapter) Apply(l *raft.Log) any { return a.ApplyBatch([]*raft.Log{l})[0] }

func (a *adapter) ApplyBatch(logs []*raft.Log) []any {
	out := make([]any, len(logs))
	entries := make([]fsm.Entry, 0, len(logs))
	pos := make([]int, 0, len(logs))
	for i, l := range logs {
		if l.Type == raft.LogCommand {
			entries = append(entries, fsm.Entry{Index: l.Index, Data: l.Data})
			pos = append(pos, i)
		}
	}
	if len(entries) == 0 {
		return out
	}
	for i, r := range a.m.ApplyBatch(entries) {
		out[pos[i]] = r
	}
	for _, e := range entries {
		a.unsnapshotted.Add(int64(len(e.Data)))
		if len(e.Data) >= bulkEntry {
			a.lastBulk.Store(time.Now().UnixNano())
		}
	}
	a.maybeSnapshot()
	return out
}

// maybeSnapshot asks Raft for a snapshot once snapshotBytes of entries
// wait for one, after the pause in bulk entries the constants above
// describe; before it, it sets a timer to ask again.
func (a *adapter) maybeSnapshot() {
	wait, due := a.snapshotDue(time.Now())
	if !due {
		return
	}
	if wait > 0 {
		a.quietMu.Lock()
		defer a.quietMu.Unlock()
		if a.quietWait == nil {
			a.quietWait = time.AfterFunc(wait, a.maybeSnapshot)
		} else {
			a.quietWait.Reset(wait)
		}
		return
	}
	r := a.raft.Load()
	if r == nil || !a.snapping.CompareAndSwap(false, true) {
		return
	}
	// Not on this goroutine: Raft takes the snapshot through the FSM
	// loop that applies call this on.
	go func() {
		defer a.snapping.Store(false)
		err := r.Snapshot().Error()
		if err != nil && !errors.Is(err, raft.ErrNothingNewToSnapshot) && !errors.Is(err, raft.ErrRaftShutdown) {
			slog.Warn("snapshot after bulk writes failed", "err", err)
		}
	}()
}

// snapshotDue reports whether the bytes applied ask for a snapshot, and
// how long it should wait for bulk work to pause first.
func (a *adapter) snapshotDue(now time.Time) (wait time.Duration, due bool) {
	n := a.unsnapshotted.Load()
	if n <= a.snapshotBytes {
		return 0, false
	}
	if n > snapshotDefer*a.snapshotBytes {
		return 0, true
	}
	if a.bulkRunning != nil && a.bulkRunning() {
		// The next batch is being validated: its entry follows.
		return snapshotQuiet, true
	}
	return max(0, snapshotQuiet-now.Sub(time.Unix(0, a.lastBulk.Load()))), true
}

func (a *adapter) Snapshot() (raft.FSMSnapshot, error) {
	a.unsnapshotted.Store(0)
	return &snapshot{m: a.m, s: a.m.State()}, nil
}

func (a *adapter) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	return a.m.Restore(rc)
}

type snapshot struct {
	m *fsm.Machine
	s *fsm.State
}

func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	if err := s.m.Persist(s.s, sink); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *snapshot) Release() {}
