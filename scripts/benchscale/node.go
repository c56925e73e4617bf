package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

var client = &http.Client{Timeout: 5 * time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

// node is one Gatehouse process on loopback.
type node struct {
	bin, dir                    string
	proxy, admin, status, raftA string
	gossip                      string
	cmd                         *exec.Cmd
	logf                        *os.File
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func newNode(bin, dir string) (*node, error) {
	n := &node{bin: bin, dir: dir}
	// Every address explicitly: the gossip address would default to the
	// Raft port + 1, which may be one of the others.
	for _, p := range []*string{&n.proxy, &n.admin, &n.status, &n.raftA, &n.gossip} {
		a, err := freePort()
		if err != nil {
			return nil, err
		}
		*p = a
	}
	return n, nil
}

// start runs the node and waits until its admin API answers.
func (n *node) start(env ...string) error {
	f, err := os.OpenFile(filepath.Join(n.dir, "node.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	n.logf = f
	n.cmd = exec.Command(n.bin, "run", "--data-dir", filepath.Join(n.dir, "data"), "--node-id", "scale",
		"--proxy-listen", n.proxy, "--admin-listen", n.admin, "--status-listen", n.status,
		"--cluster-listen", n.raftA, "--gossip-listen", n.gossip)
	n.cmd.Env = append(os.Environ(), env...)
	n.cmd.Stdout, n.cmd.Stderr = f, f
	if err := n.cmd.Start(); err != nil {
		return err
	}
	err = waitFor(2*time.Minute, func() bool {
		resp, err := client.Get("http://" + n.admin + "/status")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	if err != nil {
		b, _ := os.ReadFile(f.Name())
		if len(b) > 4000 {
			b = b[len(b)-4000:]
		}
		return fmt.Errorf("node admin API: %w; its log ends:\n%s", err, b)
	}
	return nil
}

// stop ends the node with SIGTERM (SIGKILL after 30 s).
func (n *node) stop() {
	if n.cmd == nil || n.cmd.Process == nil {
		return
	}
	n.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { n.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		n.cmd.Process.Kill()
		<-done
	}
	n.cmd = nil
	n.logf.Close()
}

// rssMB reads the node's resident set from /proc.
func (n *node) rssMB() float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", n.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

// cpuSeconds is the node's user+system CPU time so far.
func (n *node) cpuSeconds() float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", n.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ
}

func (n *node) call(method, path, ctype string, body []byte) (int, []byte, error) {
	req, err := http.NewRequest(method, "http://"+n.admin+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// send is call with a JSON body, failing on an answer outside 2xx.
func (n *node) send(method, path string, v any) ([]byte, error) {
	var body []byte
	if v != nil {
		var err error
		if body, err = json.Marshal(v); err != nil {
			return nil, err
		}
	}
	code, b, err := n.call(method, path, "application/json", body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if code/100 != 2 {
		return nil, fmt.Errorf("%s %s: %d %.300s", method, path, code, b)
	}
	return b, nil
}

// get fetches a proxy URL and reports the status (0 on a network error).
func get(url string, header ...string) int {
	req, err := newGet(url, header...)
	if err != nil {
		return 0
	}
	resp, err := probe.Do(req)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

var probe = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 8}}

// waitFor polls ok every 20 ms until it holds or d has passed.
func waitFor(d time.Duration, ok func() bool) error {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if ok() {
			return nil
		}
	}
	return fmt.Errorf("not reached within %s", d)
}

func newGet(url string, header ...string) (*http.Request, error) {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return nil, err
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return req, nil
}

// settle waits (at most two minutes) until the node has used less than
// 5% of a core and written less than a megabyte in each of eight seconds
// in a row: after a large load it writes a snapshot (hundreds of
// megabytes, during which every write's fsync waits) and, once bulk work
// has stopped for 5 s, collects its garbage (fsm/collect.go); a
// measurement taken then would time that instead.
func (n *node) settle() {
	quiet := 0
	for range 120 {
		c0, w0 := n.cpuSeconds(), n.writtenBytes()
		time.Sleep(time.Second)
		if n.cpuSeconds()-c0 >= 0.05 || n.writtenBytes()-w0 >= 1<<20 {
			quiet = 0
		} else if quiet++; quiet == 8 {
			return
		}
	}
}

// writtenBytes is what the node has written to storage so far.
func (n *node) writtenBytes() int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", n.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "write_bytes: "); ok {
			w, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return w
		}
	}
	return 0
}

// profile saves a CPU profile of the node, taken over d, to
// $BENCHSCALE_PROFILE/name.pprof when that variable names a directory
// (the evidence for where a target's time goes). The returned function
// waits for it.
func (n *node) profile(name string, d time.Duration) func() {
	dir := os.Getenv("BENCHSCALE_PROFILE")
	if dir == "" {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", n.status, int(d.Seconds()))
		resp, err := client.Get(url)
		if err != nil {
			fmt.Fprintln(os.Stderr, "profile:", err)
			return
		}
		defer resp.Body.Close()
		f, err := os.Create(filepath.Join(dir, name+".pprof"))
		if err != nil {
			fmt.Fprintln(os.Stderr, "profile:", err)
			return
		}
		defer f.Close()
		io.Copy(f, resp.Body)
	}()
	// Let the profile start before what it is to cover.
	time.Sleep(200 * time.Millisecond)
	return func() { <-done }
}
