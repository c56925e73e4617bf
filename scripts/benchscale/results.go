package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// results is one run of make bench: every figure of issue 8's table.
type results struct {
	Started string `json:"started"`
	Machine string `json:"machine"`

	// Target 1 (scripts/bench.sh): CPU µs per request and p99, one core each.
	Proxy []proxyRow `json:"proxy,omitempty"`
	// Target 2 (BenchmarkScale, 100,000 routes).
	Router map[string]float64 `json:"router,omitempty"`
	// Target 2 end to end, 3, 4, 5 (this program).
	Routes          int         `json:"routes"`
	Consumers       int         `json:"consumers"`
	RoutesLoad      float64     `json:"routes_load_s"`
	RouteChange     latencies   `json:"route_change"`
	ConsumersLoad   float64     `json:"consumers_load_s"`
	RSS             float64     `json:"rss_mb"`
	AuthSmall       wrkResult   `json:"key_auth_100_consumers"`
	AuthLarge       wrkResult   `json:"key_auth_all_consumers"`
	NoChurn         wrkResult   `json:"no_churn"`
	Churn           wrkResult   `json:"churn"`
	ChurnWrites     churnResult `json:"churn_writes"`
	Restart         float64     `json:"restart_s"`
	RSSAfterRestart float64     `json:"rss_after_restart_mb"`
}

type proxyRow struct {
	Case  string  `json:"case"`
	RPS   float64 `json:"rps"`
	P99   float64 `json:"p99_ms"`
	CPUus float64 `json:"cpu_us_per_request"`
}

func (r *results) write(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "**missed**"
}

func (r *results) print(w io.Writer) {
	fmt.Fprintf(w, "\n## Issue 8 targets (%s)\n\n", r.Started)
	fmt.Fprintln(w, "| # | measure | figure | target | |")
	fmt.Fprintln(w, "|---|---|---:|---|---|")
	row := func(n, what, fig, target string, ok bool) {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", n, what, fig, target, verdict(ok))
	}
	if len(r.Proxy) >= 3 {
		ng, plain, plug := r.Proxy[0], r.Proxy[1], r.Proxy[2]
		row("1", "CPU per request, no plugins", fmt.Sprintf("%.2f µs = %.2f× nginx", plain.CPUus, plain.CPUus/ng.CPUus), "≤ 1.2× nginx", plain.CPUus <= 1.2*ng.CPUus)
		row("1", "CPU per request, key-auth + rate-limiting", fmt.Sprintf("%.2f µs = %.2f× nginx", plug.CPUus, plug.CPUus/ng.CPUus), "≤ 1.4× nginx", plug.CPUus <= 1.4*ng.CPUus)
		row("1", "p99, no plugins", fmt.Sprintf("%.2f ms = %.2f× nginx", plain.P99, plain.P99/ng.P99), "≤ 1.2× nginx", plain.P99 <= 1.2*ng.P99)
	}
	if len(r.Router) > 0 {
		rt := r.Router
		row("2", "router match p50 / p99, 11,000 distinct requests", fmt.Sprintf("%.2f / %.2f µs", rt["match.p50-ns"]/1000, rt["match.p99-ns"]/1000), "≤ 1 / ≤ 5 µs", rt["match.p50-ns"] <= 1000 && rt["match.p99-ns"] <= 5000)
		row("2", "router match p50 / p99, 100 requests repeated", fmt.Sprintf("%.2f / %.2f µs", rt["match-hot.p50-ns"]/1000, rt["match-hot.p99-ns"]/1000), "≤ 1 / ≤ 5 µs", rt["match-hot.p50-ns"] <= 1000 && rt["match-hot.p99-ns"] <= 5000)
		row("2", "router build from nothing", fmt.Sprintf("%.2f s", rt["build.ns/op"]/1e9), "≤ 1 s", rt["build.ns/op"] <= 1e9)
		row("2", "router memory", fmt.Sprintf("%.0f MB", rt["build.heap-MB"]), "≤ 300 MB", rt["build.heap-MB"] <= 300)
	}
	row("2", fmt.Sprintf("one route change at %d routes, write to proxy, p99", r.Routes), fmt.Sprintf("%.1f ms (p50 %.1f, max %.1f, of %d)", r.RouteChange.P99, r.RouteChange.P50, r.RouteChange.Max, r.RouteChange.N), "≤ 5 ms", r.RouteChange.P99 <= 5)
	row("3", fmt.Sprintf("load %d consumers with keys", r.Consumers), fmt.Sprintf("%.1f s", r.ConsumersLoad), "≤ 60 s", r.ConsumersLoad <= 60)
	row("3", "node RSS, all loaded", fmt.Sprintf("%.0f MB", r.RSS), "≤ 2048 MB", r.RSS <= 2048)
	ratio := r.AuthLarge.RPS / r.AuthSmall.RPS
	row("3", "key-auth req/s, all consumers vs 100", fmt.Sprintf("%.0f vs %.0f (%.0f%%)", r.AuthLarge.RPS, r.AuthSmall.RPS, ratio*100), "within 10%", ratio >= 0.9)
	rise := r.Churn.P99/r.NoChurn.P99 - 1
	row("4", "proxy p99 under 50 writes/s vs none", fmt.Sprintf("%.2f vs %.2f ms (%+.0f%%)", r.Churn.P99, r.NoChurn.P99, rise*100), "≤ +10%", rise <= 0.10)
	row("4", "errors under churn (proxy, writes)", fmt.Sprintf("%d, %d of %d", r.Churn.Errors, r.ChurnWrites.Failed, r.ChurnWrites.Writes), "0", r.Churn.Errors == 0 && r.ChurnWrites.Failed == 0)
	row("4", "write visible through the proxy, p99", fmt.Sprintf("%.1f ms (p50 %.1f, %.0f writes/s)", r.ChurnWrites.Visibility.P99, r.ChurnWrites.Visibility.P50, r.ChurnWrites.PerSecond), "≤ 50 ms", r.ChurnWrites.Visibility.P99 <= 50)
	row("5", "restart to serving", fmt.Sprintf("%.1f s", r.Restart), "≤ 10 s", r.Restart <= 10)
	fmt.Fprintf(w, "\nRoutes loaded in %.1f s; RSS after the restart %.0f MB.\n", r.RoutesLoad, r.RSSAfterRestart)
}

// proxyRows runs scripts/bench.sh (Gatehouse and nginx, one core each)
// and reads its rows.
func proxyRows(res *results, dir string) error {
	tsv := filepath.Join(dir, "proxy.tsv")
	cmd := exec.Command("bash", "scripts/bench.sh")
	cmd.Env = append(os.Environ(), "BENCH_TSV="+tsv)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("scripts/bench.sh: %w", err)
	}
	b, err := os.ReadFile(tsv)
	if err != nil {
		return err
	}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Split(l, "\t")
		if len(f) != 4 {
			continue
		}
		rps, _ := strconv.ParseFloat(f[1], 64)
		us, _ := strconv.ParseFloat(f[3], 64)
		res.Proxy = append(res.Proxy, proxyRow{Case: f[0], RPS: rps, P99: wrkDuration(f[2]), CPUus: us})
	}
	return nil
}

// routerRows runs BenchmarkScale and keeps its metrics by sub-benchmark.
func routerRows(res *results) error {
	out, err := exec.Command("go", "test", "-run", "^$", "-bench", "Scale", "./proxy/router/").CombinedOutput()
	if err != nil {
		return fmt.Errorf("router benchmark: %v: %s", err, out)
	}
	os.Stdout.Write(out)
	res.Router = map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "BenchmarkScale/") {
			continue
		}
		name := strings.TrimPrefix(f[0], "BenchmarkScale/")
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			name = name[:i]
		}
		for i := 2; i+1 < len(f); i += 2 {
			v, _ := strconv.ParseFloat(f[i], 64)
			res.Router[name+"."+f[i+1]] = v
		}
	}
	return nil
}
