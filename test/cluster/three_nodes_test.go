package cluster

import (
	"net/http"
	"testing"

	"github.com/gatehouse-gw/gatehouse/test/echo"
	"github.com/gatehouse-gw/gatehouse/test/harness"
)

// TestThreeNodes forms a three-node cluster, writes a service and a route
// through a follower, and checks that the write is visible on every node's
// Admin API and served by every node's proxy.
func TestThreeNodes(t *testing.T) {
	c := startCluster(t)
	up := echo.StartT(t, "echo-three")
	leader := c.waitLeader(t, c.nodes...)

	t.Run("membership", func(t *testing.T) {
		for _, n := range c.nodes {
			v, err := viewOf(n)
			if err != nil {
				t.Fatal(err)
			}
			checkMembership(t, n, v, c.nodes, leader)
		}
	})

	emptyHash := mustStatus(t, leader).ConfigHash
	follower := c.followers(leader)[0]
	t.Logf("leader %s; writing through follower %s", leader.NodeID, follower.NodeID)

	svcResp := create(t, follower, "/services", map[string]any{"name": "s-1", "url": up.URL})
	svc := svcResp.JSON(t)
	svcID := harness.Str(svc, "id")
	if !harness.IsUUID(svcID) || svc["name"] != "s-1" || svc["port"] != float64(up.Port) {
		t.Fatalf("service created through the follower: %s", svcResp)
	}
	routeResp := create(t, follower, "/services/s-1/routes", map[string]any{"name": "r-1", "paths": []any{"/s-1"}})
	route := routeResp.JSON(t)
	if harness.Str(route, "service.id") != svcID {
		t.Fatalf("route created through the follower is not attached to %s: %s", svcID, routeResp)
	}
	index := routeResp.ConfigIndex(t)
	if svcIndex := svcResp.ConfigIndex(t); index <= svcIndex {
		t.Errorf("route write index %d is not after the service write index %d", index, svcIndex)
	}

	t.Run("the forwarded answer is the leader's", func(t *testing.T) {
		// The leader holds exactly what the follower answered.
		r := readAt(t, leader, "/services/s-1", index)
		harness.ExpectStatus(t, r, http.StatusOK)
		harness.JSONEqual(t, r, svcResp.Text())
		r = readAt(t, leader, "/routes/r-1", index)
		harness.ExpectStatus(t, r, http.StatusOK)
		harness.JSONEqual(t, r, routeResp.Text())
	})

	t.Run("reads at the write index on every node", func(t *testing.T) {
		for _, n := range c.nodes {
			r := readAt(t, n, "/services/s-1", index)
			if !harness.CheckStatus(t, r, http.StatusOK) {
				continue
			}
			if got := harness.Str(r.JSON(t), "id"); got != svcID {
				t.Errorf("%s: service id %s, want %s", n.NodeID, got, svcID)
			}
			harness.JSONEqual(t, r, svcResp.Text())
			r = readAt(t, n, "/routes/r-1", index)
			if harness.CheckStatus(t, r, http.StatusOK) {
				harness.JSONEqual(t, r, routeResp.Text())
			}
		}
	})

	t.Run("every proxy serves the route", func(t *testing.T) {
		for _, n := range c.nodes {
			r := waitProxy(t, n, "/s-1/anything", up.Name)
			er := echo.Parse(t, r.Body)
			if er.Path != "/anything" {
				t.Errorf("%s: upstream got path %q, want /anything", n.NodeID, er.Path)
			}
			if !harness.Proxied(r.Header) {
				t.Errorf("%s: proxy answer without X-Kong-Upstream-Latency", n.NodeID)
			}
		}
	})

	t.Run("ready and equal", func(t *testing.T) {
		for _, n := range c.nodes {
			r := harness.Get(t, n.Status("/status/ready"))
			harness.CheckStatus(t, r, http.StatusOK)
		}
		sts := waitConverged(t, convergeTimeout, c.nodes...)
		for _, s := range sts {
			if s.ConfigIndex < index {
				t.Errorf("%s: config_index %d below the route write's %d", s.NodeID, s.ConfigIndex, index)
			}
			if s.ConfigHash == "" || s.ConfigHash == emptyHash {
				t.Errorf("%s: config_hash %q is the hash of the empty configuration %q", s.NodeID, s.ConfigHash, emptyHash)
			}
		}
		sameEntities(t, "/services", c.nodes...)
		sameEntities(t, "/routes", c.nodes...)
	})
}

// checkMembership checks GET /cluster from n against the started nodes: the
// leader, every member's addresses, voter flag, role and applied index.
func checkMembership(t *testing.T, n *harness.Node, v clusterView, nodes []*harness.Node, leader *harness.Node) {
	t.Helper()
	if v.Leader != leader.NodeID {
		t.Errorf("%s: leader %q, want %s", n.NodeID, v.Leader, leader.NodeID)
	}
	if len(v.Members) != len(nodes) {
		t.Errorf("%s: %d members, want %d: %+v", n.NodeID, len(v.Members), len(nodes), v.Members)
	}
	for _, want := range nodes {
		m, ok := v.member(want.NodeID)
		if !ok {
			t.Errorf("%s: GET /cluster does not list %s: %+v", n.NodeID, want.NodeID, v.Members)
			continue
		}
		if m.AdminAddress != want.AdminAddr || m.ClusterAddress != want.ClusterAddr || m.ProxyAddress != want.ProxyAddr {
			t.Errorf("%s: member %s addresses admin=%s cluster=%s proxy=%s, want %s %s %s", n.NodeID, m.ID,
				m.AdminAddress, m.ClusterAddress, m.ProxyAddress, want.AdminAddr, want.ClusterAddr, want.ProxyAddr)
		}
		if !m.Voter {
			t.Errorf("%s: member %s is not a voter", n.NodeID, m.ID)
		}
		if m.AppliedIndex == nil || m.LastContact == nil || m.ConfigHash == "" {
			t.Errorf("%s: member %s lacks applied_index, last_contact or config_hash: %+v", n.NodeID, m.ID, m)
		}
		wantRole := "follower"
		if m.ID == leader.NodeID {
			wantRole = "leader"
		}
		if m.Role != wantRole {
			t.Errorf("%s: member %s has role %q, want %s", n.NodeID, m.ID, m.Role, wantRole)
		}
	}
}
