package cluster

import (
	"encoding/json"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/test/echo"
	"github.com/gatehouse-gw/gatehouse/test/harness"
)

// noLeaderWriteLimit is how long a write on a node without a quorum may
// take: about 10 s. With no known leader the product waits 5 s for one;
// a write forwarded to a leader that accepts connections but never answers
// (SIGSTOPped) is given up after 10 s. Either way it answers 503.
const noLeaderWriteLimit = 11 * time.Second

// TestMinorityPartition freezes (SIGSTOP) the leader and one follower. The
// remaining node has no quorum: a write on it must answer 503 with a JSON
// message within a bounded time and change nothing, while its proxy keeps
// serving the configuration it has. After SIGCONT the cluster heals: writes
// succeed again and all nodes converge.
func TestMinorityPartition(t *testing.T) {
	c := startCluster(t)
	up := echo.StartT(t, "echo-partition")
	leader := c.waitLeader(t, c.nodes...)
	followers := c.followers(leader)
	lone, frozen := followers[0], []*harness.Node{leader, followers[1]}

	create(t, leader, "/services", map[string]any{"name": "before", "url": up.URL})
	create(t, leader, "/services/before/routes", map[string]any{"paths": []any{"/before"}})
	for _, n := range c.nodes {
		waitProxy(t, n, "/before/anything", up.Name)
	}
	before := waitConverged(t, convergeTimeout, c.nodes...)[0]

	for _, n := range frozen {
		if err := n.Signal(syscall.SIGSTOP); err != nil {
			t.Fatalf("SIGSTOP %s: %v", n.NodeID, err)
		}
	}
	t.Logf("froze leader %s and follower %s; %s is alone", leader.NodeID, followers[1].NodeID, lone.NodeID)

	// rejected maps the usernames of writes the lone node answered with
	// 503 to that answer: none of them may ever be applied.
	rejected := map[string]string{}
	partitionedWrite := func(t *testing.T, username string) {
		r, took, err := timedJSON(http.MethodPost, lone.Admin("/consumers"), map[string]any{"username": username})
		if err != nil {
			t.Errorf("write on %s without quorum: no answer after %v (%v); want a 503 within %v", lone.NodeID, took.Round(time.Millisecond), err, noLeaderWriteLimit)
			return
		}
		t.Logf("write on %s without quorum: %d after %v: %s", lone.NodeID, r.Status, took.Round(time.Millisecond), r.Body)
		if took > noLeaderWriteLimit {
			t.Errorf("write on %s without quorum took %v, want at most %v", lone.NodeID, took.Round(time.Millisecond), noLeaderWriteLimit)
		}
		if r.Status != http.StatusServiceUnavailable {
			t.Errorf("write without quorum: want 503, got %s", r)
			return
		}
		// The README promises that such a 503 "changes nothing".
		rejected[username] = string(r.Body)
		var body struct {
			Message string `json:"message"`
		}
		if err := json.Unmarshal(r.Body, &body); err != nil || body.Message == "" {
			t.Errorf("503 without a JSON message: %s", r)
		}
	}

	// Right after the freeze the lone node still believes in the old
	// leader and forwards the write to it.
	t.Run("write right after the freeze", func(t *testing.T) { partitionedWrite(t, "partitioned-1") })
	// By now it has noticed that no leader answers.
	t.Run("write while no leader is known", func(t *testing.T) { partitionedWrite(t, "partitioned-2") })

	t.Run("nothing applied on the lone node", func(t *testing.T) {
		s := mustStatus(t, lone)
		if s.ConfigIndex != before.ConfigIndex || s.ConfigHash != before.ConfigHash {
			t.Errorf("lone node's config moved without quorum: before %s, now %s", before, s)
		}
		if s.Leader != "" {
			t.Errorf("lone node still reports leader %q without quorum: %s", s.Leader, s)
		}
		for _, u := range []string{"partitioned-1", "partitioned-2"} {
			r := harness.Get(t, lone.Admin("/consumers/"+u))
			harness.CheckStatus(t, r, http.StatusNotFound)
		}
		r := harness.Get(t, lone.Status("/status/ready"))
		if r.Status == http.StatusOK {
			t.Errorf("/status/ready is 200 on a node without a leader: %s", r)
		}
	})

	t.Run("lone proxy keeps serving", func(t *testing.T) {
		r := harness.Get(t, lone.Proxy("/before/anything"))
		harness.CheckStatus(t, r, http.StatusOK)
		if got := r.Header.Get("X-Upstream-Name"); got != up.Name {
			t.Errorf("proxy answer not from the upstream (X-Upstream-Name %q): %s", got, r)
		}
	})

	for _, n := range frozen {
		if err := n.Signal(syscall.SIGCONT); err != nil {
			t.Fatalf("SIGCONT %s: %v", n.NodeID, err)
		}
	}

	t.Run("cluster heals", func(t *testing.T) {
		c.waitLeader(t, c.nodes...)
		var r *harness.Response
		harness.Eventually(t, 15*time.Second, 200*time.Millisecond, "a write on "+lone.NodeID+" after the heal", func() (bool, string) {
			var err error
			r, err = tryJSON(http.MethodPost, lone.Admin("/consumers"), map[string]any{"username": "healed"})
			if err != nil {
				return false, err.Error()
			}
			return r.Status == http.StatusCreated, r.String()
		})
		checkAdmin(t, r, true)
		index := r.ConfigIndex(t)
		sts := waitConverged(t, convergeTimeout, c.nodes...)
		if sts[0].ConfigHash == before.ConfigHash {
			t.Errorf("config_hash did not change with the write after the heal: %s", describe(sts))
		}
		for _, n := range c.nodes {
			r := readAt(t, n, "/consumers/healed", index)
			harness.CheckStatus(t, r, http.StatusOK)
			// A write answered with 503 was not applied, and must not
			// be applied later either.
			for u, answer := range rejected {
				r := readAt(t, n, "/consumers/"+u, index)
				if r.Status != http.StatusNotFound {
					t.Errorf("write of %s was answered 503 %s during the partition, but is applied after the heal on %s: %s", u, answer, n.NodeID, r)
				}
			}
		}
		// A write that got no answer may or may not be applied; say which.
		for _, u := range []string{"partitioned-1", "partitioned-2"} {
			if _, ok := rejected[u]; !ok {
				r := readAt(t, lone, "/consumers/"+u, index)
				t.Logf("unanswered write of %s after the heal: GET on %s -> %d", u, lone.NodeID, r.Status)
			}
		}
		sameEntities(t, "/consumers", c.nodes...)
		sameEntities(t, "/services", c.nodes...)
	})
}
