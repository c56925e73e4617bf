package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/test/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

const (
	// clusterSize is the number of nodes every test cluster has.
	clusterSize = 3
	// leaderTimeout bounds waiting for an elected leader that every node
	// agrees on.
	leaderTimeout = 15 * time.Second
	// convergeTimeout bounds waiting for nodes to hold the same state.
	convergeTimeout = 15 * time.Second
	// pollInterval is the pause between two polls.
	pollInterval = 100 * time.Millisecond
)

// member is one entry of GET /cluster's "members".
type member struct {
	ID             string  `json:"id"`
	Role           string  `json:"role"`
	ClusterAddress string  `json:"cluster_address"`
	AdminAddress   string  `json:"admin_address"`
	ProxyAddress   string  `json:"proxy_address"`
	AppliedIndex   *uint64 `json:"applied_index"`
	LastContact    *string `json:"last_contact"`
	ConfigHash     string  `json:"config_hash"`
	Voter          bool    `json:"voter"`
}

// clusterView is GET /cluster on the Admin API.
type clusterView struct {
	Leader  string   `json:"leader"`
	Members []member `json:"members"`
}

func (v clusterView) member(id string) (member, bool) {
	for _, m := range v.Members {
		if m.ID == id {
			return m, true
		}
	}
	return member{}, false
}

// nodeStatus is the "cluster" object of GET /status on the Admin API.
type nodeStatus struct {
	NodeID       string  `json:"node_id"`
	Role         string  `json:"role"`
	Leader       string  `json:"leader"`
	AppliedIndex uint64  `json:"applied_index"`
	CommitIndex  uint64  `json:"commit_index"`
	ConfigIndex  uint64  `json:"config_index"`
	ConfigHash   string  `json:"config_hash"`
	LastContact  *string `json:"last_contact"`
}

func (s nodeStatus) String() string {
	return fmt.Sprintf("%s: role=%s leader=%q applied=%d commit=%d config_index=%d config_hash=%.12s",
		s.NodeID, s.Role, s.Leader, s.AppliedIndex, s.CommitIndex, s.ConfigIndex, s.ConfigHash)
}

// getJSON GETs u and decodes a 200 JSON answer into v, without a test (for
// polling).
func getJSON(u string, v any) error {
	r, err := harness.Try(harness.Request{URL: u})
	if err != nil {
		return err
	}
	if r.Status != http.StatusOK {
		return fmt.Errorf("%s", r)
	}
	if err := json.Unmarshal(r.Body, v); err != nil {
		return fmt.Errorf("decoding %s: %v", r, err)
	}
	return nil
}

// viewOf reads GET /cluster from n.
func viewOf(n *harness.Node) (clusterView, error) {
	var v clusterView
	err := getJSON(n.Admin("/cluster"), &v)
	return v, err
}

// statusOf reads the cluster part of GET /status from n.
func statusOf(n *harness.Node) (nodeStatus, error) {
	var s struct {
		Cluster *nodeStatus `json:"cluster"`
	}
	if err := getJSON(n.Admin("/status"), &s); err != nil {
		return nodeStatus{}, err
	}
	if s.Cluster == nil {
		return nodeStatus{}, fmt.Errorf("GET %s: no \"cluster\" object", n.Admin("/status"))
	}
	return *s.Cluster, nil
}

// mustStatus is statusOf that fails the test on error.
func mustStatus(t *testing.T, n *harness.Node) nodeStatus {
	t.Helper()
	s, err := statusOf(n)
	if err != nil {
		t.Fatalf("status of %s: %v", n.NodeID, err)
	}
	return s
}

// testCluster is a running cluster of clusterSize nodes.
type testCluster struct {
	nodes []*harness.Node
}

// startCluster starts a cluster (extra arguments are appended to every
// node's command line) and waits until all nodes agree on a leader.
func startCluster(t *testing.T, args ...string) *testCluster {
	t.Helper()
	c := &testCluster{nodes: harness.StartCluster(t, clusterSize, harness.Options{Args: args})}
	c.waitLeader(t, c.nodes...)
	waitMembership(t, c.nodes...)
	return c
}

// waitMembership waits (bounded) until GET /cluster on every node shows
// every member with its addresses and a leader or follower role. The
// details trail the election by about a second (each node registers its
// addresses through the log); until then a follower cannot forward writes
// to the leader's Admin API.
func waitMembership(t *testing.T, nodes ...*harness.Node) {
	t.Helper()
	harness.Eventually(t, 5*time.Second, pollInterval, "complete membership views", func() (bool, string) {
		for _, n := range nodes {
			v, err := viewOf(n)
			if err != nil {
				return false, err.Error()
			}
			if len(v.Members) != clusterSize {
				return false, fmt.Sprintf("%s: %+v", n.NodeID, v)
			}
			for _, m := range v.Members {
				if m.AdminAddress == "" || (m.Role != "leader" && m.Role != "follower") {
					return false, fmt.Sprintf("%s: %+v", n.NodeID, v)
				}
			}
		}
		return true, ""
	})
}

// node returns the node with the given id; the test fails if there is none.
func (c *testCluster) node(t *testing.T, id string) *harness.Node {
	t.Helper()
	for _, n := range c.nodes {
		if n.NodeID == id {
			return n
		}
	}
	t.Fatalf("no node %q in the cluster", id)
	return nil
}

// others returns the cluster's nodes except the given ones.
func (c *testCluster) others(except ...*harness.Node) []*harness.Node {
	var out []*harness.Node
next:
	for _, n := range c.nodes {
		for _, e := range except {
			if n == e {
				continue next
			}
		}
		out = append(out, n)
	}
	return out
}

// waitLeader waits (bounded) until GET /cluster on every node in asked
// reports the same leader, that leader is one of asked and calls itself
// leader, and every view lists the whole cluster. It returns the leader.
func (c *testCluster) waitLeader(t *testing.T, asked ...*harness.Node) *harness.Node {
	t.Helper()
	var leader string
	harness.Eventually(t, leaderTimeout, pollInterval, "a leader all nodes agree on", func() (bool, string) {
		leader = ""
		for _, n := range asked {
			v, err := viewOf(n)
			if err != nil {
				return false, err.Error()
			}
			if v.Leader == "" {
				return false, fmt.Sprintf("%s knows no leader: %+v", n.NodeID, v)
			}
			if leader != "" && v.Leader != leader {
				return false, fmt.Sprintf("%s says leader %s, another node says %s", n.NodeID, v.Leader, leader)
			}
			leader = v.Leader
			if len(v.Members) != clusterSize {
				return false, fmt.Sprintf("%s lists %d members, want %d: %+v", n.NodeID, len(v.Members), clusterSize, v.Members)
			}
		}
		for _, n := range asked {
			if n.NodeID == leader {
				s, err := statusOf(n)
				if err != nil {
					return false, err.Error()
				}
				if s.Role != "leader" {
					return false, fmt.Sprintf("%s is named leader but its status says %s", leader, s)
				}
				return true, ""
			}
		}
		return false, fmt.Sprintf("leader %s is not one of the asked nodes", leader)
	})
	return c.node(t, leader)
}

// followers returns the nodes other than leader.
func (c *testCluster) followers(leader *harness.Node) []*harness.Node { return c.others(leader) }

// waitConverged waits (bounded) until every node in nodes knows the same
// leader, has applied everything it knows committed, and reports the same
// config_index and config_hash. It returns the nodes' statuses.
func waitConverged(t *testing.T, timeout time.Duration, nodes ...*harness.Node) []nodeStatus {
	t.Helper()
	var sts []nodeStatus
	harness.Eventually(t, timeout, pollInterval, "nodes converge on the same state", func() (bool, string) {
		sts = sts[:0]
		for _, n := range nodes {
			s, err := statusOf(n)
			if err != nil {
				return false, err.Error()
			}
			sts = append(sts, s)
		}
		desc := describe(sts)
		for _, s := range sts {
			if s.Leader == "" || s.Leader != sts[0].Leader {
				return false, "leaders differ: " + desc
			}
			if s.AppliedIndex < s.CommitIndex {
				return false, "not all committed entries applied: " + desc
			}
			if s.ConfigIndex != sts[0].ConfigIndex || s.ConfigHash != sts[0].ConfigHash {
				return false, "config differs: " + desc
			}
		}
		return true, desc
	})
	return sts
}

func describe(sts []nodeStatus) string {
	parts := make([]string, len(sts))
	for i, s := range sts {
		parts[i] = s.String()
	}
	return strings.Join(parts, "; ")
}

// checkAdmin checks the headers of an Admin API answer.
func checkAdmin(t *testing.T, r *harness.Response, write bool) {
	t.Helper()
	harness.CheckAdminHeaders(t, r, write)
}

// tryJSON sends body as JSON without a test (for goroutines and polling).
func tryJSON(method, u string, body any) (*harness.Response, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	return harness.Try(harness.Request{Method: method, URL: u, Body: b, ContentType: "application/json"})
}

// create POSTs body as JSON to n's Admin API, requires 201 and the admin
// headers, and returns the response.
func create(t *testing.T, n *harness.Node, path string, body map[string]any) *harness.Response {
	t.Helper()
	r := harness.JSON(t, http.MethodPost, n.Admin(path), body)
	harness.ExpectStatus(t, r, http.StatusCreated)
	checkAdmin(t, r, true)
	return r
}

// readAt GETs path from n's Admin API, holding the read until n has
// reached index (X-Gatehouse-Min-Index).
func readAt(t *testing.T, n *harness.Node, path string, index uint64) *harness.Response {
	t.Helper()
	r := harness.Get(t, n.Admin(path), "X-Gatehouse-Min-Index", strconv.FormatUint(index, 10))
	checkAdmin(t, r, false)
	if r.Status == http.StatusOK {
		if got := r.ConfigIndex(t); got < index {
			t.Errorf("read with min index %d on %s answered at config index %d: %s", index, n.NodeID, got, r)
		}
	}
	return r
}

// ackedWrite is a write the cluster acknowledged with 2xx.
type ackedWrite struct {
	Username string
	ID       string
	Index    uint64 // X-Gatehouse-Config-Index of the answer
	Node     string // the node the write was sent to
	Sent     time.Time
}

// createConsumers creates count consumers named prefix-0…, sending the
// writes round-robin to nodes; each must be acknowledged with 201.
func createConsumers(t *testing.T, nodes []*harness.Node, prefix string, count int) []ackedWrite {
	t.Helper()
	out := make([]ackedWrite, 0, count)
	for i := 0; i < count; i++ {
		n := nodes[i%len(nodes)]
		name := fmt.Sprintf("%s-%d", prefix, i)
		sent := time.Now()
		r := create(t, n, "/consumers", map[string]any{"username": name})
		out = append(out, ackedWrite{Username: name, ID: harness.Str(r.JSON(t), "id"), Index: r.ConfigIndex(t), Node: n.NodeID, Sent: sent})
	}
	return out
}

func maxIndex(ws []ackedWrite) uint64 {
	var m uint64
	for _, w := range ws {
		m = max(m, w.Index)
	}
	return m
}

// checkConsumers checks that every acknowledged consumer is readable on n
// (by username, once n has reached the highest acknowledged index) with the
// id the write returned.
func checkConsumers(t *testing.T, n *harness.Node, ws []ackedWrite) {
	t.Helper()
	at := maxIndex(ws)
	missing := 0
	for _, w := range ws {
		r := readAt(t, n, "/consumers/"+url.PathEscape(w.Username), at)
		switch {
		case r.Status != http.StatusOK:
			missing++
			if missing <= 10 {
				t.Errorf("acknowledged consumer %s (index %d, via %s) not readable on %s: %s", w.Username, w.Index, w.Node, n.NodeID, r)
			}
		case harness.Str(r.JSON(t), "id") != w.ID:
			t.Errorf("consumer %s on %s has id %s, the write returned %s", w.Username, n.NodeID, harness.Str(r.JSON(t), "id"), w.ID)
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d acknowledged consumers missing on %s", missing, len(ws), n.NodeID)
	}
}

// listAll reads every page of an Admin API collection from n and returns
// the entities keyed by id, each as its JSON text.
func listAll(t *testing.T, n *harness.Node, path string) map[string]string {
	t.Helper()
	out := map[string]string{}
	offset := ""
	for page := 0; page < 100; page++ {
		u := n.Admin(path) + "?size=1000"
		if offset != "" {
			u += "&offset=" + url.QueryEscape(offset)
		}
		r := harness.Get(t, u)
		harness.ExpectStatus(t, r, http.StatusOK)
		var body struct {
			Data   []json.RawMessage `json:"data"`
			Offset *string           `json:"offset"`
		}
		r.Decode(t, &body)
		for _, raw := range body.Data {
			var e struct {
				ID string `json:"id"`
			}
			if err := json.Unmarshal(raw, &e); err != nil || e.ID == "" {
				t.Fatalf("entity without id in %s: %s", u, raw)
			}
			var buf bytes.Buffer
			if err := json.Compact(&buf, raw); err != nil {
				t.Fatalf("compacting %s: %v", raw, err)
			}
			out[e.ID] = buf.String()
		}
		if body.Offset == nil || *body.Offset == "" {
			return out
		}
		offset = *body.Offset
	}
	t.Fatalf("GET %s: more than 100 pages", n.Admin(path))
	return nil
}

// sameEntities checks that every node lists exactly the same entities
// (same ids, same JSON) under path, and returns the first node's list.
func sameEntities(t *testing.T, path string, nodes ...*harness.Node) map[string]string {
	t.Helper()
	first := listAll(t, nodes[0], path)
	for _, n := range nodes[1:] {
		diffEntities(t, fmt.Sprintf("GET %s on %s vs %s", path, n.NodeID, nodes[0].NodeID), first, listAll(t, n, path))
	}
	return first
}

// diffEntities reports differences between two listings.
func diffEntities(t *testing.T, what string, want, got map[string]string) {
	t.Helper()
	var diffs []string
	for id, w := range want {
		g, ok := got[id]
		switch {
		case !ok:
			diffs = append(diffs, "missing "+w)
		case g != w:
			diffs = append(diffs, fmt.Sprintf("differs: %s vs %s", g, w))
		}
	}
	for id, g := range got {
		if _, ok := want[id]; !ok {
			diffs = append(diffs, "extra "+g)
		}
	}
	if len(diffs) > 0 {
		sort.Strings(diffs)
		if len(diffs) > 10 {
			diffs = append(diffs[:10], fmt.Sprintf("… %d more", len(diffs)-10))
		}
		t.Errorf("%s: %d vs %d entities:\n%s", what, len(got), len(want), strings.Join(diffs, "\n"))
	}
}

// waitProxy polls GET path on n's proxy until it is answered by the
// upstream named upstream (bounded) and returns that response.
func waitProxy(t *testing.T, n *harness.Node, path, upstream string) *harness.Response {
	t.Helper()
	var last *harness.Response
	harness.Eventually(t, 5*time.Second, 50*time.Millisecond, "proxy of "+n.NodeID+" serves "+path, func() (bool, string) {
		r, err := harness.Try(harness.Request{URL: n.Proxy(path)})
		if err != nil {
			return false, err.Error()
		}
		last = r
		return r.Status == http.StatusOK && r.Header.Get("X-Upstream-Name") == upstream, r.String()
	})
	return last
}

// timedClient is for requests whose duration is measured: its timeout is
// well above what the product promises, so a hang is told from a slow
// answer.
var timedClient = &http.Client{
	Timeout:   20 * time.Second,
	Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true, DisableCompression: true},
}

// timedJSON sends body as JSON with timedClient and reports how long the
// answer took.
func timedJSON(method, u string, body any) (*harness.Response, time.Duration, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timedClient.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(b))
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	start := time.Now()
	resp, err := timedClient.Do(req)
	if err != nil {
		return nil, time.Since(start), err
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	took := time.Since(start)
	if err != nil {
		return nil, took, err
	}
	return &harness.Response{Method: method, URL: u, Status: resp.StatusCode, Header: resp.Header, Body: rb}, took, nil
}

// snapshotDirs lists the snapshot directories under a node's data dir
// (raft/snapshots/*).
func snapshotDirs(n *harness.Node) []string {
	entries, err := os.ReadDir(filepath.Join(n.DataDir, "raft", "snapshots"))
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() && !strings.HasSuffix(e.Name(), ".tmp") {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out
}

// portsFree reports whether every port in [from, to] can be listened on
// at 127.0.0.1 now.
func portsFree(from, to int) bool {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for p := from; p <= to; p++ {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			return false
		}
		ls = append(ls, l)
	}
	return true
}

// answers reports whether something accepts TCP connections at addr.
func answers(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// syncBuffer is a goroutine-safe bytes.Buffer for a process's output.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
