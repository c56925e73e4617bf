// Command benchratelimit measures the cluster rate-limiting policy on a
// three-node loopback cluster (`gatehouse cluster up`):
//
//   - over-admission: admitted / limit for one per-minute limit, with the
//     nodes gossiping every 50, 100 and 500 ms, under balanced load
//     (round-robin over the three proxies) and skewed load (80% on one);
//     bar: at most 1.05 at 100 ms balanced;
//   - proxy CPU per request, cluster policy versus local, from the node's
//     /proc CPU time over a wrk run against its proxy; bar: at most 10%
//     more.
//
// Run it with `make bench-ratelimit`.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

var client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

func main() {
	bin := flag.String("bin", "bin/gatehouse", "gatehouse binary")
	base := flag.Int("base-port", 28000, "first port of the cluster (see gatehouse cluster up)")
	limit := flag.Int("limit", 1000, "requests per minute")
	rate := flag.Int("rate", 500, "offered requests per second, over all nodes")
	seconds := flag.Int("seconds", 6, "length of each over-admission run")
	wrkSeconds := flag.Int("wrk-seconds", 10, "length of each CPU run")
	flag.Parse()
	if err := run(*bin, *base, *limit, *rate, time.Duration(*seconds)*time.Second, *wrkSeconds); err != nil {
		fmt.Fprintln(os.Stderr, "benchratelimit:", err)
		os.Exit(1)
	}
}

func run(bin string, base, limit, rate int, dur time.Duration, wrkSeconds int) error {
	dir, err := os.MkdirTemp("", "benchratelimit")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
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
	admins, proxies := make([]string, 3), make([]string, 3)
	for i := range admins {
		admins[i] = fmt.Sprintf("http://127.0.0.1:%d", base+10*i+1)
		proxies[i] = fmt.Sprintf("http://127.0.0.1:%d", base+10*i)
	}
	if err := waitGossip(admins, 60*time.Second); err != nil {
		return fmt.Errorf("%w\n%s", err, out.String())
	}
	a := admins[0] // followers forward writes
	if err := post(a+"/services", map[string]any{"name": "bench", "url": "http://" + ln.Addr().String()}); err != nil {
		return err
	}
	syncs := []int{50, 100, 500}
	for _, ms := range syncs {
		name := fmt.Sprintf("sync%d", ms)
		if err := post(a+"/services/bench/routes", map[string]any{"name": name, "paths": []string{"/" + name}}); err != nil {
			return err
		}
		// limit_by header: every run counts its own key in the same window.
		if err := post(a+"/routes/"+name+"/plugins", map[string]any{"name": "rate-limiting", "config": map[string]any{
			"minute": limit, "policy": "cluster", "sync_rate": float64(ms) / 1000, "limit_by": "header",
			"header_name": "X-Bench-Key"}}); err != nil {
			return err
		}
	}
	for _, pol := range []string{"local", "cluster"} {
		if err := post(a+"/services/bench/routes", map[string]any{"name": "cpu-" + pol, "paths": []string{"/cpu-" + pol}}); err != nil {
			return err
		}
		if err := post(a+"/routes/cpu-"+pol+"/plugins", map[string]any{"name": "rate-limiting", "config": map[string]any{
			"second": 1e9, "policy": pol, "limit_by": "ip"}}); err != nil {
			return err
		}
	}
	time.Sleep(time.Second) // every node applies the config

	fmt.Printf("three nodes, limit %d/minute, %d requests/s offered for %s per run\n\n", limit, rate, dur)
	fmt.Println("| sync_rate | load | admitted | ratio | bar |")
	fmt.Println("|---|---|---:|---:|---|")
	for _, ms := range syncs {
		for _, load := range []string{"balanced", "skewed"} {
			waitWindow(dur + 2*time.Second)
			admitted, err := offer(proxies, fmt.Sprintf("/sync%d", ms), load, rate, dur)
			if err != nil {
				return err
			}
			bar := "-"
			if ms == 100 && load == "balanced" {
				bar = "≤ 1.05"
			}
			fmt.Printf("| %d ms | %s | %d | %.3f | %s |\n", ms, load, admitted, float64(admitted)/float64(limit), bar)
		}
	}

	pid, err := pidOf(admins[0])
	if err != nil {
		return err
	}
	fmt.Printf("\nproxy CPU per request on node1 (wrk -t1 -c32 -d%ds, one client address)\n\n", wrkSeconds)
	fmt.Println("| policy | requests/s | CPU µs/request |")
	fmt.Println("|---|---:|---:|")
	var cost [2]float64
	for i, pol := range []string{"local", "cluster"} {
		rps, us, err := cpuPerRequest(pid, proxies[0]+"/cpu-"+pol, wrkSeconds)
		if err != nil {
			return err
		}
		cost[i] = us
		fmt.Printf("| %s | %.0f | %.2f |\n", pol, rps, us)
	}
	fmt.Printf("\ncluster / local CPU per request: %.3f (bar ≤ 1.10)\n", cost[1]/cost[0])
	return nil
}

// waitWindow waits, if needed, for a minute with at least need left.
func waitWindow(need time.Duration) {
	now := time.Now()
	if next := now.Truncate(time.Minute).Add(time.Minute); next.Sub(now) < need {
		time.Sleep(next.Sub(now) + 200*time.Millisecond)
	}
}

// offer sends rate requests per second for dur, each with one fresh key,
// to the proxies (round-robin, or 80% to the first for skewed) from 16
// paced workers, and returns the number admitted.
func offer(proxies []string, path, load string, rate int, dur time.Duration) (int, error) {
	key := fmt.Sprintf("%s-%s-%d", path, load, time.Now().UnixNano())
	const workers = 16
	interval := time.Duration(float64(time.Second) * workers / float64(rate))
	var mu sync.Mutex
	admitted, other := 0, 0
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			next := start.Add(time.Duration(w) * interval / workers)
			for i := w; time.Now().Before(start.Add(dur)); i += workers {
				time.Sleep(time.Until(next))
				next = next.Add(interval)
				node := i % 3
				if load == "skewed" {
					node = 0
					if r := rand.IntN(10); r >= 8 {
						node = r - 7
					}
				}
				req, _ := http.NewRequest("GET", proxies[node]+path, nil)
				req.Header.Set("X-Bench-Key", key)
				resp, err := client.Do(req)
				if err != nil {
					mu.Lock()
					other++
					mu.Unlock()
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				mu.Lock()
				switch resp.StatusCode {
				case 200:
					admitted++
				case 429:
				default:
					other++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if other > 0 {
		return admitted, fmt.Errorf("%s: %d requests failed or got neither 200 nor 429", path, other)
	}
	return admitted, nil
}

var wrkRequests = regexp.MustCompile(`(\d+) requests in`)

// cpuPerRequest runs wrk against url and divides the CPU time process pid
// spent meanwhile by the requests wrk completed.
func cpuPerRequest(pid int, url string, seconds int) (rps, us float64, err error) {
	if _, err := exec.LookPath("wrk"); err != nil {
		return 0, 0, fmt.Errorf("wrk not found: apt-get install wrk")
	}
	exec.Command("wrk", "-t1", "-c32", "-d2s", url).Run() // warm-up
	before, err := cpuTicks(pid)
	if err != nil {
		return 0, 0, err
	}
	outb, err := exec.Command("wrk", "-t1", "-c32", fmt.Sprintf("-d%ds", seconds), url).CombinedOutput()
	if err != nil {
		return 0, 0, fmt.Errorf("wrk: %v: %s", err, outb)
	}
	after, err := cpuTicks(pid)
	if err != nil {
		return 0, 0, err
	}
	m := wrkRequests.FindSubmatch(outb)
	if m == nil || strings.Contains(string(outb), "Non-2xx") {
		return 0, 0, fmt.Errorf("wrk output: %s", outb)
	}
	n, _ := strconv.ParseFloat(string(m[1]), 64)
	return n / float64(seconds), float64(after-before) * 1e6 / 100 / n, nil
}

// cpuTicks is utime + stime of pid, in clock ticks (100 per second).
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u + s, nil
}

func pidOf(admin string) (int, error) {
	var st struct {
		Memory struct {
			VMs []struct {
				PID int `json:"pid"`
			} `json:"workers_lua_vms"`
		} `json:"memory"`
	}
	if err := getJSON(admin+"/status", &st); err != nil || len(st.Memory.VMs) == 0 {
		return 0, fmt.Errorf("pid of %s: %v", admin, err)
	}
	return st.Memory.VMs[0].PID, nil
}

// waitGossip waits until every node's gossip hears all three.
func waitGossip(admins []string, max time.Duration) error {
	deadline := time.Now().Add(max)
	for time.Now().Before(deadline) {
		ok := true
		for _, a := range admins {
			var st struct {
				Gossip struct {
					Transport struct {
						Alive int `json:"alive"`
					} `json:"transport"`
				} `json:"gossip"`
			}
			ok = ok && getJSON(a+"/status", &st) == nil && st.Gossip.Transport.Alive == 3
		}
		if ok {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("gossip did not join three nodes within %s", max)
}

func getJSON(url string, v any) error {
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}

func post(url string, body any) error {
	b, _ := json.Marshal(body)
	resp, err := client.Post(url, "application/json", bytes.NewReader(b))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("POST %s: %s %s", url, resp.Status, raw)
	}
	return nil
}
