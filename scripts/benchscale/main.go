// Command benchscale measures issue 8's targets 2 to 5 on one Gatehouse
// node over loopback: loading 100,000 routes and 1,000,000 consumers with
// key-auth keys (time, RSS), one route change end to end at that size,
// key-auth throughput at 1,000,000 consumers against 100, proxy latency
// under 50 admin writes a second, and a restart. Run it with `make bench`,
// which also runs the proxy comparison with nginx and the router
// benchmarks and prints one table; -smoke runs it at a small size.
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"time"
)

func main() {
	bin := flag.String("bin", "bin/gatehouse", "gatehouse binary")
	routes := flag.Int("routes", 100_000, "routes to load")
	consumers := flag.Int("consumers", 1_000_000, "consumers (each with a key-auth key) to load")
	batch := flag.Int("batch", 100_000, "consumers per POST /config")
	changes := flag.Int("route-changes", 1000, "route changes timed at full size (target 2)")
	churn := flag.Duration("churn", 60*time.Second, "length of each churn run")
	wrkTime := flag.Duration("wrk", 10*time.Second, "length of each throughput run")
	smoke := flag.Bool("smoke", false, "a short run at a small size (make test)")
	out := flag.String("json", "", "write the results to this file as JSON")
	proxyBench := flag.Bool("proxy-bench", false, "also run scripts/bench.sh (target 1) and the router benchmarks (target 2)")
	flag.Parse()
	if *smoke {
		*routes, *consumers, *batch, *changes, *churn, *wrkTime = 1000, 2000, 1000, 100, 2*time.Second, time.Second
		authRuns = 1
	}
	res := &results{Started: time.Now().UTC().Format(time.RFC3339),
		Machine: fmt.Sprintf("%d cores, %s", runtime.NumCPU(), runtime.Version())}
	if err := run(res, *bin, *routes, *consumers, *batch, *changes, *churn, *wrkTime, *proxyBench); err != nil {
		fmt.Fprintln(os.Stderr, "benchscale:", err)
		os.Exit(1)
	}
	res.print(os.Stdout)
	if *out != "" {
		if err := res.write(*out); err != nil {
			fmt.Fprintln(os.Stderr, "benchscale:", err)
			os.Exit(1)
		}
		fmt.Println("\nwritten to", *out)
	}
}

// authRuns is how many wrk runs each key-auth figure is the median of.
var authRuns = 3

func run(res *results, bin string, nRoutes, nConsumers, batch, changes int, churn, wrkTime time.Duration, proxyBench bool) error {
	dir, err := os.MkdirTemp("", "benchscale")
	if err != nil {
		return err
	}
	if os.Getenv("BENCHSCALE_KEEP") == "" {
		defer os.RemoveAll(dir)
	} else {
		slog.Info("keeping the node's directory", "dir", dir)
	}
	if proxyBench {
		if err := proxyRows(res, dir); err != nil {
			return err
		}
		if err := routerRows(res); err != nil {
			return err
		}
	}
	if _, err := exec.LookPath("wrk"); err != nil {
		return fmt.Errorf("wrk is needed (apt-get install wrk): %w", err)
	}
	up, stopUp, err := startUpstream(dir)
	if err != nil {
		return err
	}
	defer stopUp()

	n, err := newNode(bin, dir)
	if err != nil {
		return err
	}
	if err := n.start(); err != nil {
		return err
	}
	defer n.stop()
	slog.Info("node up", "admin", n.admin, "proxy", n.proxy)
	res.Routes, res.Consumers = nRoutes, nConsumers

	// Routes.
	doc, err := routesDoc(nRoutes, "http://"+up)
	if err != nil {
		return err
	}
	t0 := time.Now()
	if _, err := n.send("POST", "/config", rawJSON(doc)); err != nil {
		return fmt.Errorf("load routes: %w", err)
	}
	res.RoutesLoad = time.Since(t0).Seconds()
	slog.Info("routes loaded", "routes", nRoutes, "took", time.Since(t0), "MB", len(doc)>>20)
	plain, auth := "http://"+n.proxy+"/plain", "http://"+n.proxy+"/auth"
	if err := waitFor(30*time.Second, func() bool { return get(plain) == 200 }); err != nil {
		return fmt.Errorf("/plain: %w", err)
	}

	// Target 2 end to end: one route change at this size, ack to proxy.
	n.settle()
	stopProfile := n.profile("routechange", 3*time.Second)
	// Enough changes that the p99 is not simply the slowest one.
	res.RouteChange, err = routeChanges(n, changes)
	stopProfile()
	if err != nil {
		return err
	}

	// Key-auth throughput with the first 100 consumers, then load the rest.
	first := min(100, nConsumers)
	if err := loadConsumers(n, 0, 0, first); err != nil {
		return err
	}
	if err := waitFor(30*time.Second, func() bool { return get(auth, "apikey", "k0") == 200 }); err != nil {
		return fmt.Errorf("/auth with k0: %w", err)
	}
	if res.AuthSmall, err = wrkMedian(dir, auth, wrkTime, first, authRuns); err != nil {
		return err
	}
	// The documents are made first: the figure is the node's, and this
	// process shares the node's two cores.
	var docs [][]byte
	for b, lo := 1, first; lo < nConsumers; b, lo = b+1, min(lo+batch, nConsumers) {
		doc, err := consumersDoc(b, lo, min(lo+batch, nConsumers))
		if err != nil {
			return err
		}
		docs = append(docs, doc)
	}
	runtime.GC()
	t0 = time.Now()
	for b, lo := 1, first; lo < nConsumers; b, lo = b+1, min(lo+batch, nConsumers) {
		hi := min(lo+batch, nConsumers)
		stopProfile := func() {}
		if lo <= nConsumers/2 && nConsumers/2 < hi {
			stopProfile = n.profile("consumers", 20*time.Second)
		}
		err := postConsumers(n, docs[b-1], lo, hi)
		docs[b-1] = nil
		stopProfile()
		if err != nil {
			return err
		}
		slog.Info("consumers loaded", "upto", hi, "took", time.Since(t0), "rss_mb", int(n.rssMB()))
	}
	res.ConsumersLoad = time.Since(t0).Seconds()
	last := fmt.Sprintf("k%d", nConsumers-1)
	if err := waitFor(30*time.Second, func() bool { return get(auth, "apikey", last) == 200 }); err != nil {
		return fmt.Errorf("/auth with the last key: %w", err)
	}
	// As for the figure with 100 consumers: the node has finished the
	// load (its collector too) before traffic is measured.
	n.settle()
	if res.AuthLarge, err = wrkMedian(dir, auth, wrkTime, nConsumers, authRuns); err != nil {
		return err
	}
	res.RSS = n.rssMB()

	// Target 4: proxy latency without, then with, 50 admin writes a second.
	n.settle()
	if res.NoChurn, err = wrk(dir, plain, churn, 0); err != nil {
		return err
	}
	if res.Churn, res.ChurnWrites, err = churnRun(dir, n, plain, churn); err != nil {
		return err
	}

	// Target 5: restart and serve.
	n.stop()
	var env []string
	if dir := os.Getenv("BENCHSCALE_PROFILE"); dir != "" {
		// --startup-profile, as its environment variable.
		env = append(env, "GATEHOUSE_STARTUP_PROFILE="+filepath.Join(dir, "restart.pprof"))
	}
	t0 = time.Now()
	if err := n.start(env...); err != nil {
		return err
	}
	if err := waitFor(2*time.Minute, func() bool { return get(plain) == 200 && get(auth, "apikey", last) == 200 }); err != nil {
		return fmt.Errorf("after the restart: %w", err)
	}
	res.Restart = time.Since(t0).Seconds()
	res.RSSAfterRestart = n.rssMB()
	return nil
}

func loadConsumers(n *node, b, lo, hi int) error {
	doc, err := consumersDoc(b, lo, hi)
	if err != nil {
		return err
	}
	return postConsumers(n, doc, lo, hi)
}

func postConsumers(n *node, doc []byte, lo, hi int) error {
	if _, err := n.send("POST", "/config", rawJSON(doc)); err != nil {
		return fmt.Errorf("load consumers %d-%d: %w", lo, hi, err)
	}
	return nil
}

func startUpstream(dir string) (string, func(), error) {
	exe := filepath.Join(dir, "benchupstream")
	if b, err := exec.Command("go", "build", "-o", exe, "./scripts/benchupstream").CombinedOutput(); err != nil {
		return "", nil, fmt.Errorf("build upstream: %v: %s", err, b)
	}
	addr, err := freePort()
	if err != nil {
		return "", nil, err
	}
	cmd := exec.Command(exe, "-listen", addr)
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop := func() { cmd.Process.Kill(); cmd.Wait() }
	if err := waitFor(10*time.Second, func() bool { return get("http://"+addr+"/") == 200 }); err != nil {
		stop()
		return "", nil, fmt.Errorf("upstream: %w", err)
	}
	return addr, stop, nil
}
