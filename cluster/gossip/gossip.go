// Package gossip carries small, frequent, loss-tolerant state between the
// nodes of a cluster (rate-limit counters) over hashicorp/memberlist. It
// knows nothing of what it carries: a Payload produces this node's packets
// and consumes its peers'. Membership comes from the Raft configuration
// (every member registers its gossip address through the log), and
// memberlist's failure detector says which of those members are alive.
package gossip

import (
	"bytes"
	"errors"
	"fmt"
	stdlog "log"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// Payload is what the gossip carries, declared here by its consumer.
type Payload interface {
	// Packets returns this node's updates that are due, each at most max
	// bytes, at most budget packets; what does not fit waits.
	Packets(now time.Time, max, budget int) [][]byte
	// Receive takes one packet sent by node from.
	Receive(from string, now time.Time, packet []byte)
	// Forget drops what node reported: it left or was declared dead.
	Forget(node string)
	// SetMembership tells how many members this node can hear (itself
	// included) out of how many the cluster has.
	SetMembership(live, size int)
}

// Config configures a node's gossip.
type Config struct {
	NodeID string
	// Bind is the UDP and TCP address memberlist listens on; Advertise
	// what peers dial (defaults to Bind).
	Bind, Advertise string
	// Key, when set (16, 24 or 32 bytes), encrypts and authenticates
	// every gossip packet with AES-GCM; packets without it are refused.
	Key []byte
	// Tick is how often Payload.Packets is asked for due updates (each
	// counter keeps its own sync interval); default 10 ms.
	Tick time.Duration
}

// PacketSize is the largest packet handed to memberlist: its UDP buffer
// is 1400 bytes, less its own framing and the encryption overhead.
const PacketSize = 1200

// packetBudget bounds one round's packets (to each peer), so a flood of
// distinct keys cannot turn into a flood of datagrams; the rest is sent
// in the following rounds.
const packetBudget = 256

// Gossip is a running gossip member.
type Gossip struct {
	cfg     Config
	payload Payload
	ml      *memberlist.Memberlist
	// ready is set once ml is: memberlist reports its own join from
	// inside Create.
	ready atomic.Bool

	mu    sync.Mutex
	peers map[string]string // node id -> gossip address, from the Raft log

	joinc     chan struct{}
	stop      chan struct{}
	done      sync.WaitGroup
	closeOnce sync.Once
	closeErr  error

	sentPackets, sentBytes, recvPackets, recvBytes, badPackets, joins, leaves atomic.Int64
}

// Start joins nothing yet: it listens, and SetPeers tells it whom to join.
func Start(cfg Config, p Payload) (*Gossip, error) {
	if cfg.Tick <= 0 {
		cfg.Tick = 10 * time.Millisecond
	}
	host, port, err := splitAddr(cfg.Bind)
	if err != nil {
		return nil, fmt.Errorf("gossip listen %q: %w", cfg.Bind, err)
	}
	g := &Gossip{cfg: cfg, payload: p, peers: map[string]string{}, joinc: make(chan struct{}, 1),
		stop: make(chan struct{})}
	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.NodeID
	mc.BindAddr, mc.BindPort = host, port
	mc.AdvertiseAddr, mc.AdvertisePort = host, port
	if cfg.Advertise != "" {
		if mc.AdvertiseAddr, mc.AdvertisePort, err = splitAddr(cfg.Advertise); err != nil {
			return nil, fmt.Errorf("gossip advertise %q: %w", cfg.Advertise, err)
		}
	}
	if len(cfg.Key) > 0 {
		mc.SecretKey = cfg.Key
		mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = true, true
	}
	mc.Delegate = delegate{g}
	mc.Events = events{g}
	mc.Logger = stdlog.New(logWriter{}, "", 0)
	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("start gossip on %s: %w", cfg.Bind, err)
	}
	g.ml = ml
	g.ready.Store(true)
	g.done.Add(2)
	go g.sendLoop()
	go g.joinLoop()
	return g, nil
}

func splitAddr(a string) (string, int, error) {
	host, p, err := net.SplitHostPort(a)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, err
	}
	if host == "" {
		host = "0.0.0.0"
	}
	return host, port, nil
}

// SetPeers replaces the cluster's member list (node id -> gossip address,
// this node included). It is cheap: joining happens in the background.
func (g *Gossip) SetPeers(peers map[string]string) {
	g.mu.Lock()
	changed := len(peers) != len(g.peers)
	for id, a := range peers {
		if g.peers[id] != a {
			changed = true
		}
	}
	if changed {
		g.peers = make(map[string]string, len(peers))
		for id, a := range peers {
			g.peers[id] = a
		}
	}
	g.mu.Unlock()
	if changed {
		g.updateMembership()
		select {
		case g.joinc <- struct{}{}:
		default:
		}
	}
}

// updateMembership counts the members of the cluster this node can hear.
func (g *Gossip) updateMembership() {
	if !g.ready.Load() {
		return
	}
	g.mu.Lock()
	size := max(len(g.peers), 1)
	live := 0
	for _, m := range g.ml.Members() {
		if _, ok := g.peers[m.Name]; ok || m.Name == g.cfg.NodeID {
			live++
		}
	}
	if _, ok := g.peers[g.cfg.NodeID]; !ok {
		size++ // not yet registered itself
	}
	g.mu.Unlock()
	g.payload.SetMembership(min(live, size), size)
}

// joinLoop joins members of the cluster that memberlist does not know as
// alive: new members, and members that restarted after being declared
// dead. It retries every few seconds; each attempt is bounded by
// memberlist's TCP timeout.
func (g *Gossip) joinLoop() {
	defer g.done.Done()
	t := time.NewTicker(3 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-g.stop:
			return
		case <-g.joinc:
		case <-t.C:
		}
		alive := map[string]bool{}
		for _, m := range g.ml.Members() {
			alive[m.Name] = true
		}
		var addrs []string
		g.mu.Lock()
		for id, a := range g.peers {
			if id != g.cfg.NodeID && !alive[id] && a != "" {
				addrs = append(addrs, a)
			}
		}
		g.mu.Unlock()
		if len(addrs) > 0 {
			if n, err := g.ml.Join(addrs); err != nil {
				slog.Debug("gossip join", "addresses", addrs, "joined", n, "err", err)
			}
		}
		g.updateMembership()
	}
}

// sendLoop sends every due update to every live peer. Raft clusters are
// small (3 to 7 voters), so a direct send to each peer beats memberlist's
// epidemic broadcast, which would add hops and delay to every count.
func (g *Gossip) sendLoop() {
	defer g.done.Done()
	t := time.NewTicker(g.cfg.Tick)
	defer t.Stop()
	var header []byte
	header = append(header, wireVersion, byte(len(g.cfg.NodeID)))
	header = append(header, g.cfg.NodeID...)
	for {
		select {
		case <-g.stop:
			return
		case now := <-t.C:
			pkts := g.payload.Packets(now, PacketSize-len(header), packetBudget)
			if len(pkts) == 0 {
				continue
			}
			members := g.ml.Members()
			for _, p := range pkts {
				msg := make([]byte, 0, len(header)+len(p))
				msg = append(append(msg, header...), p...)
				for _, m := range members {
					if m.Name == g.cfg.NodeID {
						continue
					}
					if err := g.ml.SendBestEffort(m, msg); err != nil {
						slog.Debug("gossip send", "to", m.Name, "err", err)
						continue
					}
					g.sentPackets.Add(1)
					g.sentBytes.Add(int64(len(msg)))
				}
			}
		}
	}
}

// wireVersion prefixes every packet, with the sender's id: memberlist does
// not tell a delegate who sent a message.
const wireVersion = 1

var errBadPacket = errors.New("malformed gossip packet")

func parse(b []byte) (from string, body []byte, err error) {
	if len(b) < 2 || b[0] != wireVersion || len(b) < 2+int(b[1]) {
		return "", nil, errBadPacket
	}
	return string(b[2 : 2+int(b[1])]), b[2+int(b[1]):], nil
}

// Stats are the gossip counters shown in /status.
type Stats struct {
	Node            string   `json:"node"`
	Address         string   `json:"address"`
	Encrypted       bool     `json:"encrypted"`
	Members         []string `json:"members"`
	Alive           int      `json:"alive"`
	SentPackets     int64    `json:"sent_packets"`
	SentBytes       int64    `json:"sent_bytes"`
	ReceivedPackets int64    `json:"received_packets"`
	ReceivedBytes   int64    `json:"received_bytes"`
	BadPackets      int64    `json:"bad_packets"`
	Joins           int64    `json:"joins"`
	Leaves          int64    `json:"leaves"`
	Health          int      `json:"health_score"`
}

// Stats reports the gossip's counters and the members it hears.
func (g *Gossip) Stats() Stats {
	s := Stats{Node: g.cfg.NodeID, Address: g.ml.LocalNode().Address(), Encrypted: len(g.cfg.Key) > 0,
		SentPackets: g.sentPackets.Load(), SentBytes: g.sentBytes.Load(),
		ReceivedPackets: g.recvPackets.Load(), ReceivedBytes: g.recvBytes.Load(), BadPackets: g.badPackets.Load(),
		Joins: g.joins.Load(), Leaves: g.leaves.Load(), Health: g.ml.GetHealthScore()}
	for _, m := range g.ml.Members() {
		s.Members = append(s.Members, m.Name)
	}
	s.Alive = len(s.Members)
	return s
}

// Close leaves the gossip (peers forget this node's counts at once) and
// stops its goroutines.
func (g *Gossip) Close() error {
	g.closeOnce.Do(func() {
		close(g.stop)
		g.done.Wait()
		g.closeErr = g.ml.Leave(time.Second)
		if err := g.ml.Shutdown(); g.closeErr == nil {
			g.closeErr = err
		}
	})
	return g.closeErr
}

type delegate struct{ g *Gossip }

func (delegate) NodeMeta(int) []byte { return nil }

func (d delegate) NotifyMsg(b []byte) {
	from, body, err := parse(b)
	if err != nil || from == d.g.cfg.NodeID {
		d.g.badPackets.Add(1)
		return
	}
	d.g.recvPackets.Add(1)
	d.g.recvBytes.Add(int64(len(b)))
	d.g.payload.Receive(from, time.Now(), body)
}

func (delegate) GetBroadcasts(int, int) [][]byte { return nil }
func (delegate) LocalState(bool) []byte          { return nil }
func (delegate) MergeRemoteState([]byte, bool)   {}

type events struct{ g *Gossip }

func (e events) NotifyJoin(n *memberlist.Node) {
	e.g.joins.Add(1)
	go e.g.updateMembership()
}

func (e events) NotifyLeave(n *memberlist.Node) {
	if n.Name == e.g.cfg.NodeID {
		return
	}
	e.g.leaves.Add(1)
	slog.Info("gossip: member left or failed; its counts age out", "member", n.Name)
	e.g.payload.Forget(n.Name)
	go e.g.updateMembership()
}

func (events) NotifyUpdate(*memberlist.Node) {}

// logWriter sends memberlist's log lines ("[WARN] memberlist: ...") to
// slog at the level they name.
type logWriter struct{}

func (logWriter) Write(p []byte) (int, error) {
	line := string(bytes.TrimSpace(p))
	switch {
	case bytes.Contains(p, []byte("[ERR]")):
		slog.Error(line)
	case bytes.Contains(p, []byte("[WARN]")):
		slog.Warn(line)
	default:
		slog.Debug(line)
	}
	return len(p), nil
}
