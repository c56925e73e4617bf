package cluster

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/test/echo"
	"github.com/gatehouse-gw/gatehouse/test/harness"
)

// rlClient sends proxy requests with keep-alive, so a steady request rate
// is not bounded by connection setup.
var rlClient = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 4}}

// hit sends one GET to path on n's proxy and returns the status (0 on a
// transport error).
func hit(n *harness.Node, path string) int {
	resp, err := rlClient.Get(n.Proxy(path))
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// steady sends count requests to path, one every interval, spread over
// nodes round-robin, and returns how many were admitted (200) and how
// many refused (429); anything else fails the test.
func steady(t *testing.T, nodes []*harness.Node, path string, count int, interval time.Duration) (admitted, refused int) {
	t.Helper()
	next := time.Now()
	for i := 0; i < count; i++ {
		time.Sleep(time.Until(next))
		next = next.Add(interval)
		switch s := hit(nodes[i%len(nodes)], path); s {
		case http.StatusOK:
			admitted++
		case http.StatusTooManyRequests:
			refused++
		default:
			t.Fatalf("request %d to %s on %s: status %d", i, path, nodes[i%len(nodes)].NodeID, s)
		}
	}
	return admitted, refused
}

type rateReport struct {
	Node    string `json:"node"`
	Windows []struct {
		Count    int64            `json:"count"`
		Limit    int64            `json:"limit"`
		Nodes    map[string]int64 `json:"nodes"`
		Estimate float64          `json:"estimate"`
		Previous *struct {
			Count int64            `json:"count"`
			Nodes map[string]int64 `json:"nodes"`
		} `json:"previous"`
	} `json:"windows"`
}

func rateLimitOf(t *testing.T, n *harness.Node, plugin, key string) rateReport {
	t.Helper()
	r := harness.Do(t, harness.Request{URL: n.Admin("/rate-limits/" + plugin + "/" + key)})
	harness.ExpectStatus(t, r, http.StatusOK)
	var rep rateReport
	if err := json.Unmarshal(r.Body, &rep); err != nil || len(rep.Windows) == 0 {
		t.Fatalf("GET /rate-limits on %s: %v: %s", n.NodeID, err, r)
	}
	return rep
}

// TestClusterRateLimits runs the cluster policy on three real nodes that
// gossip their counters: a per-minute limit holds for the whole cluster
// under load spread round-robin, is exact when all load lands on one
// node, and survives a node's death (its counts age out). A sliding
// window shared by gossip resumes gradually after a burst.
func TestClusterRateLimits(t *testing.T) {
	c := startCluster(t)
	up := echo.StartT(t, "echo-ratelimit")
	leader := c.waitLeader(t, c.nodes...)
	followers := c.followers(leader)
	victim := followers[1]
	survivors := []*harness.Node{leader, followers[0]}

	create(t, leader, "/services", map[string]any{"name": "rl", "url": up.URL})
	plugins := map[string]string{}
	var last uint64
	for path, cfg := range map[string]map[string]any{
		"/spread": {"minute": 100},
		"/single": {"minute": 50},
		"/death":  {"minute": 60},
	} {
		create(t, leader, "/services/rl/routes", map[string]any{"name": path[1:], "paths": []any{path}})
		cfg["policy"], cfg["limit_by"] = "cluster", "ip"
		r := create(t, leader, "/routes/"+path[1:]+"/plugins", map[string]any{"name": "rate-limiting", "config": cfg})
		plugins[path] = harness.Str(r.JSON(t), "id")
		last = r.ConfigIndex(t)
	}
	create(t, leader, "/services/rl/routes", map[string]any{"name": "sliding", "paths": []any{"/sliding"}})
	r := create(t, leader, "/routes/sliding/plugins", map[string]any{"name": "rate-limiting-advanced", "config": map[string]any{
		"limit": []any{10}, "window_size": []any{10}, "strategy": "cluster", "identifier": "ip", "disable_penalty": true}})
	plugins["/sliding"] = harness.Str(r.JSON(t), "id")
	last = r.ConfigIndex(t)
	for _, n := range c.nodes {
		readAt(t, n, "/plugins", last)
	}
	// Every node's gossip hears the other two before counting starts.
	for _, n := range c.nodes {
		harness.Eventually(t, 10*time.Second, 100*time.Millisecond, n.NodeID+" gossip hears 3 members", func() (bool, string) {
			st := harness.Do(t, harness.Request{URL: n.Admin("/status")}).JSON(t)
			g, _ := st["gossip"].(map[string]any)
			tr, _ := g["transport"].(map[string]any)
			return tr["alive"] == float64(3), fmt.Sprint(g)
		})
	}

	t.Run("a sliding window resumes as the previous window fades", func(t *testing.T) {
		// Burst early in a 10 s window, on one node...
		for i := 0; i < 200 && time.Now().Unix()%10 != 1; i++ {
			time.Sleep(50 * time.Millisecond)
		}
		a, _ := steady(t, survivors[:1], "/sliding", 12, 5*time.Millisecond)
		if a != 10 {
			t.Fatalf("burst admitted %d, want 10", a)
		}
		at := func(fraction float64) {
			start := time.Now().Truncate(10 * time.Second).Add(10 * time.Second)
			time.Sleep(time.Until(start.Add(time.Duration(fraction * float64(10*time.Second)))))
		}
		// ...then the other survivor, which knows the burst only by
		// gossip: a quarter into the next window the estimate is
		// 10×0.75 + c, so 3 fit.
		at(0.25)
		if got, _ := steady(t, survivors[1:], "/sliding", 6, 2*time.Millisecond); got != 3 {
			t.Errorf("25%% into the next window admitted %d, want 3", got)
		}
		// At 65%: 10×0.35 + 3 + c < 10 lets 4 more in.
		time.Sleep(time.Until(time.Now().Truncate(10 * time.Second).Add(6500 * time.Millisecond)))
		if got, _ := steady(t, survivors[1:], "/sliding", 8, 2*time.Millisecond); got != 4 {
			t.Errorf("65%% into the next window admitted %d, want 4", got)
		}
		rep := rateLimitOf(t, survivors[0], plugins["/sliding"], "127.0.0.1")
		if w := rep.Windows[0]; w.Previous == nil || w.Previous.Count != 10 {
			t.Errorf("previous window as survivor sees it: %+v", w.Previous)
		}
	})

	// Everything per-minute below must fall in one minute (about 15 s).
	harness.WaitFreshMinute(t, 25*time.Second)

	t.Run("round-robin over three nodes stays within 5% of the limit", func(t *testing.T) {
		const limit = 100
		// 50 requests/s, 3x the limit in 6 s: well above it.
		admitted, refused := steady(t, c.nodes, "/spread", 3*limit, 20*time.Millisecond)
		t.Logf("admitted %d, refused %d (limit %d)", admitted, refused, limit)
		if admitted < limit || float64(admitted) > 1.05*limit {
			t.Errorf("admitted %d, want within [%d, %.0f]", admitted, limit, 1.05*limit)
		}
		rep := rateLimitOf(t, c.nodes[0], plugins["/spread"], "127.0.0.1")
		if w := rep.Windows[0]; len(w.Nodes) != 3 || w.Count != int64(admitted) {
			t.Errorf("node1's view: %+v, want three nodes summing to %d", w, admitted)
		}
	})

	t.Run("all requests on one node: exactly the limit", func(t *testing.T) {
		admitted, _ := steady(t, c.nodes[:1], "/single", 80, 5*time.Millisecond)
		if admitted != 50 {
			t.Errorf("admitted %d on one node, want exactly 50", admitted)
		}
	})

	t.Run("a killed node's counts age out; the survivors keep enforcing", func(t *testing.T) {
		const limit = 60
		if a, _ := steady(t, []*harness.Node{victim}, "/death", 30, 5*time.Millisecond); a != 30 {
			t.Fatalf("victim admitted %d of 30", a)
		}
		harness.Eventually(t, 5*time.Second, 50*time.Millisecond, "survivors hear the victim's 30", func() (bool, string) {
			rep := rateLimitOf(t, survivors[0], plugins["/death"], "127.0.0.1")
			return rep.Windows[0].Nodes[victim.NodeID] == 30, fmt.Sprint(rep.Windows[0])
		})
		victim.Kill()
		killed := time.Now()
		// Before the failure detector gives up on it, the victim's counts
		// still count: the survivors admit only the rest of the limit.
		admitted, _ := steady(t, survivors, "/death", 45, 10*time.Millisecond)
		if time.Since(killed) > 2*time.Second {
			t.Logf("the burst after the kill took %v", time.Since(killed))
		}
		if admitted < limit-30 || admitted > limit-30+2 {
			t.Errorf("survivors admitted %d right after the kill, want %d (+2)", admitted, limit-30)
		}
		// Then the victim is declared dead and its report dropped...
		for _, n := range survivors {
			harness.Eventually(t, 20*time.Second, 200*time.Millisecond, n.NodeID+" forgets "+victim.NodeID, func() (bool, string) {
				rep := rateLimitOf(t, n, plugins["/death"], "127.0.0.1")
				_, still := rep.Windows[0].Nodes[victim.NodeID]
				return !still, fmt.Sprint(rep.Windows[0])
			})
		}
		t.Logf("victim's counts aged out %v after the kill", time.Since(killed).Round(100*time.Millisecond))
		// ...so the survivors count only what they admitted themselves.
		before := admitted
		more, _ := steady(t, survivors, "/death", 45, 10*time.Millisecond)
		if got := before + more; got < limit-2 || got > limit+2 {
			t.Errorf("survivors admitted %d in all after the age-out, want %d (±2)", got, limit)
		}
		rep := rateLimitOf(t, survivors[1], plugins["/death"], "127.0.0.1")
		if w := rep.Windows[0]; int(w.Count) != before+more {
			t.Errorf("survivor's count %d, want %d", w.Count, before+more)
		}
	})

}
