// Command benchcluster measures a three-node Gatehouse cluster on loopback:
// (a) propagation latency, from a write's acknowledgement to the new route
// answering through each node's proxy, and (b) acknowledged admin writes
// per second with 32 concurrent clients. Run it with `make bench-cluster`.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

var client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

func main() {
	bin := flag.String("bin", "bin/gatehouse", "gatehouse binary")
	base := flag.Int("base-port", 26000, "first port of the cluster (see gatehouse cluster up)")
	writes := flag.Int("writes", 500, "writes for the propagation measurement")
	clients := flag.Int("clients", 32, "concurrent writers for the throughput measurement")
	seconds := flag.Int("seconds", 10, "duration of the throughput measurement")
	flag.Parse()
	if err := run(*bin, *base, *writes, *clients, time.Duration(*seconds)*time.Second); err != nil {
		fmt.Fprintln(os.Stderr, "benchcluster:", err)
		os.Exit(1)
	}
}

func run(bin string, base, writes, clients int, dur time.Duration) error {
	dir, err := os.MkdirTemp("", "benchcluster")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	// A trivial upstream so proxied requests succeed.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	up := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })}
	go up.Serve(ln)
	defer up.Close()

	cmd := exec.Command(bin, "cluster", "up", "--nodes", "3", "--data-dir", filepath.Join(dir, "c"), "--base-port", strconv.Itoa(base))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
		}
	}()
	admins := make([]string, 3)
	proxies := make([]string, 3)
	for i := range admins {
		admins[i] = fmt.Sprintf("http://127.0.0.1:%d", base+10*i+1)
		proxies[i] = fmt.Sprintf("http://127.0.0.1:%d", base+10*i)
	}
	leader, err := waitLeader(admins[0], 60*time.Second)
	if err != nil {
		return fmt.Errorf("%w\n%s", err, out.String())
	}
	leaderAdmin := admins[leader]
	fmt.Printf("three nodes up, leader node%d\n\n", leader+1)

	if _, err := post(leaderAdmin+"/services", map[string]any{"name": "bench", "url": "http://" + ln.Addr().String()}); err != nil {
		return err
	}

	// (a) propagation: write a route through the leader, then poll every
	// node's proxy until it routes.
	lat := make([][]time.Duration, 3)
	for i := 0; i < writes; i++ {
		path := fmt.Sprintf("/p%d", i)
		if _, err := post(leaderAdmin+"/services/bench/routes", map[string]any{"paths": []string{path}}); err != nil {
			return err
		}
		acked := time.Now()
		var wg sync.WaitGroup
		for n := range proxies {
			wg.Add(1)
			go func() {
				defer wg.Done()
				deadline := acked.Add(5 * time.Second)
				for time.Now().Before(deadline) {
					resp, err := client.Get(proxies[n] + path)
					if err == nil {
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode == 200 {
							lat[n] = append(lat[n], time.Since(acked))
							return
						}
					}
					time.Sleep(200 * time.Microsecond)
				}
				lat[n] = append(lat[n], 5*time.Second)
			}()
		}
		wg.Wait()
	}
	fmt.Printf("(a) propagation, write acknowledged -> route answers through the proxy, %d writes\n", writes)
	fmt.Println("| node | role | p50 | p99 | max |")
	fmt.Println("|---|---|---|---|---|")
	for n := range lat {
		role := "follower"
		if n == leader {
			role = "leader"
		}
		p50, p99, mx := pct(lat[n], 50), pct(lat[n], 99), pct(lat[n], 100)
		fmt.Printf("| node%d | %s | %s | %s | %s |\n", n+1, role, ms(p50), ms(p99), ms(mx))
	}

	// (b) throughput: 32 clients create consumers as fast as they can,
	// spread over all three nodes (followers forward to the leader).
	var ok, failed atomic.Int64
	var mu sync.Mutex
	var wl []time.Duration
	stop := time.Now().Add(dur)
	var wg sync.WaitGroup
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var local []time.Duration
			for i := 0; time.Now().Before(stop); i++ {
				t := time.Now()
				_, err := post(admins[(c+i)%3]+"/consumers", map[string]any{"username": fmt.Sprintf("c%d-%d", c, i)})
				if err != nil {
					failed.Add(1)
					continue
				}
				ok.Add(1)
				local = append(local, time.Since(t))
			}
			mu.Lock()
			wl = append(wl, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	fmt.Printf("\n(b) write throughput, %d concurrent clients over all nodes, %s\n", clients, dur)
	fmt.Println("| acknowledged writes/s | p50 | p99 | failed |")
	fmt.Println("|---|---|---|---|")
	fmt.Printf("| %.0f | %s | %s | %d |\n", float64(ok.Load())/dur.Seconds(), ms(pct(wl, 50)), ms(pct(wl, 99)), failed.Load())
	return nil
}

func post(url string, body any) (map[string]any, error) {
	b, _ := json.Marshal(body)
	resp, err := client.Post(url, "application/json", bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("POST %s: %s %s", url, resp.Status, raw)
	}
	var out map[string]any
	json.Unmarshal(raw, &out)
	return out, nil
}

func waitLeader(admin string, max time.Duration) (int, error) {
	deadline := time.Now().Add(max)
	for time.Now().Before(deadline) {
		resp, err := client.Get(admin + "/cluster")
		if err == nil {
			var v struct {
				Leader  string `json:"leader"`
				Members []struct {
					Admin string `json:"admin_address"`
				} `json:"members"`
			}
			json.NewDecoder(resp.Body).Decode(&v)
			resp.Body.Close()
			known := len(v.Members) == 3
			for _, m := range v.Members {
				known = known && m.Admin != ""
			}
			if v.Leader != "" && known {
				n, err := strconv.Atoi(strings.TrimPrefix(v.Leader, "node"))
				return n - 1, err
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return 0, fmt.Errorf("no leader within %s", max)
}

func pct(l []time.Duration, p int) time.Duration {
	if len(l) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), l...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := (len(s)*p+99)/100 - 1
	return s[max(0, min(i, len(s)-1))]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/1e6) }
