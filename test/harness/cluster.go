package harness

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
)

// StartCluster starts size gatehouse nodes, node1…nodeN, that form one
// Raft cluster: every node gets the same `--join` list (the Admin API
// addresses of all nodes, its own included) and `--bootstrap-expect size`,
// followed by opts.Args. Ports are allocated for all nodes before any of
// them starts, since each command line names the others. Each node gets its
// own fresh data directory (opts.NodeID and opts.DataDir are ignored).
//
// StartCluster returns once every node's Admin API answers GET / with 200;
// that does not mean a leader has been elected yet. The nodes are stopped
// when the test ends, like nodes from Start, and their output is logged if
// the test failed.
func StartCluster(t testing.TB, size int, opts Options) []*Node {
	t.Helper()
	if size < 1 {
		t.Fatalf("StartCluster: size %d", size)
	}
	bin := Binary(t)
	if opts.ReadyTimeout == 0 {
		opts.ReadyTimeout = DefaultReadyTimeout
	}
	nodes := make([]*Node, size)
	for i := range nodes {
		o := opts
		o.NodeID = fmt.Sprintf("node%d", i+1)
		n := &Node{NodeID: o.NodeID, bin: bin, out: &tailBuffer{max: maxOutput}}
		nodes[i] = n
		t.Cleanup(func() {
			// A node left SIGSTOPped by a test would ignore SIGTERM
			// until the stop timeout; let it run again first.
			_ = n.Signal(syscall.SIGCONT)
			n.Stop()
			if t.Failed() {
				t.Logf("gatehouse node %s (admin %s, proxy %s, cluster %s) output:\n%s", n.NodeID, n.AdminURL, n.ProxyURL, n.ClusterAddr, n.Output())
			}
		})
	}

	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		ports, err := FreePorts(portsPerNode * size)
		if err != nil {
			t.Fatalf("allocating ports: %v", err)
		}
		joins := make([]string, size)
		for i, n := range nodes {
			// Fresh directories on every attempt: a failed attempt may
			// have bootstrapped Raft with the old addresses.
			n.DataDir = t.TempDir()
			// Cleanups run last-registered first: stop the node before
			// its directory is removed, or a node still writing (a
			// snapshot at the end of a test) races the removal.
			t.Cleanup(n.Stop)
			n.setPorts(ports[portsPerNode*i : portsPerNode*(i+1)])
			joins[i] = n.AdminAddr
		}
		for i, n := range nodes {
			o := opts
			o.NodeID, o.DataDir = n.NodeID, n.DataDir
			o.Args = append([]string{"--join", strings.Join(joins, ","), "--bootstrap-expect", fmt.Sprint(size)}, opts.Args...)
			n.opts = o
			if err := n.launch(); err != nil {
				t.Fatalf("starting %s (node %d): %v", bin, i+1, err)
			}
		}
		lastErr = nil
		portRace := false
		for _, n := range nodes {
			if err := n.waitReady(opts.ReadyTimeout); err != nil {
				lastErr = fmt.Errorf("node %s: %w", n.NodeID, err)
				portRace = portRace || strings.Contains(strings.ToLower(n.Output()), "address already in use")
			}
		}
		if lastErr == nil {
			return nodes
		}
		for _, n := range nodes {
			n.Stop()
		}
		// Only a port race is worth another try.
		if !portRace {
			break
		}
	}
	t.Fatalf("gatehouse cluster did not become ready: %v", lastErr)
	return nil
}

// Signal sends sig to the node's current process (SIGSTOP and SIGCONT
// simulate a frozen or partitioned node). It fails if no process runs.
func (n *Node) Signal(sig syscall.Signal) error {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.mu.Unlock()
	if cmd == nil || done == nil {
		return fmt.Errorf("node %s: no process", n.NodeID)
	}
	select {
	case <-done:
		return fmt.Errorf("node %s: process has exited", n.NodeID)
	default:
	}
	return cmd.Process.Signal(sig)
}
