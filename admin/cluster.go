package admin

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/gatehouse-gw/gatehouse/cluster"
	"github.com/gatehouse-gw/gatehouse/fsm"
)

// Cluster is what the Admin API needs of the Raft node.
type Cluster interface {
	IsLeader() bool
	WaitLeader(ctx context.Context) (string, error)
	Role() string
	AppliedIndex() uint64
	CommitIndex() uint64
	LastContact() time.Time
	Peers() ([]cluster.Peer, error)
	Join(ctx context.Context, m fsm.Member) error
	Notify(m fsm.Member)
	Remove(ctx context.Context, id string) error
	ApplyMember(ctx context.Context, m fsm.Member) error
	AppendAnywhere(ctx context.Context, data []byte) error
	RestoreBackup(r io.ReadSeeker, size int64) error
	Ready() error
}

// Headers a follower adds when it forwards a write to the leader, so the
// event records the original client and request, not the follower.
const (
	hdrForwardedBy = "X-Gatehouse-Forwarded-By"
	hdrClientAddr  = "X-Gatehouse-Client-Addr"
	hdrRequestID   = "X-Gatehouse-Request-Id"
	hdrMinIndex    = "X-Gatehouse-Min-Index"
	// hdrDeadline (unix milliseconds) is when the forwarding follower
	// stops waiting. The leader refuses to start a write after it, so a
	// request that sat in a stopped leader's socket buffer cannot be
	// applied after the client was told 503.
	hdrDeadline = "X-Gatehouse-Deadline"
)

// localWrites are mutations that concern only the node they are sent to.
func localWrite(path string) bool {
	return strings.HasPrefix(path, "/cluster/notify") || strings.HasPrefix(path, "/schemas/") ||
		strings.HasPrefix(path, "/proxy-cache")
}

func isWrite(method string) bool {
	switch method {
	case "POST", "PUT", "PATCH", "DELETE":
		return true
	}
	return false
}

// forward sends a write received by a follower to the leader and relays the
// leader's response unchanged. It returns false when this node should
// handle the request itself.
func (s *Server) forward(w http.ResponseWriter, r *http.Request) bool {
	c := s.cfg.Cluster
	if c == nil || !isWrite(r.Method) || localWrite(r.URL.Path) || c.IsLeader() {
		return false
	}
	if r.Header.Get(hdrForwardedBy) != "" {
		// Leadership moved while the request was in flight; one hop only,
		// so a stale view can never loop a request between nodes.
		message(w, 503, "leadership changed while forwarding; retry the request")
		return true
	}
	wait := s.leaderWait()
	if r.URL.Path == "/cluster/join" {
		// A joining node tries every address in turn; one that knows no
		// leader (it is not in a cluster yet) must say so at once.
		wait = time.Millisecond
	}
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	target := ""
	for target == "" {
		id, err := c.WaitLeader(ctx)
		if err != nil {
			message(w, 503, "no cluster leader available; the write was not applied, retry later")
			return true
		}
		if id == s.cfg.NodeID {
			return false // elected meanwhile
		}
		if m, ok := s.cfg.Store.State().Members()[id]; ok && m.Admin != "" {
			target = cluster.AdminURL(m.Admin)
			break
		}
		select {
		case <-ctx.Done():
			message(w, 503, "cluster leader has not advertised its admin address yet; retry later")
			return true
		case <-time.After(50 * time.Millisecond):
		}
	}
	u, err := url.Parse(target)
	if err != nil {
		message(w, 500, "An unexpected error occurred")
		return true
	}
	client := clientAddr(r)
	if v := r.Header.Get(hdrClientAddr); v != "" && s.trustedPeer(r) {
		client = v
	}
	rp := &httputil.ReverseProxy{
		Transport: forwardTransport,
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.Out.Host = u.Host
			pr.Out.Header.Set(hdrForwardedBy, s.cfg.NodeID)
			pr.Out.Header.Set(hdrClientAddr, client)
			if pr.Out.Header.Get(hdrRequestID) == "" {
				pr.Out.Header.Set(hdrRequestID, NewUUID())
			}
			pr.Out.Header.Set(hdrDeadline, strconv.FormatInt(time.Now().Add(commitBound(r.URL.Path)).UnixMilli(), 10))
		},
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			message(w, 503, "cluster leader unreachable; the write may not have been applied: "+err.Error())
		},
	}
	// The leader's response carries its own copies of these.
	for _, h := range []string{"Server", "Access-Control-Allow-Origin"} {
		w.Header().Del(h)
	}
	// A leader that stopped (or is partitioned away) may still accept TCP
	// connections into its backlog, so the wait for its answer is bounded
	// too: a little above its own commit bound.
	fctx, fcancel := context.WithTimeout(r.Context(), commitBound(r.URL.Path)+2*time.Second)
	defer fcancel()
	rp.ServeHTTP(w, r.WithContext(fctx))
	return true
}

// forwardTransport keeps enough idle connections to the leader for many
// concurrent forwarded writes (the default keeps two per host, so a burst
// would open and close a connection per write).
var forwardTransport = &http.Transport{
	Proxy:               nil,
	DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
	MaxIdleConns:        256,
	MaxIdleConnsPerHost: 128,
	IdleConnTimeout:     90 * time.Second,
}

func (s *Server) leaderWait() time.Duration {
	if s.cfg.LeaderWait > 0 {
		return s.cfg.LeaderWait
	}
	return 5 * time.Second
}

// trustedPeer reports whether r comes from a cluster member's host, whose
// forwarding headers may then be believed. (Authenticated cluster traffic
// comes with mutual TLS.)
func (s *Server) trustedPeer(r *http.Request) bool {
	ip := clientAddr(r)
	for _, m := range s.cfg.Store.State().Members() {
		for _, a := range []string{m.Admin, m.Cluster} {
			if h, _, err := net.SplitHostPort(strings.TrimPrefix(strings.TrimPrefix(a, "http://"), "https://")); err == nil && h == ip {
				return true
			}
		}
	}
	return false
}

// forwardedDeadline applies the deadline a forwarding follower set. ok is
// false after a 503 was written for a request that arrived too late.
//
// The deadline is honoured from any sender, trusted peer or not: it can
// only make a request give up sooner, which harms no one but its sender.
// Asking for trust let a write through after its follower had answered
// 503: a leader frozen right after the cluster formed, before its
// members' addresses were registered, resumed, did not know the
// forwarder, and applied the write it should have refused.
func (s *Server) forwardedDeadline(w http.ResponseWriter, r *http.Request) (*http.Request, context.CancelFunc, bool) {
	v := r.Header.Get(hdrDeadline)
	if v == "" {
		return r, func() {}, true
	}
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return r, func() {}, true
	}
	dl := time.UnixMilli(ms)
	if time.Now().After(dl) {
		message(w, 503, "the forwarded write reached the leader after its deadline and was not applied; retry")
		return r, func() {}, false
	}
	ctx, cancel := context.WithDeadline(r.Context(), dl)
	return r.WithContext(ctx), cancel, true
}

// origin returns the client address, request id and receiving node a
// write is recorded with: the forwarding follower's, when trusted.
func (s *Server) origin(r *http.Request) (client, reqID, node string) {
	client, reqID, node = clientAddr(r), NewUUID(), s.cfg.NodeID
	if by := r.Header.Get(hdrForwardedBy); by != "" && s.trustedPeer(r) {
		node = by
		if v := r.Header.Get(hdrClientAddr); v != "" {
			client = v
		}
		if v := r.Header.Get(hdrRequestID); v != "" {
			reqID = v
		}
	}
	return client, reqID, node
}

// waitMinIndex holds a read until the local state reflects the index the
// client asks for (read-your-writes across nodes). ok is false after a
// response was written.
func (s *Server) waitMinIndex(w http.ResponseWriter, r *http.Request) bool {
	v := r.Header.Get(hdrMinIndex)
	if v == "" {
		v = r.URL.Query().Get("min_index")
	}
	if v == "" {
		return true
	}
	idx, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		message(w, 400, "min_index must be a non-negative integer")
		return false
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.leaderWait())
	defer cancel()
	if err := s.cfg.Store.WaitIndex(ctx, idx); err != nil {
		message(w, 503, "this node has not reached index "+v+" yet (at "+
			strconv.FormatUint(s.cfg.Store.State().Index, 10)+"); retry or ask another node")
		return false
	}
	return true
}

func (s *Server) clusterRoutes() {
	r := s.router
	r.HandleFunc("/cluster", s.clusterStatus).Methods("GET", "HEAD")
	r.HandleFunc("/cluster/join", s.clusterMember(func(ctx context.Context, m fsm.Member) error {
		return s.cfg.Cluster.Join(ctx, m)
	})).Methods("POST")
	r.HandleFunc("/cluster/members", s.clusterMember(func(ctx context.Context, m fsm.Member) error {
		return s.cfg.Cluster.ApplyMember(ctx, m)
	})).Methods("POST")
	r.HandleFunc("/cluster/notify", func(w http.ResponseWriter, req *http.Request) {
		var m fsm.Member
		if json.NewDecoder(req.Body).Decode(&m) != nil || m.ID == "" || m.Cluster == "" {
			message(w, 400, "expected {id, cluster_address, ...}")
			return
		}
		s.cfg.Cluster.Notify(m)
		message(w, 200, "noted")
	}).Methods("POST")
	r.HandleFunc("/cluster/events", s.appendEvent).Methods("POST")
	r.HandleFunc("/cluster/backup", s.backupArchive).Methods("GET")
	r.HandleFunc("/cluster/restore", s.restoreBackup).Methods("POST")
	r.HandleFunc("/cluster/members/{id}", func(w http.ResponseWriter, req *http.Request) {
		ctx, cancel := context.WithTimeout(req.Context(), 10*time.Second)
		defer cancel()
		if err := s.cfg.Cluster.Remove(ctx, mux.Vars(req)["id"]); err != nil {
			message(w, 503, err.Error())
			return
		}
		w.WriteHeader(204)
	}).Methods("DELETE")
}

func (s *Server) clusterMember(fn func(context.Context, fsm.Member) error) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		var m fsm.Member
		if json.NewDecoder(req.Body).Decode(&m) != nil || m.ID == "" || m.Cluster == "" {
			message(w, 400, "expected {id, cluster_address, admin_address, ...}")
			return
		}
		ctx, cancel := context.WithTimeout(req.Context(), 10*time.Second)
		defer cancel()
		if err := fn(ctx, m); err != nil {
			status := 503
			if errors.Is(err, cluster.ErrUntrustedPeer) {
				status = 403
			}
			message(w, status, err.Error())
			return
		}
		message(w, 200, "ok")
	}
}

// nodeStatus is this node's view of itself, also served in /status.
func (s *Server) nodeStatus() map[string]any {
	c := s.cfg.Cluster
	st := s.cfg.Store.State()
	leader, _ := c.WaitLeader(expired())
	out := map[string]any{
		"node_id": s.cfg.NodeID, "role": c.Role(), "leader": leader,
		"applied_index": c.AppliedIndex(), "commit_index": c.CommitIndex(),
		"config_index": st.Index, "config_hash": st.Hash(),
	}
	if lc := c.LastContact(); !lc.IsZero() {
		out["last_contact"] = lc.UTC().Format(time.RFC3339Nano)
	} else {
		out["last_contact"] = nil
	}
	return out
}

func expired() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

// clusterStatus serves GET /cluster: the Raft members with their
// addresses, and each one's own report of role and progress.
func (s *Server) clusterStatus(w http.ResponseWriter, r *http.Request) {
	peers, err := s.cfg.Cluster.Peers()
	if err != nil {
		message(w, 503, err.Error())
		return
	}
	self := s.nodeStatus()
	members := s.cfg.Store.State().Members()
	out := make([]any, len(peers))
	done := make(chan struct{}, len(peers))
	for i, p := range peers {
		m := members[p.ID]
		row := map[string]any{"id": p.ID, "voter": p.Voter, "cluster_address": p.Address,
			"admin_address": m.Admin, "proxy_address": m.Proxy, "status_address": m.Status, "gossip_address": m.Gossip,
			"role": "unknown", "applied_index": nil, "last_contact": nil}
		out[i] = row
		if p.ID == s.cfg.NodeID {
			row["role"], row["applied_index"], row["last_contact"] = self["role"], self["applied_index"], self["last_contact"]
			row["config_hash"] = self["config_hash"]
			done <- struct{}{}
			continue
		}
		go func() {
			defer func() { done <- struct{}{} }()
			if m.Admin == "" {
				return
			}
			ns, err := fetchStatus(r.Context(), cluster.AdminURL(m.Admin))
			if err != nil {
				row["role"] = "unreachable"
				return
			}
			for _, k := range []string{"role", "applied_index", "last_contact", "config_hash"} {
				row[k] = ns[k]
			}
		}()
	}
	for range peers {
		<-done
	}
	writeJSON(w, 200, map[string]any{"leader": self["leader"], "members": out})
}

func fetchStatus(ctx context.Context, adminURL string) (map[string]any, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", adminURL+"/status", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Cluster map[string]any `json:"cluster"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, err
	}
	return body.Cluster, nil
}
