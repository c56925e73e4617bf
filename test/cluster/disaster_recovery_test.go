package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/test/echo"
	"github.com/gatehouse-gw/gatehouse/test/harness"
)

// TestBackupFromFollowerIntoFreshCluster backs a three-node cluster up
// from a follower while writes keep landing, seeds a brand-new node from
// the file (gatehouse restore --from --data-dir), grows it into a new
// three-node cluster, and checks that every new node holds exactly the
// source's configuration and history at the backup's index, and proxies.
func TestBackupFromFollowerIntoFreshCluster(t *testing.T) {
	up := echo.StartT(t, "dr-echo")
	src := startCluster(t)
	leader := src.waitLeader(t, src.nodes...)
	follower := src.followers(leader)[0]
	create(t, leader, "/services", map[string]any{"name": "dr", "url": up.URL})
	create(t, leader, "/services/dr/routes", map[string]any{"name": "dr-route", "paths": []any{"/dr"}})
	create(t, leader, "/consumers", map[string]any{"username": "dr-user"})
	harness.ExpectStatus(t, harness.JSON(t, "POST", leader.Admin("/consumers/dr-user/key-auth"),
		map[string]any{"key": "dr-secret-key-0123456789"}), 201)

	// Writes keep landing while the backup runs.
	var stop atomic.Bool
	var wg sync.WaitGroup
	var written atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 2000 && !stop.Load(); i++ {
			r, err := tryJSON("POST", leader.Admin("/consumers"), map[string]any{"username": fmt.Sprintf("busy-%d", i)})
			if err == nil && r.Status == 201 {
				written.Add(1)
			}
		}
	}()
	harness.Eventually(t, 10*time.Second, 20*time.Millisecond, "writes under way", func() (bool, string) {
		return written.Load() >= 20, fmt.Sprint(written.Load(), " writes")
	})
	file := t.TempDir() + "/cluster.tar.gz"
	out, err := exec.Command(harness.Binary(t), "backup", "--admin", follower.AdminURL, "--out", file).CombinedOutput()
	if err != nil {
		stop.Store(true)
		wg.Wait()
		t.Fatalf("backup from a follower: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`config index (\d+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("backup output names no index: %s", out)
	}
	index := string(m[1])
	more := written.Load()
	harness.Eventually(t, 10*time.Second, 20*time.Millisecond, "writes after the backup", func() (bool, string) {
		return written.Load() >= more+10, fmt.Sprint(written.Load(), " writes")
	})
	stop.Store(true)
	wg.Wait()

	wantConfig := harness.Get(t, leader.Admin("/config?at="+index)).Text()
	wantHistory := history(t, leader, index)
	if len(wantHistory) < 10 {
		t.Fatalf("source history up to %s has %d events", index, len(wantHistory))
	}

	// Disaster: a brand-new cluster from the file.
	dir := t.TempDir()
	if out, err := exec.Command(harness.Binary(t), "restore", "--from", file, "--data-dir", dir).CombinedOutput(); err != nil {
		t.Fatalf("seed: %v\n%s", err, out)
	}
	first := harness.Start(t, harness.Options{NodeID: "dr1", DataDir: dir})
	second := harness.Start(t, harness.Options{NodeID: "dr2", Args: []string{"--join", first.AdminAddr}})
	third := harness.Start(t, harness.Options{NodeID: "dr3", Args: []string{"--join", first.AdminAddr}})
	for _, n := range []*harness.Node{first, second, third} {
		harness.Eventually(t, 20*time.Second, 100*time.Millisecond, n.NodeID+" holds the backup", func() (bool, string) {
			r, err := harness.Try(harness.Request{Method: "GET", URL: n.Admin("/config?at=" + index)})
			if err != nil || r.Status != 200 {
				return false, fmt.Sprint(r, err)
			}
			return r.Text() == wantConfig, r.Text()
		})
		if got := history(t, n, index); fmt.Sprint(got) != fmt.Sprint(wantHistory) {
			t.Errorf("%s: history up to %s differs from the source's (%d vs %d events)", n.NodeID, index, len(got), len(wantHistory))
		}
		harness.Eventually(t, 10*time.Second, 50*time.Millisecond, n.NodeID+" proxies the restored route", func() (bool, string) {
			r, err := harness.Try(harness.Request{Method: "GET", URL: n.Proxy("/dr/x")})
			return err == nil && r.Status == 200, fmt.Sprint(r, err)
		})
	}
	// The new cluster takes writes, on any node.
	create(t, third, "/consumers", map[string]any{"username": "after-recovery"})

	// Seeding a directory that already holds a node is refused, and
	// leaves no seed for its next start.
	out, err = exec.Command(harness.Binary(t), "restore", "--from", file, "--data-dir", dir).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "already holds a node's state") {
		t.Errorf("seeding a node's own data dir: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "seed.snapshot")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused seed left %s behind (%v)", filepath.Join(dir, "seed.snapshot"), err)
	}
}

// history returns the hash chain of n's history up to index: equal
// chains mean equal events, byte for byte.
func history(t *testing.T, n *harness.Node, until string) []string {
	t.Helper()
	var hashes []string
	q := url.Values{"until": {until}, "size": {"1000"}}
	path := "/audit/events?" + q.Encode()
	for page := 0; path != "" && page < 1000; page++ {
		r := harness.Get(t, n.Admin(path))
		harness.ExpectStatus(t, r, 200)
		var body struct {
			Data []struct {
				Index uint64 `json:"index"`
				Hash  string `json:"hash"`
			} `json:"data"`
			Next *string `json:"next"`
		}
		if err := json.Unmarshal(r.Body, &body); err != nil {
			t.Fatal(err)
		}
		for _, e := range body.Data {
			hashes = append(hashes, fmt.Sprintf("%d:%s", e.Index, e.Hash))
		}
		path = ""
		if body.Next != nil {
			path = *body.Next
		}
	}
	return hashes
}
