package cluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/raft"

	"github.com/gatehouse-gw/gatehouse/fsm"
	"github.com/gatehouse-gw/gatehouse/log"
)

// peerClient talks to other nodes' admin APIs (join, notify, register).
var peerClient = &http.Client{Timeout: 3 * time.Second}

// AdminURL normalises an admin address given as host:port or URL.
func AdminURL(a string) string {
	a = strings.TrimRight(strings.TrimSpace(a), "/")
	if !strings.Contains(a, "://") {
		a = "http://" + a
	}
	return a
}

// maintain runs for the node's lifetime: it forms or joins the cluster
// when this node has no Raft state yet, then keeps this node's advertised
// addresses registered in the replicated state.
func (n *Node) maintain() {
	defer n.wg.Done()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		if !n.hasState() {
			n.tryJoin()
		} else {
			n.register()
		}
		select {
		case <-n.done:
			return
		case <-tick.C:
		}
	}
}

func (n *Node) hasState() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.existing {
		// A node added by a leader has state once it has a configuration.
		if f := n.raft.GetConfiguration(); f.Error() == nil && len(f.Configuration().Servers) > 0 {
			n.existing = true
		}
	}
	return n.existing
}

// tryJoin asks each listed node to add this one; failing that, it
// announces itself so the nodes can bootstrap together (rqlite's
// join-then-notify).
func (n *Node) tryJoin() {
	req := n.cfg.Self
	req.ID = n.cfg.NodeID
	req.Cluster = string(n.trans.LocalAddr())
	for _, addr := range n.cfg.Join {
		u := AdminURL(addr)
		if u == AdminURL(n.cfg.Self.Admin) {
			continue
		}
		if err := n.post(u+"/cluster/join", req); err == nil {
			slog.Info("joined cluster", "via", u)
			n.mu.Lock()
			n.existing = true
			n.mu.Unlock()
			return
		}
	}
	if n.cfg.BootstrapExpect <= 1 {
		return
	}
	n.Notify(req)
	for _, addr := range n.cfg.Join {
		u := AdminURL(addr)
		if u != AdminURL(n.cfg.Self.Admin) {
			_ = n.post(u+"/cluster/notify", req)
		}
	}
}

func (n *Node) post(url string, body any) error {
	b, _ := json.Marshal(body)
	return n.send(context.Background(), url, "application/json", b)
}

// send POSTs to another node's admin API with this node's cluster token;
// a non-2xx answer is an error.
func (n *Node) send(ctx context.Context, url, contentType string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", contentType)
	if n.cfg.Token != "" {
		req.Header.Set("Kong-Admin-Token", n.cfg.Token)
	}
	resp, err := peerClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return nil
}

// Notify records that a node wants to form a cluster. Once BootstrapExpect
// nodes are known, this node bootstraps with all of them; every node does
// the same with the same list, which is how Raft expects a multi-node
// bootstrap to happen.
func (n *Node) Notify(m fsm.Member) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.existing || n.cfg.BootstrapExpect <= 1 {
		return
	}
	n.notified[m.ID] = m
	if len(n.notified) < n.cfg.BootstrapExpect {
		return
	}
	ids := make([]string, 0, len(n.notified))
	for id := range n.notified {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var servers []raft.Server
	for _, id := range ids {
		servers = append(servers, raft.Server{ID: raft.ServerID(id), Address: raft.ServerAddress(n.notified[id].Cluster)})
	}
	err := n.raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error()
	if err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
		slog.Error("bootstrap failed", "err", err)
		return
	}
	slog.Info("bootstrapped cluster", "servers", ids)
	n.existing = true
}

// Join adds a node as a voter and records its addresses. Leader only.
func (n *Node) Join(ctx context.Context, m fsm.Member) error {
	if n.raft.State() != raft.Leader {
		return ErrNotLeader
	}
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return err
	}
	present := false
	for _, s := range f.Configuration().Servers {
		if string(s.ID) == m.ID && string(s.Address) == m.Cluster {
			present = true
		} else if string(s.ID) == m.ID || string(s.Address) == m.Cluster {
			// Same id at a new address (or the reverse): replace it.
			if err := n.raft.RemoveServer(s.ID, 0, 0).Error(); err != nil {
				return fmt.Errorf("remove stale server %s: %w", s.ID, err)
			}
		}
	}
	if !present {
		if n.stream != nil {
			if err := n.stream.probe(m.Cluster); err != nil {
				return fmt.Errorf("refusing to add %s: %w", m.ID, err)
			}
		}
		if err := n.raft.AddVoter(raft.ServerID(m.ID), raft.ServerAddress(m.Cluster), 0, 0).Error(); err != nil {
			return fmt.Errorf("add voter %s: %w", m.ID, err)
		}
	}
	return n.ApplyMember(ctx, m)
}

// Remove takes a node out of the cluster. Leader only.
func (n *Node) Remove(ctx context.Context, id string) error {
	if n.raft.State() != raft.Leader {
		return ErrNotLeader
	}
	if err := n.raft.RemoveServer(raft.ServerID(id), 0, 0).Error(); err != nil {
		return fmt.Errorf("remove server %s: %w", id, err)
	}
	return n.ApplyMember(ctx, fsm.Member{ID: id, Removed: true})
}

// ApplyMember records a node's addresses in the replicated state.
func (n *Node) ApplyMember(ctx context.Context, m fsm.Member) error {
	payload, err := fsm.EncodeMember(m)
	if err != nil {
		return err
	}
	data, err := log.Encode(&log.Event{Type: log.TypeMember, Time: time.Now().UnixNano(), Actor: "cluster",
		Node: n.cfg.NodeID, Op: "member", Entity: "members", EntityID: m.ID, Payload: payload})
	if err != nil {
		return err
	}
	res, err := n.Apply(ctx, data)
	if err != nil {
		return err
	}
	if res.Err != nil {
		return res.Err
	}
	return nil
}

func (n *Node) self() fsm.Member {
	self := n.cfg.Self
	self.ID = n.cfg.NodeID
	self.Cluster = string(n.trans.LocalAddr())
	self.Snapshot = fsm.SnapshotVersion
	return self
}

// registered reports whether the state holds this node's current record.
// While a leader from before Member.Snapshot leads (a rolling upgrade),
// the snapshot version is left out: that leader drops the field from
// what it applies, and the record would be posted again every tick.
func (n *Node) registered() bool {
	leader := ""
	if !n.IsLeader() {
		leader, _ = n.Leader()
	}
	return isRegistered(n.machine.State().Members(), n.self(), leader)
}

// isRegistered is registered for a state's members, this node's record
// and the leader's id ("" when this node leads).
func isRegistered(members map[string]fsm.Member, self fsm.Member, leader string) bool {
	cur, ok := members[self.ID]
	if !ok {
		return false
	}
	if lm, ok := members[leader]; ok && leader != "" && lm.Snapshot == 0 {
		cur.Snapshot = self.Snapshot
	}
	return cur == self
}

// WaitRegistered blocks (bounded by ctx) until this node's addresses are
// in the replicated state. Serving only after that keeps the member event
// from landing in the middle of a client's first writes, and lets the
// other nodes forward to this one as soon as it answers.
func (n *Node) WaitRegistered(ctx context.Context) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if n.registered() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// register makes sure this node's own addresses are in the replicated
// state, so any node can find it (and forward to it when it leads).
func (n *Node) register() {
	if n.IsLeader() && len(n.machine.State().Salt()) == 0 {
		n.chooseSalt()
	}
	if n.registered() {
		return
	}
	self := n.self()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if n.IsLeader() {
		if err := n.ApplyMember(ctx, self); err != nil {
			slog.Debug("register self", "err", err)
		}
		return
	}
	leader, _ := n.Leader()
	lm, ok := n.machine.State().Members()[leader]
	if !ok || lm.Admin == "" {
		return
	}
	if err := n.post(AdminURL(lm.Admin)+"/cluster/members", self); err != nil {
		slog.Debug("register with leader", "err", err)
	}
}

// chooseSalt appends the cluster's audit HMAC key. The first one
// committed wins; a second (from a leader change mid-way) is ignored by
// the fold.
func (n *Node) chooseSalt() {
	salt := make([]byte, 32)
	if _, err := rand.Read(salt); err != nil {
		slog.Error("audit salt", "err", err)
		return
	}
	data, err := log.Encode(&log.Event{Type: log.TypeSalt, Time: time.Now().UnixNano(), Actor: "cluster",
		Node: n.cfg.NodeID, Op: "create", Entity: "audit_salt", Payload: salt})
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := n.Apply(ctx, data); err != nil {
		slog.Debug("audit salt", "err", err)
	}
}

// Role is this node's Raft role: leader, follower, candidate or shutdown.
func (n *Node) Role() string { return strings.ToLower(n.raft.State().String()) }

// AppliedIndex is the last log index applied here (all entry types).
func (n *Node) AppliedIndex() uint64 { return n.raft.AppliedIndex() }

// CommitIndex is the commit index this node knows of.
func (n *Node) CommitIndex() uint64 {
	var c uint64
	fmt.Sscan(n.raft.Stats()["commit_index"], &c)
	return c
}

// LastContact is when this node last heard from the leader (zero on the
// leader itself, which is always in contact).
func (n *Node) LastContact() time.Time {
	if n.IsLeader() {
		return time.Now()
	}
	return n.raft.LastContact()
}

// Peer is one server in the Raft configuration.
type Peer struct {
	ID, Address string
	Voter       bool
}

// Peers lists the Raft configuration.
func (n *Node) Peers() ([]Peer, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, err
	}
	var out []Peer
	for _, s := range f.Configuration().Servers {
		out = append(out, Peer{ID: string(s.ID), Address: string(s.Address), Voter: s.Suffrage == raft.Voter})
	}
	return out, nil
}

// Ready reports whether this node can serve consistent config: it knows a
// leader and has applied everything it knows to be committed.
func (n *Node) Ready() error {
	if id, _ := n.Leader(); id == "" {
		return ErrNoLeader
	}
	if a, c := n.AppliedIndex(), n.CommitIndex(); a < c {
		return fmt.Errorf("applying the log: %d of %d", a, c)
	}
	return nil
}

// WaitLeader waits (bounded by the node's LeaderWait and ctx) for a leader
// to be known, returning its id.
func (n *Node) WaitLeader(ctx context.Context) (string, error) {
	if err := n.waitLeader(ctx); err != nil {
		return "", err
	}
	id, _ := n.Leader()
	return id, nil
}

// AppendAnywhere appends an encoded event from any node: directly on the
// leader, otherwise through the leader's admin API (authenticated with the
// cluster token). Used for records that must enter the replicated history
// but are produced where a request was refused, on any node.
func (n *Node) AppendAnywhere(ctx context.Context, data []byte) error {
	if n.IsLeader() {
		res, err := n.Apply(ctx, data)
		if err != nil {
			return err
		}
		if res.Err != nil {
			return res.Err
		}
		return nil
	}
	leader, _ := n.Leader()
	lm, ok := n.machine.State().Members()[leader]
	if !ok || lm.Admin == "" {
		return ErrNoLeader
	}
	return n.send(ctx, AdminURL(lm.Admin)+"/cluster/events", "application/octet-stream", data)
}

// RestoreBackup replaces the whole cluster's state with a backup written
// by fsm.Machine.Persist: Raft installs it as a snapshot on the leader and
// ships it to the followers (disaster recovery into a fresh cluster; the
// current configuration and history are replaced). Leader only.
func (n *Node) RestoreBackup(r io.ReadSeeker, size int64) error {
	if !n.IsLeader() {
		return ErrNotLeader
	}
	// Raft gives the installed snapshot an index past both its own log
	// and the one named here: naming the backup's index keeps the log
	// index from ever going backwards relative to the history it now
	// holds, so new events are numbered after the backup's.
	index, err := fsm.SnapshotIndex(r)
	if err != nil {
		return fmt.Errorf("restore backup: %w", err)
	}
	meta := &raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Size: size, Index: index}
	if err := n.raft.Restore(meta, r, time.Minute); err != nil {
		return fmt.Errorf("restore backup: %w", err)
	}
	return nil
}
