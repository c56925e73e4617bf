// Package harness builds the gatehouse binary once per test binary, starts
// real gatehouse processes on loopback ports and offers small HTTP helpers,
// so that end-to-end and conformance tests talk to Gatehouse only over HTTP,
// exactly as a Kong client would.
//
// The harness never imports product packages.
package harness

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ModulePath is the Go module whose cmd/gatehouse is built.
const ModulePath = "github.com/gatehouse-gw/gatehouse"

const (
	// DefaultReadyTimeout bounds how long Start waits for GET / on the
	// Admin API to answer 200.
	DefaultReadyTimeout = 15 * time.Second
	// stopTimeout bounds how long Stop waits after SIGTERM before SIGKILL.
	stopTimeout = 10 * time.Second
	// buildTimeout bounds `go build`.
	buildTimeout = 8 * time.Minute
	// maxOutput is how much of a process's output is kept (the tail).
	maxOutput = 1 << 20
)

var (
	buildOnce sync.Once
	buildDir  string
	binPath   string
	buildErr  error

	liveMu sync.Mutex
	live   = map[*Node]struct{}{}
)

// Main runs the tests of a package and then stops any node a test forgot
// and removes the built binary. Call it from TestMain:
//
//	func TestMain(m *testing.M) { harness.Main(m) }
func Main(m *testing.M) {
	code := m.Run()
	liveMu.Lock()
	nodes := make([]*Node, 0, len(live))
	for n := range live {
		nodes = append(nodes, n)
	}
	liveMu.Unlock()
	for _, n := range nodes {
		n.Stop()
	}
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// ModuleRoot finds the directory holding the gatehouse go.mod, walking up
// from the current directory (go test runs in the package directory).
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for i := 0; i < 20; i++ {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil {
			sc := bufio.NewScanner(bytes.NewReader(b))
			for sc.Scan() {
				line := strings.TrimSpace(sc.Text())
				if strings.HasPrefix(line, "module ") && strings.TrimSpace(strings.TrimPrefix(line, "module ")) == ModulePath {
					return dir, nil
				}
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return "", fmt.Errorf("module %s not found above the current directory", ModulePath)
}

// Binary returns the path of the gatehouse binary: $GATEHOUSE_BIN if set,
// otherwise a binary built once (per test binary) from ./cmd/gatehouse.
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("GATEHOUSE_BIN"); p != "" {
		return p
	}
	buildOnce.Do(build)
	if buildErr != nil {
		t.Fatalf("building gatehouse: %v", buildErr)
	}
	return binPath
}

func build() {
	root, err := ModuleRoot()
	if err != nil {
		buildErr = err
		return
	}
	dir, err := os.MkdirTemp("", "gatehouse-test-bin-")
	if err != nil {
		buildErr = err
		return
	}
	buildDir = dir
	out := filepath.Join(dir, "gatehouse")
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/gatehouse")
	cmd.Dir = root
	var buf bytes.Buffer
	cmd.Stdout = &buf
	cmd.Stderr = &buf
	if err := cmd.Run(); err != nil {
		buildErr = fmt.Errorf("go build ./cmd/gatehouse in %s: %v\n%s", root, err, buf.String())
		return
	}
	binPath = out
}

// Options configure Start.
type Options struct {
	// NodeID is passed as --node-id; default "node1".
	NodeID string
	// DataDir is passed as --data-dir; default a fresh t.TempDir().
	DataDir string
	// Args are appended to the command line.
	Args []string
	// Env is appended to the process environment.
	Env []string
	// ReadyTimeout overrides DefaultReadyTimeout.
	ReadyTimeout time.Duration
}

// Node is one running gatehouse process.
type Node struct {
	NodeID  string
	DataDir string

	AdminURL  string // http://127.0.0.1:P
	ProxyURL  string
	StatusURL string

	AdminAddr   string // 127.0.0.1:P
	ProxyAddr   string
	StatusAddr  string
	ClusterAddr string
	GossipAddr  string

	opts Options
	bin  string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	werr error
	out  *tailBuffer
}

// Start launches a gatehouse node on free loopback ports and waits until
// its Admin API answers GET / with 200. The node is stopped when the test
// (and its subtests) finish; its output is logged if the test failed.
func Start(t testing.TB, opts Options) *Node {
	t.Helper()
	bin := Binary(t)
	if opts.NodeID == "" {
		opts.NodeID = "node1"
	}
	if opts.DataDir == "" {
		opts.DataDir = t.TempDir()
	}
	if opts.ReadyTimeout == 0 {
		opts.ReadyTimeout = DefaultReadyTimeout
	}
	n := &Node{NodeID: opts.NodeID, DataDir: opts.DataDir, opts: opts, bin: bin, out: &tailBuffer{max: maxOutput}}
	t.Cleanup(func() {
		n.Stop()
		if t.Failed() {
			t.Logf("gatehouse node %s (admin %s, proxy %s) output:\n%s", n.NodeID, n.AdminURL, n.ProxyURL, n.Output())
		}
	})
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		ports, err := FreePorts(portsPerNode)
		if err != nil {
			t.Fatalf("allocating ports: %v", err)
		}
		n.setPorts(ports)
		if err := n.launch(); err != nil {
			t.Fatalf("starting %s: %v", bin, err)
		}
		lastErr = n.waitReady(opts.ReadyTimeout)
		if lastErr == nil {
			return n
		}
		n.Stop()
		// Only a port race is worth another try.
		if !strings.Contains(strings.ToLower(n.Output()), "address already in use") {
			break
		}
	}
	t.Fatalf("gatehouse node %s did not become ready: %v", n.NodeID, lastErr)
	return nil
}

// portsPerNode: proxy, admin, status, cluster (Raft) and gossip.
const portsPerNode = 5

func (n *Node) setPorts(p []int) {
	n.GossipAddr = fmt.Sprintf("127.0.0.1:%d", p[4])
	n.ProxyAddr = fmt.Sprintf("127.0.0.1:%d", p[0])
	n.AdminAddr = fmt.Sprintf("127.0.0.1:%d", p[1])
	n.StatusAddr = fmt.Sprintf("127.0.0.1:%d", p[2])
	n.ClusterAddr = fmt.Sprintf("127.0.0.1:%d", p[3])
	n.ProxyURL = "http://" + n.ProxyAddr
	n.AdminURL = "http://" + n.AdminAddr
	n.StatusURL = "http://" + n.StatusAddr
}

// Args returns the command line (without the binary) the node runs with.
func (n *Node) Args() []string {
	args := []string{"run",
		"--data-dir", n.DataDir,
		"--node-id", n.NodeID,
		"--proxy-listen", n.ProxyAddr,
		"--admin-listen", n.AdminAddr,
		"--status-listen", n.StatusAddr,
		"--cluster-listen", n.ClusterAddr,
		"--gossip-listen", n.GossipAddr,
	}
	return append(args, n.opts.Args...)
}

func (n *Node) launch() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	cmd := exec.Command(n.bin, n.Args()...)
	cmd.Env = append(os.Environ(), n.opts.Env...)
	fmt.Fprintf(n.out, "=== %s $ gatehouse %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(n.Args(), " "))
	cmd.Stdout = n.out
	cmd.Stderr = n.out
	if err := cmd.Start(); err != nil {
		return err
	}
	n.cmd = cmd
	n.done = make(chan struct{})
	n.werr = nil
	done := n.done
	go func() {
		err := cmd.Wait()
		n.mu.Lock()
		n.werr = err
		n.mu.Unlock()
		fmt.Fprintf(n.out, "=== %s process exited: %v\n", time.Now().Format(time.RFC3339Nano), err)
		close(done)
	}()
	liveMu.Lock()
	live[n] = struct{}{}
	liveMu.Unlock()
	return nil
}

func (n *Node) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	var last string
	for i := 0; time.Now().Before(deadline) && i < 1000; i++ {
		if n.Exited() {
			return fmt.Errorf("process exited before it was ready: %v", n.exitErr())
		}
		resp, err := client.Get(n.AdminURL + "/")
		if err == nil {
			resp.Body.Close()
			// 401: the Admin API is up and requires a token.
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("GET %s/ not 200 within %v (last: %s)", n.AdminURL, timeout, last)
}

// Exited reports whether the current process has exited.
func (n *Node) Exited() bool {
	n.mu.Lock()
	done := n.done
	n.mu.Unlock()
	if done == nil {
		return true
	}
	select {
	case <-done:
		return true
	default:
		return false
	}
}

func (n *Node) exitErr() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.werr
}

// Stop sends SIGTERM, waits (bounded) and SIGKILLs a process that hangs.
// It is safe to call more than once.
func (n *Node) Stop() {
	n.signalAndWait(syscall.SIGTERM, stopTimeout)
}

// Kill stops the process with SIGKILL (a crash, no graceful shutdown).
func (n *Node) Kill() {
	n.signalAndWait(syscall.SIGKILL, stopTimeout)
}

func (n *Node) signalAndWait(sig syscall.Signal, timeout time.Duration) {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.mu.Unlock()
	if cmd == nil || done == nil {
		return
	}
	defer func() {
		liveMu.Lock()
		delete(live, n)
		liveMu.Unlock()
	}()
	select {
	case <-done:
		return
	default:
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
		return
	case <-time.After(timeout):
	}
	fmt.Fprintf(n.out, "=== %s no exit %v after %v: SIGKILL\n", time.Now().Format(time.RFC3339Nano), sig, timeout)
	_ = cmd.Process.Kill()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
	}
}

// Restart stops the node and starts it again with the same data directory,
// node id and ports, then waits until it is ready.
func (n *Node) Restart(t testing.TB) {
	t.Helper()
	n.Stop()
	if err := n.launch(); err != nil {
		t.Fatalf("restarting node %s: %v", n.NodeID, err)
	}
	if err := n.waitReady(n.opts.ReadyTimeout); err != nil {
		t.Fatalf("node %s not ready after restart: %v", n.NodeID, err)
	}
}

// Output returns the captured stdout and stderr (the last megabyte).
func (n *Node) Output() string { return n.out.String() }

// Admin returns the Admin API URL for path ("/services").
func (n *Node) Admin(path string) string { return n.AdminURL + path }

// Proxy returns the proxy URL for path ("/mock/anything").
func (n *Node) Proxy(path string) string { return n.ProxyURL + path }

// Status returns the Status API URL for path.
func (n *Node) Status(path string) string { return n.StatusURL + path }

// ConfigIndex reads X-Gatehouse-Config-Index from GET / on the Admin API.
func (n *Node) ConfigIndex(t testing.TB) uint64 {
	t.Helper()
	r := Get(t, n.Admin("/"))
	if r.Status != 200 {
		t.Fatalf("GET / for the config index: %s", r)
	}
	return r.ConfigIndex(t)
}

// FreePorts returns n distinct ports on 127.0.0.1 free for both TCP and
// UDP (gossip listens on both). The listeners are closed before
// returning, so a port can in principle be taken by someone else before
// it is used.
//
// They are drawn from below the kernel's ephemeral range when it leaves
// room: a node restarted on its own ports (a failover test) found its
// cluster port taken as the source port of another node's outgoing
// connection, which no retry of the listen can wait out.
func FreePorts(n int) ([]int, error) {
	var closers []interface{ Close() error }
	defer func() {
		for _, c := range closers {
			c.Close()
		}
	}()
	lo, hi := 10000, ephemeralLow()
	ports := make([]int, 0, n)
	for i := 0; len(ports) < n && i < 50*n; i++ {
		addr := "127.0.0.1:0"
		if hi-lo >= 1000 {
			addr = fmt.Sprintf("127.0.0.1:%d", lo+rand.IntN(hi-lo))
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue // in use (or already one of ours)
		}
		closers = append(closers, l)
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue // taken for UDP: keep the TCP one held and try another
		}
		closers = append(closers, u)
		ports = append(ports, port)
	}
	if len(ports) < n {
		return nil, fmt.Errorf("found only %d of %d free ports", len(ports), n)
	}
	return ports, nil
}

// ephemeralLow is the first port the kernel hands out to outgoing
// connections (Linux's default when it cannot be read).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	var low, high int
	if _, err := fmt.Sscan(string(b), &low, &high); err != nil || low <= 0 {
		return 32768
	}
	return low
}

// tailBuffer is a goroutine-safe writer keeping the last max bytes.
type tailBuffer struct {
	mu      sync.Mutex
	buf     []byte
	max     int
	dropped int
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.max; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
		b.dropped += over
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dropped > 0 {
		return fmt.Sprintf("[... %d bytes dropped ...]\n%s", b.dropped, b.buf)
	}
	return string(b.buf)
}
