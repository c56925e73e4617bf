package cluster

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/test/harness"
)

// writeStream sends uniquely named consumer writes round-robin to a set of
// nodes from one goroutine and records the acknowledged ones.
type writeStream struct {
	mu       sync.Mutex
	sent     int
	acked    []ackedWrite
	failures map[string]int // "node: status or error" -> count
	bad      []string       // 2xx answers that are not a created consumer
}

// run streams writes to nodes until d has passed (at most 5000 writes),
// pausing pause between writes.
func (s *writeStream) run(nodes []*harness.Node, d, pause time.Duration) {
	s.failures = map[string]int{}
	end := time.Now().Add(d)
	for i := 0; i < 5000 && time.Now().Before(end); i++ {
		n := nodes[i%len(nodes)]
		name := fmt.Sprintf("u-%d", i)
		sent := time.Now()
		r, err := tryJSON(http.MethodPost, n.Admin("/consumers"), map[string]any{"username": name})
		s.mu.Lock()
		s.sent++
		switch {
		case err != nil:
			s.failures[fmt.Sprintf("%s: transport error", n.NodeID)]++
		case r.Status/100 != 2:
			s.failures[fmt.Sprintf("%s: %d %.80s", n.NodeID, r.Status, r.Body)]++
		default:
			w, ok := parseAck(r, name, n.NodeID, sent)
			if ok {
				s.acked = append(s.acked, w)
			} else {
				s.bad = append(s.bad, r.String())
			}
		}
		s.mu.Unlock()
		time.Sleep(pause)
	}
}

// parseAck reads an acknowledged consumer creation.
func parseAck(r *harness.Response, name, node string, sent time.Time) (ackedWrite, bool) {
	var body struct {
		ID       string `json:"id"`
		Username string `json:"username"`
	}
	var index uint64
	if err := json.Unmarshal(r.Body, &body); err != nil || r.Status != http.StatusCreated || body.Username != name || !harness.IsUUID(body.ID) {
		return ackedWrite{}, false
	}
	if _, err := fmt.Sscan(r.Header.Get("X-Gatehouse-Config-Index"), &index); err != nil || index == 0 {
		return ackedWrite{}, false
	}
	return ackedWrite{Username: name, ID: body.ID, Index: index, Node: node, Sent: sent}, true
}

// TestFailoverKeepsAcknowledgedWrites streams writes over all three Admin
// APIs, SIGKILLs the leader in the middle, and checks that every write the
// cluster acknowledged survives on every node — the survivors and the
// killed node once it has been restarted — and that all nodes end up with
// identical state.
func TestFailoverKeepsAcknowledgedWrites(t *testing.T) {
	c := startCluster(t)
	c.waitLeader(t, c.nodes...)

	var s writeStream
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.run(c.nodes, 8*time.Second, 10*time.Millisecond)
	}()
	// The stream must end before the nodes are stopped, even if the test
	// fails early.
	t.Cleanup(func() { <-done })

	time.Sleep(2 * time.Second)
	s.mu.Lock()
	ackedBeforeKill := len(s.acked)
	s.mu.Unlock()
	if ackedBeforeKill == 0 {
		t.Errorf("no write acknowledged in the 2 s before the leader was killed")
	}
	// The leader may have changed since startup; kill the current one.
	leader := c.waitLeader(t, c.nodes...)
	leader.Kill()
	killedAt := time.Now()
	if !leader.Exited() {
		t.Fatalf("leader %s still runs after SIGKILL", leader.NodeID)
	}
	survivors := c.others(leader)
	t.Logf("killed leader %s at %s", leader.NodeID, killedAt.Format("15:04:05.000"))

	<-done
	ackedAfterKill := 0
	for _, w := range s.acked {
		if w.Sent.After(killedAt) {
			ackedAfterKill++
		}
	}
	t.Logf("stream: %d writes sent, %d acknowledged (%d before the kill, %d sent after it); failures: %v",
		s.sent, len(s.acked), ackedBeforeKill, ackedAfterKill, s.failures)
	for _, b := range s.bad {
		t.Errorf("2xx answer that is not the created consumer: %s", b)
	}
	if ackedAfterKill == 0 {
		t.Fatalf("no write sent after the leader was killed was acknowledged; failures: %v", s.failures)
	}

	newLeader := c.waitLeader(t, survivors...)
	t.Logf("new leader: %s", newLeader.NodeID)

	t.Run("survivors hold every acknowledged write", func(t *testing.T) {
		for _, n := range survivors {
			checkConsumers(t, n, s.acked)
		}
	})
	var converged []nodeStatus
	t.Run("survivors are identical", func(t *testing.T) {
		converged = waitConverged(t, convergeTimeout, survivors...)
		if converged[0].ConfigIndex < maxIndex(s.acked) {
			t.Errorf("config_index %d below the last acknowledged write's index %d", converged[0].ConfigIndex, maxIndex(s.acked))
		}
		sameEntities(t, "/consumers", survivors...)
	})

	t.Run("killed node catches up after restart", func(t *testing.T) {
		leader.Restart(t)
		c.waitLeader(t, c.nodes...)
		sts := waitConverged(t, convergeTimeout, c.nodes...)
		if converged != nil && (sts[0].ConfigHash != converged[0].ConfigHash || sts[0].ConfigIndex != converged[0].ConfigIndex) {
			t.Errorf("state changed while the killed node rejoined: before %s, after %s", describe(converged), describe(sts))
		}
		checkConsumers(t, leader, s.acked)
		sameEntities(t, "/consumers", c.nodes...)
	})
}
