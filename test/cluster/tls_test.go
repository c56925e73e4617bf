package cluster

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/test/harness"
)

// makeCerts runs `gatehouse cluster certs`, which writes a fresh CA and a
// certificate for each node id, and returns the flags for node id.
func makeCerts(t *testing.T, dir string, ids ...string) func(id string) []string {
	t.Helper()
	out, err := exec.Command(harness.Binary(t), append([]string{"cluster", "certs", "--dir", dir}, ids...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("cluster certs: %v\n%s", err, out)
	}
	return func(id string) []string {
		return []string{"--cluster-tls-cert", filepath.Join(dir, id+".pem"),
			"--cluster-tls-key", filepath.Join(dir, id+"-key.pem"), "--cluster-ca", filepath.Join(dir, "ca.pem")}
	}
}

func memberCount(t *testing.T, n *harness.Node) int {
	t.Helper()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(n.Admin("/cluster"))
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var v struct {
		Members []any `json:"members"`
	}
	json.NewDecoder(resp.Body).Decode(&v)
	return len(v.Members)
}

// TestClusterTLS runs Raft over mutual TLS: a node whose certificate comes
// from the cluster's CA joins at runtime; one with a certificate from
// another CA is refused and never becomes a member.
func TestClusterTLS(t *testing.T) {
	ours := makeCerts(t, t.TempDir(), "member", "newcomer")
	theirs := makeCerts(t, t.TempDir(), "intruder")
	nodes := harness.StartCluster(t, 3, harness.Options{Args: ours("member")})
	if !harness.Poll(30*time.Second, 200*time.Millisecond, func() (bool, string) {
		return memberCount(t, nodes[0]) == 3, "three members"
	}) {
		t.Fatal("TLS cluster did not form")
	}
	// A write replicates over the TLS transport to every node.
	w := harness.JSON(t, "POST", nodes[1].Admin("/consumers"), map[string]any{"username": "over-tls"})
	harness.ExpectStatus(t, w, 201)
	for _, n := range nodes {
		r := harness.Get(t, n.Admin("/consumers/over-tls"), "X-Gatehouse-Min-Index", w.Header.Get("X-Gatehouse-Config-Index"))
		harness.ExpectStatus(t, r, 200)
	}

	// Every node holds the same history: the same chain hash at the
	// write's index.
	hashes := map[string]bool{}
	for _, n := range nodes {
		ev := harness.Get(t, n.Admin("/audit/events/"+w.Header.Get("X-Gatehouse-Config-Index")))
		harness.ExpectStatus(t, ev, 200)
		hashes[harness.Str(ev.JSON(t), "hash")] = true
	}
	if len(hashes) != 1 {
		t.Fatalf("nodes disagree on the history's chain hash: %v", hashes)
	}

	// A plaintext client on the Raft port gets no Raft protocol: only a
	// TLS alert, or a closed connection, and never configuration bytes.
	for _, n := range nodes {
		conn, err := net.DialTimeout("tcp", n.ClusterAddr, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(3 * time.Second))
		// rpcAppendEntries (0) followed by a msgpack map: what a plaintext
		// Raft peer would send.
		conn.Write([]byte{0, 0x80})
		conn.(*net.TCPConn).CloseWrite()
		got, _ := io.ReadAll(conn)
		conn.Close()
		if len(got) > 0 && got[0] != 0x15 { // 0x15: TLS alert record
			t.Errorf("%s: plaintext client got a non-TLS answer %q", n.NodeID, got)
		}
		if bytes.Contains(got, []byte("over-tls")) {
			t.Errorf("%s: configuration readable in cleartext on the Raft port", n.NodeID)
		}
	}

	join := []string{"--join", nodes[0].AdminAddr}
	intruder := harness.Start(t, harness.Options{NodeID: "intruder", Args: append(join, theirs("intruder")...)})
	// Its join attempts are refused by the leader's TLS probe; give it
	// several rounds.
	time.Sleep(3 * time.Second)
	if c := memberCount(t, nodes[0]); c != 3 {
		t.Fatalf("a node with a foreign CA's certificate became a member (%d members)", c)
	}
	if memberCount(t, intruder) > 0 {
		t.Fatal("the intruder believes it is in a cluster")
	}

	newcomer := harness.Start(t, harness.Options{NodeID: "newcomer", Args: append(join, ours("newcomer")...)})
	if !harness.Poll(30*time.Second, 200*time.Millisecond, func() (bool, string) {
		return memberCount(t, nodes[0]) == 4 && memberCount(t, newcomer) == 4, "four members"
	}) {
		t.Fatal("a node with a certificate from the cluster CA could not join")
	}
	r := harness.Get(t, newcomer.Admin("/consumers/over-tls"), "X-Gatehouse-Min-Index", w.Header.Get("X-Gatehouse-Config-Index"))
	harness.ExpectStatus(t, r, 200)
}
