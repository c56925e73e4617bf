package cluster

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/test/harness"
)

// TestClusterWithAdminAuth forms a three-node cluster whose Admin APIs
// require tokens: the nodes authenticate to each other with the shared
// bootstrap token, a follower refuses an unauthenticated write itself, and
// an authenticated write sent to a follower is forwarded, re-checked and
// applied by the leader, and readable on every node.
func TestClusterWithAdminAuth(t *testing.T) {
	const token = "cluster-root-token"
	nodes := harness.StartCluster(t, 3, harness.Options{Args: []string{"--admin-auth", "on"},
		Env: []string{"GATEHOUSE_ADMIN_TOKEN=" + token}})
	client := &http.Client{Timeout: 15 * time.Second}
	do := func(method, url, tok string, body any) (int, map[string]any, http.Header) {
		t.Helper()
		var b []byte
		if body != nil {
			b, _ = json.Marshal(body)
		}
		req, _ := http.NewRequest(method, url, bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/json")
		if tok != "" {
			req.Header.Set("Kong-Admin-Token", tok)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, url, err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out, resp.Header
	}

	// Wait until every node sees the same leader and all addresses.
	var leader string
	ok := harness.Poll(30*time.Second, 200*time.Millisecond, func() (bool, string) {
		for _, n := range nodes {
			st, body, _ := do("GET", n.Admin("/cluster"), token, nil)
			members, _ := body["members"].([]any)
			l, _ := body["leader"].(string)
			if st != 200 || l == "" || len(members) != 3 || (leader != "" && l != leader) {
				leader = ""
				return false, "cluster not formed"
			}
			for _, m := range members {
				if a, _ := m.(map[string]any)["admin_address"].(string); a == "" {
					leader = ""
					return false, "addresses not registered"
				}
			}
			leader = l
		}
		return true, ""
	})
	if !ok {
		t.Fatal("authenticated cluster did not form")
	}
	var follower *harness.Node
	for _, n := range nodes {
		if n.NodeID != leader {
			follower = n
		}
	}

	if st, _, _ := do("POST", follower.Admin("/consumers"), "", map[string]any{"username": "nobody"}); st != 401 {
		t.Fatalf("unauthenticated write on a follower: %d, want 401", st)
	}
	st, body, hdr := do("POST", follower.Admin("/consumers"), token, map[string]any{"username": "via-follower"})
	if st != 201 || body["username"] != "via-follower" {
		t.Fatalf("authenticated write through a follower: %d %v", st, body)
	}
	idx := hdr.Get("X-Gatehouse-Config-Index")

	// A refusal on a follower is recorded in the replicated history: the
	// leader's copy shows it with the actor.
	st, viewer, vh := do("POST", follower.Admin("/rbac/admins"), token, map[string]any{"username": "viewer", "roles": []any{"read-only"}})
	if st != 201 {
		t.Fatalf("create read-only admin: %d %v", st, viewer)
	}
	// The follower authenticates from its own copy: wait until it has the
	// new admin (read-your-writes with the write's index).
	req, _ := http.NewRequest("GET", follower.Admin("/rbac/admins/viewer"), nil)
	req.Header.Set("Kong-Admin-Token", token)
	req.Header.Set("X-Gatehouse-Min-Index", vh.Get("X-Gatehouse-Config-Index"))
	if resp, err := client.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("follower never saw the new admin: %v", err)
	} else {
		resp.Body.Close()
	}
	if st, _, _ := do("POST", follower.Admin("/consumers"), viewer["token"].(string), map[string]any{"username": "x"}); st != 403 {
		t.Fatalf("read-only write on a follower: %d, want 403", st)
	}
	var leaderNode *harness.Node
	for _, n := range nodes {
		if n.NodeID == leader {
			leaderNode = n
		}
	}
	if !harness.Poll(10*time.Second, 100*time.Millisecond, func() (bool, string) {
		_, body, _ := do("GET", leaderNode.Admin("/audit/events?size=1000"), token, nil)
		data, _ := body["data"].([]any)
		for _, e := range data {
			m, _ := e.(map[string]any)
			if m["outcome"] == "denied" && m["actor"] == "viewer" && m["node"] == follower.NodeID {
				return true, ""
			}
		}
		return false, "no denial record"
	}) {
		t.Fatal("a denial on a follower did not reach the replicated history")
	}
	// The refused write itself never reached the log.
	if st, _, _ := do("GET", leaderNode.Admin("/consumers/x"), token, nil); st != 404 {
		t.Fatalf("denied write applied: GET /consumers/x -> %d", st)
	}

	// A revoked token stops working on every node.
	vt := viewer["token"].(string)
	st, _, dh := do("DELETE", follower.Admin("/rbac/admins/viewer"), token, nil)
	if st != 204 {
		t.Fatalf("revoke: %d", st)
	}
	for _, n := range nodes {
		// Wait for this node to apply the revocation, then try the token.
		req, _ := http.NewRequest("GET", n.Admin("/"), nil)
		req.Header.Set("Kong-Admin-Token", token)
		req.Header.Set("X-Gatehouse-Min-Index", dh.Get("X-Gatehouse-Config-Index"))
		if resp, err := client.Do(req); err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s did not reach the revocation: %v", n.NodeID, err)
		} else {
			resp.Body.Close()
		}
		if st, _, _ := do("GET", n.Admin("/services"), vt, nil); st != 401 {
			t.Errorf("%s: revoked token -> %d, want 401", n.NodeID, st)
		}
	}
	for _, n := range nodes {
		req, _ := http.NewRequest("GET", n.Admin("/consumers/via-follower"), nil)
		req.Header.Set("Kong-Admin-Token", token)
		req.Header.Set("X-Gatehouse-Min-Index", idx)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s: read after write: %d", n.NodeID, resp.StatusCode)
		}
	}
}
