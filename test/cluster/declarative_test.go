package cluster

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/test/echo"
	"github.com/gatehouse-gw/gatehouse/test/harness"
)

// TestDeclarativeConfigOnFollower posts a kong.yaml to a follower: the
// leader appends it as one event, and every node serves it.
func TestDeclarativeConfigOnFollower(t *testing.T) {
	c := startCluster(t)
	up := echo.StartT(t, "echo-declarative")
	leader := c.waitLeader(t, c.nodes...)
	follower := c.followers(leader)[0]
	doc := fmt.Sprintf(`_format_version: "3.0"
services:
- name: decl
  url: %s
  routes:
  - name: decl-route
    paths: [/decl]
consumers:
- username: bob
`, up.URL)
	r := harness.Raw(t, http.MethodPost, follower.Admin("/config"), "application/yaml", []byte(doc))
	harness.ExpectStatus(t, r, http.StatusCreated)
	index := r.ConfigIndex(t)
	for _, n := range c.nodes {
		waitProxy(t, n, "/decl", "echo-declarative")
		if r := readAt(t, n, "/consumers/bob", index); r.Status != http.StatusOK {
			t.Errorf("%s: consumer from the document: %s", n.NodeID, r)
		}
	}
	// One event for the whole document.
	ev := harness.Get(t, leader.Admin(fmt.Sprintf("/audit/events/%d", index))).JSON(t)
	if ev["op"] != "config" || ev["outcome"] != "applied" {
		t.Errorf("the document's event: %v", ev)
	}
	if ch, _ := ev["changes"].([]any); len(ch) != 3 {
		t.Errorf("the document's event lists %d changes, want 3 (service, route, consumer): %v", len(ch), ev)
	}
	waitConverged(t, 10*time.Second, c.nodes...)
}
