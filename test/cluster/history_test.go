package cluster

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/test/echo"
	"github.com/gatehouse-gw/gatehouse/test/harness"
)

// routeModel is what the proxy must do with one path.
type routeModel struct {
	upstream string // X-Upstream-Name of the echo server that answers
	keyAuth  bool   // key-auth applies: 401 without a valid key
	limit    int    // rate-limiting's per-minute limit, 0 when none applies
}

// proxyModel is what every node's proxy must do at one point of the
// history: the routed paths, and the key-auth keys that exist.
type proxyModel struct {
	routes map[string]routeModel
	keys   map[string]bool
}

func (m proxyModel) clone() proxyModel {
	c := proxyModel{routes: map[string]routeModel{}, keys: map[string]bool{}}
	for k, v := range m.routes {
		c.routes[k] = v
	}
	for k, v := range m.keys {
		c.keys[k] = v
	}
	return c
}

// historyMark is the configuration recorded after one scripted step.
type historyMark struct {
	step   string
	index  uint64
	config string // GET /config, byte for byte
	model  proxyModel
}

// proxyPaths and proxyKeys are every path and key the script ever uses:
// each is probed at every check, so a route or key that should be gone
// is caught too.
var (
	proxyPaths = []string{"/alpha", "/beta", "/gamma", "/pool"}
	proxyKeys  = []string{"alice-key-0123456789", "bob-key-0123456789"}
)

// checkProxy reports the first way n's proxy differs from m ("" if none).
func checkProxy(n *harness.Node, m proxyModel) string {
	get := func(path, key string) (*harness.Response, error) {
		rq := harness.Request{URL: n.Proxy(path + "/anything")}
		if key != "" {
			rq.Header = harness.Headers("apikey", key)
		}
		return harness.Try(rq)
	}
	served := func(r *harness.Response, want routeModel) string {
		if r.Status != http.StatusOK || r.Header.Get("X-Upstream-Name") != want.upstream {
			return fmt.Sprintf("want 200 from %s: %s", want.upstream, r)
		}
		got := r.Header.Get("X-RateLimit-Limit-Minute")
		if want.limit == 0 && got != "" {
			return fmt.Sprintf("rate limited (%s) where no rate limit applies: %s %s", got, r.Method, r.URL)
		}
		if want.limit != 0 && got != strconv.Itoa(want.limit) {
			return fmt.Sprintf("X-RateLimit-Limit-Minute %q, want %d: %s %s", got, want.limit, r.Method, r.URL)
		}
		return ""
	}
	for _, path := range proxyPaths {
		want, routed := m.routes[path]
		r, err := get(path, "")
		if err != nil {
			return fmt.Sprintf("%s %s: %v", n.NodeID, path, err)
		}
		switch {
		case !routed:
			if r.Status != http.StatusNotFound {
				return fmt.Sprintf("%s: want 404 for a path no route has: %s", n.NodeID, r)
			}
			continue
		case want.keyAuth:
			if r.Status != http.StatusUnauthorized {
				return fmt.Sprintf("%s: want 401 without a key: %s", n.NodeID, r)
			}
		default:
			if msg := served(r, want); msg != "" {
				return n.NodeID + ": " + msg
			}
			continue
		}
		for _, key := range append([]string{"not-a-key-0123456789"}, proxyKeys...) {
			r, err := get(path, key)
			if err != nil {
				return fmt.Sprintf("%s %s: %v", n.NodeID, path, err)
			}
			if !m.keys[key] {
				if r.Status != http.StatusUnauthorized {
					return fmt.Sprintf("%s: want 401 with key %s, which does not exist here: %s", n.NodeID, key, r)
				}
				continue
			}
			if msg := served(r, want); msg != "" {
				return fmt.Sprintf("%s, key %s: %s", n.NodeID, key, msg)
			}
		}
	}
	return ""
}

// waitProxyModel waits (bounded) until every node's proxy behaves as m
// says.
func waitProxyModel(t *testing.T, what string, m proxyModel, nodes ...*harness.Node) {
	t.Helper()
	for _, n := range nodes {
		harness.Eventually(t, 5*time.Second, 50*time.Millisecond, what+": proxy of "+n.NodeID, func() (bool, string) {
			msg := checkProxy(n, m)
			return msg == "", msg
		})
	}
}

// configAt reads GET /config from n once n has applied index.
func configAt(t *testing.T, n *harness.Node, index uint64) *harness.Response {
	t.Helper()
	r := readAt(t, n, "/config", index)
	harness.ExpectStatus(t, r, http.StatusOK)
	return r
}

// TestPointInTimeRestoreOnCluster runs a scripted history of creates,
// updates and deletes across services, routes, consumers, key-auth
// credentials, plugins, upstreams and targets through all three nodes,
// recording the configuration after every step. It then restores the
// cluster (through followers) to several of those points in turn — back,
// forward, across a swap of two services' names — and checks that every
// node serves exactly the recorded configuration and proxies as it did
// then; and that undoing a restore (restoring to the index just before
// it) brings back what was there before.
func TestPointInTimeRestoreOnCluster(t *testing.T) {
	up := echo.StartT(t, "history-echo")
	pool := echo.StartT(t, "history-pool-echo")
	c := startCluster(t)
	leader := c.waitLeader(t, c.nodes...)

	model := proxyModel{routes: map[string]routeModel{}, keys: map[string]bool{}}
	var marks []historyMark
	var rateLimitID string
	record := func(step string, writeIndex uint64) {
		t.Helper()
		r := configAt(t, leader, writeIndex)
		marks = append(marks, historyMark{step: step, index: r.ConfigIndex(t), config: r.Text(), model: model.clone()})
		// The model the restores are checked against is checked itself,
		// on the leader's proxy, at the time.
		waitProxyModel(t, "after "+step, model, leader)
	}
	record("start", leader.ConfigIndex(t))

	type step struct {
		name   string
		method string
		path   string
		body   map[string]any
		status int
		then   func(r *harness.Response)
	}
	script := []step{
		{"service a", "POST", "/services", map[string]any{"name": "svc-a", "url": up.URL}, 201, nil},
		{"route a", "POST", "/services/svc-a/routes", map[string]any{"name": "route-a", "paths": []any{"/alpha"}}, 201,
			func(*harness.Response) { model.routes["/alpha"] = routeModel{upstream: up.Name} }},
		{"consumer alice", "POST", "/consumers", map[string]any{"username": "alice"}, 201, nil},
		{"alice's key", "POST", "/consumers/alice/key-auth", map[string]any{"key": proxyKeys[0]}, 201,
			func(*harness.Response) { model.keys[proxyKeys[0]] = true }},
		{"service b", "POST", "/services", map[string]any{"name": "svc-b", "url": up.URL, "retries": 3}, 201, nil},
		{"route b", "POST", "/services/svc-b/routes", map[string]any{"name": "route-b", "paths": []any{"/beta"}}, 201,
			func(*harness.Response) { model.routes["/beta"] = routeModel{upstream: up.Name} }},
		{"key-auth on route a", "POST", "/routes/route-a/plugins", map[string]any{"name": "key-auth"}, 201,
			func(*harness.Response) { model.routes["/alpha"] = routeModel{upstream: up.Name, keyAuth: true} }},
		{"rate limit on service b", "POST", "/services/svc-b/plugins",
			map[string]any{"name": "rate-limiting", "config": map[string]any{"minute": 10000}}, 201,
			func(r *harness.Response) {
				rateLimitID = harness.Str(r.JSON(t), "id")
				model.routes["/beta"] = routeModel{upstream: up.Name, limit: 10000}
			}},
		{"upstream pool", "POST", "/upstreams", map[string]any{"name": "pool"}, 201, nil},
		{"target", "POST", "/upstreams/pool/targets", map[string]any{"target": pool.Addr}, 201, nil},
		{"service on the pool", "POST", "/services", map[string]any{"name": "svc-pool", "host": "pool"}, 201, nil},
		{"route pool", "POST", "/services/svc-pool/routes", map[string]any{"name": "route-pool", "paths": []any{"/pool"}}, 201,
			func(*harness.Response) { model.routes["/pool"] = routeModel{upstream: pool.Name} }},
		{"route b gets a second path", "PATCH", "/routes/route-b", map[string]any{"paths": []any{"/beta", "/gamma"}}, 200,
			func(*harness.Response) { model.routes["/gamma"] = model.routes["/beta"] }},
		{"service a retries", "PATCH", "/services/svc-a", map[string]any{"retries": 2}, 200, nil},
		{"key-auth on service b", "POST", "/services/svc-b/plugins", map[string]any{"name": "key-auth"}, 201,
			func(*harness.Response) {
				for _, p := range []string{"/beta", "/gamma"} {
					rm := model.routes[p]
					rm.keyAuth = true
					model.routes[p] = rm
				}
			}},
		{"route a deleted", "DELETE", "/routes/route-a", nil, 204,
			func(*harness.Response) { delete(model.routes, "/alpha") }},
		{"consumer bob", "POST", "/consumers", map[string]any{"username": "bob"}, 201, nil},
		{"bob's key", "PUT", "/consumers/bob/key-auth/" + proxyKeys[1], map[string]any{}, 200,
			func(*harness.Response) { model.keys[proxyKeys[1]] = true }},
		{"alice deleted", "DELETE", "/consumers/alice", nil, 204,
			func(*harness.Response) { delete(model.keys, proxyKeys[0]) }},
		{"rate limit raised", "PATCH", "", map[string]any{"config": map[string]any{"minute": 20000}}, 200,
			func(*harness.Response) {
				for _, p := range []string{"/beta", "/gamma"} {
					rm := model.routes[p]
					rm.limit = 20000
					model.routes[p] = rm
				}
			}},
		// The two services swap names: restoring across this cannot
		// rewrite one entity at a time without a transient name clash.
		{"swap 1", "PATCH", "/services/svc-a", map[string]any{"name": "svc-tmp"}, 200, nil},
		{"swap 2", "PATCH", "/services/svc-b", map[string]any{"name": "svc-a"}, 200, nil},
		{"swap 3", "PATCH", "/services/svc-tmp", map[string]any{"name": "svc-b"}, 200, nil},
		{"route pool deleted", "DELETE", "/routes/route-pool", nil, 204,
			func(*harness.Response) { delete(model.routes, "/pool") }},
		{"service on the pool deleted", "DELETE", "/services/svc-pool", nil, 204, nil},
		{"upstream deleted", "DELETE", "/upstreams/pool", nil, 204, nil},
	}
	for i, s := range script {
		n := c.nodes[i%len(c.nodes)] // followers forward to the leader
		path := s.path
		if path == "" {
			path = "/plugins/" + rateLimitID
		}
		var r *harness.Response
		if s.body == nil {
			r = harness.Method(t, s.method, n.Admin(path))
		} else {
			r = harness.JSON(t, s.method, n.Admin(path), s.body)
		}
		if r.Status != s.status {
			t.Fatalf("step %q via %s: want %d, got %s", s.name, n.NodeID, s.status, r)
		}
		checkAdmin(t, r, true)
		if s.then != nil {
			s.then(r)
		}
		record(s.name, r.ConfigIndex(t))
	}
	final := marks[len(marks)-1]
	byStep := map[string]historyMark{}
	for _, m := range marks {
		byStep[m.step] = m
	}

	// Every node serves every recorded point by time travel, before the
	// restores and after them (restores append; they rewrite no history).
	timeTravel := func(when string) {
		t.Helper()
		for _, n := range c.nodes {
			for _, m := range marks {
				r := harness.Get(t, n.Admin("/config?at="+strconv.FormatUint(m.index, 10)))
				harness.ExpectStatus(t, r, http.StatusOK)
				if r.Text() != m.config {
					t.Errorf("%s, %s: GET /config?at=%d (after %q)\n got %s\nwant %s", when, n.NodeID, m.index, m.step, r.Text(), m.config)
				}
			}
		}
	}
	timeTravel("before the restores")

	// restore restores the cluster to index through a follower and checks
	// every node; it returns the restore's own index.
	restores := 0
	restore := func(to uint64, want historyMark, what string) uint64 {
		t.Helper()
		leader = c.waitLeader(t, c.nodes...)
		follower := c.followers(leader)[restores%2]
		restores++
		r := harness.JSON(t, http.MethodPost, follower.Admin("/audit/restore"), map[string]any{"at": strconv.FormatUint(to, 10)})
		harness.ExpectStatus(t, r, http.StatusOK)
		checkAdmin(t, r, true)
		idx := r.ConfigIndex(t)
		body := r.JSON(t)
		if body["restored_to"] != float64(to) || body["index"] != float64(idx) {
			t.Errorf("%s: restore answer %s, want restored_to %d and index %d", what, r.Text(), to, idx)
		}
		if cmds, _ := body["entities"].(float64); cmds < 1 {
			t.Errorf("%s: restore changed nothing: %s", what, r.Text())
		}
		t.Logf("%s: restored to %d (after %q) via %s as index %d with %v entities put back", what, to, want.step, follower.NodeID, idx, body["entities"])
		for _, n := range c.nodes {
			if got := configAt(t, n, idx).Text(); got != want.config {
				t.Errorf("%s: GET /config on %s\n got %s\nwant %s", what, n.NodeID, got, want.config)
			}
		}
		waitProxyModel(t, what, want.model, c.nodes...)
		ev := harness.Get(t, follower.Admin("/audit/events/"+strconv.FormatUint(idx, 10)))
		harness.ExpectStatus(t, ev, http.StatusOK)
		if e := ev.JSON(t); e["op"] != "restore" || e["entity_id"] != strconv.FormatUint(to, 10) || e["outcome"] != "applied" {
			t.Errorf("%s: the restore's history record: %s", what, ev.Text())
		}
		return idx
	}

	// Back across the name swap and most deletions, forward again (to a
	// point after the first restore's target), then further back.
	var lastRestore uint64
	for _, stepName := range []string{"route pool", "alice deleted"} {
		m := byStep[stepName]
		lastRestore = restore(m.index, m, "restore to after "+strconv.Quote(stepName))
	}
	before := configAt(t, leader, lastRestore)
	if before.Text() != byStep["alice deleted"].config {
		t.Fatalf("config before the last restore is not the one restored: %s", before.Text())
	}
	back := byStep["rate limit on service b"]
	lastRestore = restore(back.index, back, "restore to after "+strconv.Quote(back.step))

	// Undo the last restore: restore to the index just before it.
	restore(lastRestore-1, historyMark{step: "before the last restore", config: before.Text(), model: byStep["alice deleted"].model},
		"undo the last restore")

	// Finally forward to the end of the script, across the swap again.
	restore(final.index, final, "restore to the end of the script")
	timeTravel("after the restores")
}

// hookReceiver is an audit webhook destination on loopback. While down it
// answers 503. It records every body it was sent and, in order, the index
// of every row it accepted.
type hookReceiver struct {
	mu       sync.Mutex
	down     bool
	refused  int
	bodies   [][]byte
	accepted []uint64
	rows     []map[string]any
	batches  []int
	bad      []string
}

func (h *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
	h.mu.Lock()
	defer h.mu.Unlock()
	if err != nil {
		h.bad = append(h.bad, "reading a delivery: "+err.Error())
		http.Error(w, "unreadable", http.StatusBadRequest)
		return
	}
	h.bodies = append(h.bodies, b)
	if h.down {
		h.refused++
		http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
		return
	}
	var body struct {
		Events []map[string]any `json:"events"`
	}
	if r.Method != http.MethodPost || json.Unmarshal(b, &body) != nil || len(body.Events) == 0 {
		h.bad = append(h.bad, fmt.Sprintf("%s %s: %.300s", r.Method, r.URL, b))
		http.Error(w, "bad delivery", http.StatusBadRequest)
		return
	}
	h.batches = append(h.batches, len(body.Events))
	for _, e := range body.Events {
		i, ok := e["index"].(float64)
		if !ok || i < 1 {
			h.bad = append(h.bad, fmt.Sprintf("row without an index: %v", e))
			continue
		}
		h.accepted = append(h.accepted, uint64(i))
		h.rows = append(h.rows, e)
	}
}

func (h *hookReceiver) setDown(down bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.down = down
}

func (h *hookReceiver) refusals() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.refused
}

func (h *hookReceiver) indexes() []uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]uint64(nil), h.accepted...)
}

// firstSeen drops repeated indexes, keeping the order of first delivery.
func firstSeen(got []uint64) []uint64 {
	seen := map[uint64]bool{}
	var out []uint64
	for _, i := range got {
		if !seen[i] {
			seen[i] = true
			out = append(out, i)
		}
	}
	return out
}

// deliverable lists, from n's history (once n has applied minIndex), the
// indexes the webhook must deliver: every record but the webhook's own
// cursor records; and each record's chain hash by index.
func deliverable(n *harness.Node, minIndex uint64) ([]uint64, map[uint64]string, error) {
	var out []uint64
	hashes := map[uint64]string{}
	path := "/audit/events?size=1000"
	for page := 0; path != "" && page < 50; page++ {
		r, err := harness.Try(harness.Request{URL: n.Admin(path), Header: harness.Headers("X-Gatehouse-Min-Index", strconv.FormatUint(minIndex, 10))})
		if err != nil {
			return nil, nil, err
		}
		if r.Status != http.StatusOK {
			return nil, nil, fmt.Errorf("%s", r)
		}
		var body struct {
			Data []struct {
				Index      uint64 `json:"index"`
				Op         string `json:"op"`
				EntityType string `json:"entity_type"`
				Hash       string `json:"hash"`
			} `json:"data"`
			Next *string `json:"next"`
		}
		if err := json.Unmarshal(r.Body, &body); err != nil {
			return nil, nil, fmt.Errorf("decoding %s: %v", r, err)
		}
		for _, e := range body.Data {
			if e.Op == "deliver" && e.EntityType == "audit_webhook" {
				continue
			}
			out = append(out, e.Index)
			hashes[e.Index] = e.Hash
		}
		path = ""
		if body.Next != nil {
			path = *body.Next
		}
	}
	return out, hashes, nil
}

// missing lists the wanted indexes not in got.
func missing(want, got []uint64) []uint64 {
	have := map[uint64]bool{}
	for _, i := range got {
		have[i] = true
	}
	var out []uint64
	for _, i := range want {
		if !have[i] {
			out = append(out, i)
		}
	}
	return out
}

// TestWebhookSurvivesLeaderLoss sets an audit webhook whose receiver goes
// down, keeps writing, SIGKILLs the leader while deliveries are failing,
// writes on the new leader and brings the receiver back: every history
// record (but the webhook's own cursor records) must arrive, in order,
// none skipped, with duplicates only as re-sends, and no key-auth key in
// clear in anything sent.
func TestWebhookSurvivesLeaderLoss(t *testing.T) {
	rcv := &hookReceiver{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: rcv, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	c := startCluster(t)
	leader := c.waitLeader(t, c.nodes...)
	const batchSize = 3
	// reader is a follower that survives: the history is read there.
	reader := c.followers(leader)[0]
	r := harness.JSON(t, http.MethodPut, reader.Admin("/audit/webhook"),
		map[string]any{"url": "http://" + ln.Addr().String() + "/audit", "batch_size": batchSize})
	harness.ExpectStatus(t, r, http.StatusOK)

	secrets := []string{"webhook-secret-in-body-0123456789", "webhook-secret-in-url-0123456789", "webhook-secret-after-failover-0123"}
	var lastWrite uint64
	write := func(n *harness.Node, method, path string, body map[string]any, status int) *harness.Response {
		t.Helper()
		var r *harness.Response
		if body == nil {
			r = harness.Method(t, method, n.Admin(path))
		} else {
			r = harness.JSON(t, method, n.Admin(path), body)
		}
		if r.Status != status {
			t.Fatalf("%s %s via %s: want %d, got %s", method, path, n.NodeID, status, r)
		}
		lastWrite = max(lastWrite, r.ConfigIndex(t))
		return r
	}
	waitDelivered := func(what string, timeout time.Duration) {
		t.Helper()
		var want []uint64
		harness.Eventually(t, timeout, 200*time.Millisecond, what, func() (bool, string) {
			var err error
			if want, _, err = deliverable(reader, lastWrite); err != nil {
				return false, err.Error()
			}
			m := missing(want, rcv.indexes())
			return len(m) == 0, fmt.Sprintf("%d of %d records not delivered yet: %v", len(m), len(want), m)
		})
	}

	// Writes while the receiver is up, through every node, among them
	// two key-auth keys (one in the body, one in the URL).
	for i := 0; i < 4; i++ {
		write(c.nodes[i%3], http.MethodPost, "/consumers", map[string]any{"username": fmt.Sprintf("hook-%d", i)}, 201)
	}
	write(c.nodes[1], http.MethodPost, "/consumers", map[string]any{"username": "keyholder"}, 201)
	write(c.nodes[2], http.MethodPost, "/consumers/keyholder/key-auth", map[string]any{"key": secrets[0]}, 201)
	write(c.nodes[0], http.MethodPut, "/consumers/keyholder/key-auth/"+secrets[1], map[string]any{}, 200)
	write(c.nodes[1], http.MethodPost, "/services", map[string]any{"name": "hooked", "host": "hooked.test"}, 201)
	waitDelivered("records before the outage delivered", 20*time.Second)
	before := len(firstSeen(rcv.indexes()))

	// The receiver goes down; writes go on (one deletes a credential by
	// its key) and fail to be delivered.
	rcv.setDown(true)
	refusedBefore := rcv.refusals()
	for i := 4; i < 8; i++ {
		write(c.nodes[i%3], http.MethodPost, "/consumers", map[string]any{"username": fmt.Sprintf("hook-%d", i)}, 201)
	}
	write(c.nodes[2], http.MethodPatch, "/services/hooked", map[string]any{"retries": 7}, 200)
	write(c.nodes[0], http.MethodDelete, "/key-auths/"+secrets[1], nil, 204)
	harness.Eventually(t, 10*time.Second, 50*time.Millisecond, "the leader tries to deliver to the receiver that is down", func() (bool, string) {
		return rcv.refusals() > refusedBefore, "no delivery attempt"
	})

	// The leader dies in the middle of its failing deliveries.
	leader = c.waitLeader(t, c.nodes...)
	if leader == reader {
		reader = c.followers(leader)[0]
	}
	leader.Kill()
	acceptedAtKill := len(rcv.indexes())
	survivors := c.others(leader)
	t.Logf("killed leader %s; %d records delivered before the outage, %d deliveries refused", leader.NodeID, before, rcv.refusals())
	newLeader := c.waitLeader(t, survivors...)
	t.Logf("new leader: %s", newLeader.NodeID)
	refusedBefore = rcv.refusals()
	for i := 8; i < 11; i++ {
		write(newLeader, http.MethodPost, "/consumers", map[string]any{"username": fmt.Sprintf("hook-%d", i)}, 201)
	}
	write(newLeader, http.MethodPost, "/consumers/keyholder/key-auth", map[string]any{"key": secrets[2]}, 201)
	write(newLeader, http.MethodDelete, "/consumers/hook-0", nil, 204)
	harness.Eventually(t, 15*time.Second, 50*time.Millisecond, "the new leader tries to deliver to the receiver that is down", func() (bool, string) {
		return rcv.refusals() > refusedBefore, "no delivery attempt since the failover"
	})

	// The receiver comes back: everything arrives.
	rcv.setDown(false)
	upAt := time.Now()
	waitDelivered("every record delivered after the receiver came back", 30*time.Second)
	t.Logf("caught up %v after the receiver came back", time.Since(upAt).Round(time.Millisecond))

	// Compare with the history once more, allowing records appended
	// meanwhile (none are expected but cursor records) to arrive too.
	var want, got []uint64
	var hashes map[uint64]string
	harness.Eventually(t, 5*time.Second, 200*time.Millisecond, "delivered records equal the history", func() (bool, string) {
		var err error
		if want, hashes, err = deliverable(reader, lastWrite); err != nil {
			return false, err.Error()
		}
		got = firstSeen(rcv.indexes())
		return fmt.Sprint(got) == fmt.Sprint(want), fmt.Sprintf("\ndelivered %v\n  history %v", got, want)
	})
	if len(want) < 20 {
		t.Errorf("only %d records in the history: %v", len(want), want)
	}

	all := rcv.indexes()
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	for _, b := range rcv.bad {
		t.Errorf("bad delivery: %s", b)
	}
	// In order, none skipped: the first delivery of each index follows
	// the history exactly (checked above), so it strictly increases.
	for i := 1; i < len(got); i++ {
		if got[i] <= got[i-1] {
			t.Errorf("first deliveries out of order at %d: %v", i, got)
			break
		}
	}
	// A repeated index is a re-send of one delivered before (a batch whose
	// cursor record was lost with the leader), so only one the killed
	// leader delivered; a new index is always above every index before it.
	seen := map[uint64]bool{}
	beforeKill := map[uint64]bool{}
	for _, x := range all[:acceptedAtKill] {
		beforeKill[x] = true
	}
	dups := 0
	var high uint64
	for _, x := range all {
		switch {
		case seen[x]:
			dups++
			if !beforeKill[x] {
				t.Errorf("index %d delivered twice, though not across the crash: %v", x, all)
			}
		case x < high:
			t.Errorf("new index %d delivered after %d: %v", x, high, all)
		}
		seen[x] = true
		high = max(high, x)
	}
	t.Logf("%d rows accepted (%d distinct, %d re-sent) in %d batches; %d deliveries refused while down",
		len(all), len(got), dups, len(rcv.batches), rcv.refused)
	for _, n := range rcv.batches {
		if n > batchSize {
			t.Errorf("a batch of %d rows, batch_size is %d", n, batchSize)
		}
	}
	// The webhook's cursor records are never delivered.
	credentialRows := 0
	for _, row := range rcv.rows {
		if row["op"] == "deliver" {
			t.Errorf("a cursor record was delivered: %v", row)
		}
		// The row is the history's record, chain hash and all.
		if i, _ := row["index"].(float64); row["hash"] != hashes[uint64(i)] || hashes[uint64(i)] == "" {
			t.Errorf("delivered row %v has hash %v, the history %q", row["index"], row["hash"], hashes[uint64(i)])
		}
		if row["entity_type"] == "keyauth_credentials" && row["op"] != "delete" {
			credentialRows++
			changes, _ := row["changes"].([]any)
			for _, ch := range changes {
				after, _ := ch.(map[string]any)["after"].(map[string]any)
				if k, _ := after["key"].(string); !strings.HasPrefix(k, "hmac-sha256:") {
					t.Errorf("credential row's key is %q, want an hmac-sha256: value: %v", k, row)
				}
			}
		}
	}
	if credentialRows < 3 {
		t.Errorf("%d credential creations delivered, want 3", credentialRows)
	}
	// No key in clear in anything sent, delivered or refused.
	for _, b := range rcv.bodies {
		for _, s := range secrets {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("key %q in clear in a webhook delivery: %.2000s", s, b)
			}
		}
	}
}
