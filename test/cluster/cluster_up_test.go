package cluster

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/test/harness"
)

// clusterUpSpan is the highest port offset `cluster up --nodes 3` uses:
// node i listens on base+10(i-1) + {0 proxy, 1 admin, 5 cluster, 100 status}.
const clusterUpSpan = 125

// freeBasePort picks a random base port in 20000–30000 such that base…
// base+clusterUpSpan are all free now.
func freeBasePort(t *testing.T) int {
	t.Helper()
	for i := 0; i < 50; i++ {
		base := 20000 + rand.IntN(10000-clusterUpSpan)
		if portsFree(base, base+clusterUpSpan) {
			return base
		}
	}
	t.Fatalf("no free range of %d ports found in 20000–30000", clusterUpSpan+1)
	return 0
}

// clusterUp is a running `gatehouse cluster up` process.
type clusterUp struct {
	cmd    *exec.Cmd
	done   chan struct{}
	err    error
	stdout syncBuffer
	stderr syncBuffer
}

func (u *clusterUp) exited() bool {
	select {
	case <-u.done:
		return true
	default:
		return false
	}
}

// startClusterUp runs `gatehouse cluster up` in its own process group. At
// the end of the test, whatever is left of the group (the command and any
// node it started) is killed, and the output is logged if the test failed.
func startClusterUp(t *testing.T, dataDir string, base int) *clusterUp {
	t.Helper()
	u := &clusterUp{done: make(chan struct{})}
	u.cmd = exec.Command(harness.Binary(t), "cluster", "up", "--nodes", "3", "--data-dir", dataDir, "--base-port", fmt.Sprint(base))
	u.cmd.Stdout = &u.stdout
	u.cmd.Stderr = &u.stderr
	u.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := u.cmd.Start(); err != nil {
		t.Fatalf("starting gatehouse cluster up: %v", err)
	}
	go func() {
		u.err = u.cmd.Wait()
		close(u.done)
	}()
	t.Cleanup(func() {
		if !u.exited() {
			_ = syscall.Kill(-u.cmd.Process.Pid, syscall.SIGTERM)
			select {
			case <-u.done:
			case <-time.After(10 * time.Second):
			}
		}
		// Children that outlived the command share its process group.
		_ = syscall.Kill(-u.cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-u.done:
		case <-time.After(5 * time.Second):
		}
		if t.Failed() {
			t.Logf("gatehouse cluster up stdout:\n%s\nstderr:\n%s", u.stdout.String(), u.stderr.String())
			logs, _ := filepath.Glob(filepath.Join(dataDir, "*.log"))
			more, _ := filepath.Glob(filepath.Join(dataDir, "*", "*.log"))
			for _, l := range append(logs, more...) {
				b, _ := os.ReadFile(l)
				t.Logf("%s:\n%s", l, b)
			}
		}
	})
	return u
}

// TestClusterUpCommand runs `gatehouse cluster up --nodes 3`, waits for its
// table, checks the cluster it formed, then stops it with SIGTERM and
// checks that every node it started is gone.
func TestClusterUpCommand(t *testing.T) {
	base := freeBasePort(t)
	dataDir := t.TempDir()
	u := startClusterUp(t, dataDir, base)
	t.Logf("cluster up on base port %d", base)

	harness.Eventually(t, 30*time.Second, 100*time.Millisecond, "cluster up prints its table", func() (bool, string) {
		if u.exited() {
			t.Fatalf("cluster up exited early (%v); stdout:\n%s\nstderr:\n%s", u.err, u.stdout.String(), u.stderr.String())
		}
		return strings.Contains(u.stdout.String(), "leader:"), u.stdout.String()
	})
	table := u.stdout.String()
	t.Logf("cluster up printed:\n%s", table)

	type nodeAddrs struct{ id, proxy, admin, cluster, status string }
	var nodes []nodeAddrs
	for i := 0; i < 3; i++ {
		p := base + 10*i
		nodes = append(nodes, nodeAddrs{
			id:      fmt.Sprintf("node%d", i+1),
			proxy:   fmt.Sprintf("127.0.0.1:%d", p),
			admin:   fmt.Sprintf("127.0.0.1:%d", p+1),
			cluster: fmt.Sprintf("127.0.0.1:%d", p+5),
			status:  fmt.Sprintf("127.0.0.1:%d", p+100),
		})
	}

	var v clusterView
	if err := getJSON("http://"+nodes[0].admin+"/cluster", &v); err != nil {
		t.Fatalf("GET /cluster on node1: %v", err)
	}
	if v.Leader == "" {
		t.Errorf("GET /cluster on node1: no leader: %+v", v)
	}
	if !strings.Contains(table, "leader: "+v.Leader) {
		t.Errorf("table does not name leader %q:\n%s", v.Leader, table)
	}
	if len(v.Members) != 3 {
		t.Errorf("GET /cluster on node1: %d members, want 3: %+v", len(v.Members), v.Members)
	}
	for _, want := range nodes {
		m, ok := v.member(want.id)
		if !ok {
			t.Errorf("GET /cluster does not list %s: %+v", want.id, v.Members)
			continue
		}
		if m.ClusterAddress != want.cluster {
			t.Errorf("%s: cluster_address %s, want %s", want.id, m.ClusterAddress, want.cluster)
		}
		if !strings.Contains(table, want.admin) || !strings.Contains(table, want.proxy) {
			t.Errorf("table does not show %s's admin %s and proxy %s", want.id, want.admin, want.proxy)
		}
	}
	for _, n := range nodes {
		harness.Eventually(t, 10*time.Second, pollInterval, n.id+" is ready", func() (bool, string) {
			r, err := harness.Try(harness.Request{URL: "http://" + n.status + "/status/ready"})
			if err != nil {
				return false, err.Error()
			}
			return r.Status == http.StatusOK, r.String()
		})
	}

	if err := u.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM cluster up: %v", err)
	}
	stopped := time.Now()
	harness.Eventually(t, 15*time.Second, 100*time.Millisecond, "all nodes stop after SIGTERM to cluster up", func() (bool, string) {
		var up []string
		for _, n := range nodes {
			for _, addr := range []string{n.admin, n.proxy, n.cluster, n.status} {
				if answers(addr) {
					up = append(up, n.id+" "+addr)
				}
			}
		}
		return len(up) == 0, fmt.Sprintf("still answering: %v", up)
	})
	select {
	case <-u.done:
		t.Logf("cluster up exited %v after SIGTERM (%v)", time.Since(stopped).Round(time.Millisecond), u.err)
	case <-time.After(max(15*time.Second-time.Since(stopped), time.Second)):
		t.Fatalf("cluster up still runs %v after SIGTERM", time.Since(stopped).Round(time.Millisecond))
	}
	// The nodes were started in cluster up's process group: none of them
	// may still run.
	harness.Eventually(t, 5*time.Second, 100*time.Millisecond, "no process left in cluster up's process group", func() (bool, string) {
		left := liveGroupMembers(u.cmd.Process.Pid)
		return len(left) == 0, fmt.Sprintf("still running: %v", left)
	})
}

// liveGroupMembers lists the processes (pid and command) of process group
// pgid that are not zombies, from /proc.
func liveGroupMembers(pgid int) []string {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var out []string
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp …; comm may contain spaces.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(s[i+1:])
		if len(fields) < 3 || fields[0] == "Z" || fields[2] != fmt.Sprint(pgid) {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join(filepath.Dir(f), "cmdline"))
		out = append(out, filepath.Base(filepath.Dir(f))+" "+strings.ReplaceAll(string(cmdline), "\x00", " "))
	}
	return out
}
