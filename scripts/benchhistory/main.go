// Command benchhistory measures Gatehouse's history operations at scale:
// it folds a history of -events events over -entities entities in
// process (the same fold the nodes run), writes it as a backup archive,
// seeds a fresh three-node cluster from it, and then times, against the
// running cluster:
//
//   - gatehouse backup from a follower (bar: 5 s),
//   - a point-in-time restore to the middle of the history, until every
//     node has applied it (bar: 10 s),
//   - GET /config?at= at several points, on a follower (bar: 2 s).
//
// Run it with `make bench-history`.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gatehouse-gw/gatehouse/fsm"
	"github.com/gatehouse-gw/gatehouse/fsm/backup"
	"github.com/gatehouse-gw/gatehouse/log"
	"github.com/gatehouse-gw/gatehouse/plugins"
	"github.com/gatehouse-gw/gatehouse/plugins/keyauth"
)

var client = &http.Client{Timeout: 60 * time.Second}

var (
	cacheDir string
	hold     time.Duration
	profDir  string
)

func main() {
	bin := flag.String("bin", "bin/gatehouse", "gatehouse binary")
	entities := flag.Int("entities", 100_000, "entities in the final configuration")
	events := flag.Int("events", 1_000_000, "events in the history")
	base := flag.Int("base-port", 27000, "first port of the cluster")
	flag.StringVar(&cacheDir, "cache", "", "keep the generated archive in this directory and reuse it on the next run")
	flag.StringVar(&profDir, "inprocess", "", "time the operations inside this process instead of on a cluster, with CPU profiles in this directory")
	flag.DurationVar(&hold, "hold", 0, "keep the cluster running this long after the measurements (to profile it)")
	flag.Parse()
	if err := run(*bin, *entities, *events, *base); err != nil {
		fmt.Fprintln(os.Stderr, "benchhistory:", err)
		os.Exit(1)
	}
}

func run(bin string, entities, events, base int) error {
	dir, err := os.MkdirTemp("", "benchhistory")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	t0 := time.Now()
	seed := filepath.Join(dir, "seed.tar.gz")
	last, times, err := cachedGenerate(seed, dir, entities, events)
	if err != nil {
		return err
	}
	st, _ := os.Stat(seed)
	fmt.Printf("generated %d events over %d entities in %s (archive %.1f MB)\n", events, entities,
		time.Since(t0).Round(time.Millisecond), float64(st.Size())/1e6)
	if profDir != "" {
		return inProcess(seed, dir, last, profDir)
	}

	// A fresh cluster seeded from the archive: node1 installs it, the
	// others join and receive it by snapshot.
	t0 = time.Now()
	if out, err := exec.Command(bin, "restore", "--from", seed, "--data-dir", filepath.Join(dir, "n1")).CombinedOutput(); err != nil {
		return fmt.Errorf("seed: %v\n%s", err, out)
	}
	var procs []*exec.Cmd
	defer func() {
		for _, p := range procs {
			p.Process.Signal(syscall.SIGTERM)
		}
		for _, p := range procs {
			done := make(chan struct{})
			go func() { p.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				p.Process.Kill()
			}
		}
	}()
	admin := func(i int) string { return fmt.Sprintf("http://127.0.0.1:%d", base+10*i+1) }
	for i := 0; i < 3; i++ {
		args := []string{"run", "--data-dir", filepath.Join(dir, fmt.Sprintf("n%d", i+1)), "--node-id", fmt.Sprintf("node%d", i+1),
			"--proxy-listen", fmt.Sprintf("127.0.0.1:%d", base+10*i), "--admin-listen", fmt.Sprintf("127.0.0.1:%d", base+10*i+1),
			"--status-listen", fmt.Sprintf("127.0.0.1:%d", base+10*i+100), "--cluster-listen", fmt.Sprintf("127.0.0.1:%d", base+10*i+5)}
		if i > 0 {
			args = append(args, "--join", strings.TrimPrefix(admin(0), "http://"))
		}
		p := exec.Command(bin, args...)
		logf, _ := os.Create(filepath.Join(dir, fmt.Sprintf("node%d.log", i+1)))
		p.Stdout, p.Stderr = logf, logf
		if err := p.Start(); err != nil {
			return err
		}
		procs = append(procs, p)
		if i == 0 {
			if err := waitIndex(admin(0), last, 120*time.Second); err != nil {
				return logs(dir, err)
			}
		}
	}
	for i := 1; i < 3; i++ {
		if err := waitIndex(admin(i), last, 120*time.Second); err != nil {
			return logs(dir, err)
		}
	}
	fmt.Printf("seeded a three-node cluster from the archive in %s\n\n", time.Since(t0).Round(time.Millisecond))

	fmt.Println("| operation | time | bar |")
	fmt.Println("|---|---|---|")
	// Time travel. A node that installed a snapshot first replays the
	// history older than it, in the background, to lay checkpoints; a
	// query for the oldest point waits for that warm-up.
	t0 = time.Now()
	for i := 0; i < 3; i++ {
		if _, err := getSlow(admin(i) + "/config?at=1"); err != nil {
			return err
		}
	}
	fmt.Printf("| time-travel warm-up after the snapshot install (all nodes, in the background; not a bar) | %s | - |\n",
		time.Since(t0).Round(time.Millisecond))
	// Backup from a follower.
	t0 = time.Now()
	out, err := exec.Command(bin, "backup", "--admin", admin(1), "--out", filepath.Join(dir, "backup.tar.gz")).CombinedOutput()
	if err != nil {
		return fmt.Errorf("backup: %v\n%s", err, out)
	}
	fmt.Printf("| backup from a follower (%s) | %s | 5 s |\n", strings.TrimSpace(regexp.MustCompile(`\d+ bytes`).FindString(string(out))),
		time.Since(t0).Round(time.Millisecond))

	for _, frac := range []float64{0.5, 0.1, 0.9, 0.5} {
		at := uint64(float64(last) * frac)
		t0 = time.Now()
		n, err := get(admin(2) + "/config?at=" + strconv.FormatUint(at, 10))
		if err != nil {
			return err
		}
		fmt.Printf("| GET /config?at=%d (%.0f%% of the history, %.1f MB) | %s | 2 s |\n", at, frac*100, float64(n)/1e6,
			time.Since(t0).Round(time.Millisecond))
	}
	t0 = time.Now()
	at := times[len(times)/2]
	if _, err := get(admin(2) + "/config?at=" + at); err != nil {
		return err
	}
	fmt.Printf("| GET /config?at=%s (by time) | %s | 2 s |\n", at, time.Since(t0).Round(time.Millisecond))

	// Point-in-time restore to the middle, until all nodes serve it.
	t0 = time.Now()
	mid := last / 2
	var res struct {
		Index    uint64 `json:"index"`
		Entities int    `json:"entities"`
	}
	if err := postJSON(admin(1)+"/audit/restore", map[string]any{"at": mid}, &res); err != nil {
		fmt.Println(logs(dir, err))
		return err
	}
	for i := 0; i < 3; i++ {
		if err := waitIndex(admin(i), res.Index, 60*time.Second); err != nil {
			return logs(dir, err)
		}
	}
	fmt.Printf("| restore to index %d (%d entities put back), applied on all three nodes | %s | 10 s |\n", mid, res.Entities,
		time.Since(t0).Round(time.Millisecond))
	restoreLines(dir)
	if hold > 0 {
		fmt.Printf("\nholding the cluster for %s: admin %s, %s, %s; status (pprof) on the admin port + 99\n", hold, admin(0), admin(1), admin(2))
		time.Sleep(hold)
	}
	return nil
}

// cachedGenerate is generate, reusing the archive kept in -cache when it
// was made with the same sizes.
func cachedGenerate(seed, dir string, entities, events int) (uint64, []string, error) {
	type cached struct {
		Entities, Events int
		Last             uint64
		Times            []string
	}
	if cacheDir == "" {
		return generate(seed, dir, entities, events)
	}
	meta := filepath.Join(cacheDir, "seed.json")
	var c cached
	if b, err := os.ReadFile(meta); err == nil && json.Unmarshal(b, &c) == nil && c.Entities == entities && c.Events == events {
		if err := os.Link(filepath.Join(cacheDir, "seed.tar.gz"), seed); err == nil {
			fmt.Println("reusing the archive in", cacheDir)
			return c.Last, c.Times, nil
		}
	}
	last, times, err := generate(seed, dir, entities, events)
	if err != nil {
		return 0, nil, err
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return 0, nil, err
	}
	os.Remove(filepath.Join(cacheDir, "seed.tar.gz"))
	if err := os.Link(seed, filepath.Join(cacheDir, "seed.tar.gz")); err != nil {
		return 0, nil, err
	}
	b, _ := json.Marshal(cached{entities, events, last, times})
	return last, times, os.WriteFile(meta, b, 0o644)
}

// generate folds the synthetic history and writes it as a backup. A
// quarter of the entities are services, half routes (two per service), a
// quarter consumers; the remaining events update services and routes in
// turn. Event times are one millisecond apart.
func generate(path, dir string, entities, events int) (uint64, []string, error) {
	h, err := log.OpenHistory(filepath.Join(dir, "gen-history.db"))
	if err != nil {
		return 0, nil, err
	}
	defer h.Close()
	m := fsm.New(h, plugins.NewRegistry(keyauth.Definition()))
	defer m.Close()
	services, routes := entities/4, entities/2
	consumers := entities - services - routes
	start := time.Now().Add(-time.Duration(events) * time.Millisecond)
	var times []string
	var batch []fsm.Entry
	index := uint64(0)
	id := func(kind string, i int) string { return fmt.Sprintf("%08x-0000-4000-8000-%012x", kindNo(kind), i) }
	emit := func(op string, cmd *fsm.Command) error {
		index++
		payload, err := fsm.EncodeCommand(cmd)
		if err != nil {
			return err
		}
		t := start.Add(time.Duration(index) * time.Millisecond)
		ev := &log.Event{Type: log.TypeEntity, Time: t.UnixNano(), Actor: "bench", Source: "127.0.0.1", Node: "bench",
			Op: op, Entity: cmd.Kind, EntityID: cmd.Key, Payload: payload}
		if index%100_000 == 0 {
			times = append(times, t.UTC().Format(time.RFC3339Nano))
		}
		data, err := log.Encode(ev)
		if err != nil {
			return err
		}
		batch = append(batch, fsm.Entry{Index: index, Data: data})
		if len(batch) == 2000 {
			for _, r := range m.ApplyBatch(batch) {
				if r.Err != nil {
					return fmt.Errorf("event %d: %s", r.Index, r.Err.Message)
				}
			}
			batch = batch[:0]
		}
		return nil
	}
	for i := 0; i < services; i++ {
		k := id(fsm.Services, i)
		if err := emit(log.OpCreate, &fsm.Command{Op: log.OpCreate, Kind: fsm.Services, Key: k, NewID: k,
			Body: map[string]any{"name": fmt.Sprintf("svc-%d", i), "host": fmt.Sprintf("svc-%d.internal", i), "port": 8080.0}}); err != nil {
			return 0, nil, err
		}
	}
	for i := 0; i < routes; i++ {
		k := id(fsm.Routes, i)
		if err := emit(log.OpCreate, &fsm.Command{Op: log.OpCreate, Kind: fsm.Routes, Key: k, NewID: k,
			Body: map[string]any{"name": fmt.Sprintf("route-%d", i), "paths": []any{fmt.Sprintf("/r%d", i)},
				"service": map[string]any{"id": id(fsm.Services, i%services)}}}); err != nil {
			return 0, nil, err
		}
	}
	for i := 0; i < consumers; i++ {
		k := id(fsm.Consumers, i)
		if err := emit(log.OpCreate, &fsm.Command{Op: log.OpCreate, Kind: fsm.Consumers, Key: k, NewID: k,
			Body: map[string]any{"username": fmt.Sprintf("user-%d", i)}}); err != nil {
			return 0, nil, err
		}
	}
	for i := 0; index < uint64(events); i++ {
		var cmd *fsm.Command
		if i%2 == 0 {
			cmd = &fsm.Command{Op: log.OpUpdate, Kind: fsm.Services, Key: id(fsm.Services, (i/2)%services),
				Body: map[string]any{"retries": float64(i % 10)}}
		} else {
			cmd = &fsm.Command{Op: log.OpUpdate, Kind: fsm.Routes, Key: id(fsm.Routes, (i/2)%routes),
				Body: map[string]any{"tags": []any{fmt.Sprintf("v%d", i%7)}}}
		}
		if err := emit(log.OpUpdate, cmd); err != nil {
			return 0, nil, err
		}
	}
	if len(batch) > 0 {
		for _, r := range m.ApplyBatch(batch) {
			if r.Err != nil {
				return 0, nil, fmt.Errorf("event %d: %s", r.Index, r.Err.Message)
			}
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return 0, nil, err
	}
	defer f.Close()
	s := m.State()
	err = backup.Write(f, backup.Meta{Index: s.Index, Node: "bench", Entities: entities}, m.Parts(s))
	runtime.GC()
	return s.Index, times, err
}

func kindNo(kind string) int {
	for i, k := range fsm.Kinds {
		if k == kind {
			return i + 1
		}
	}
	return 0
}

func waitIndex(admin string, index uint64, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		resp, err := client.Get(admin + "/status")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			got, _ := strconv.ParseUint(resp.Header.Get("X-Gatehouse-Config-Index"), 10, 64)
			if got >= index {
				return nil
			}
			last = fmt.Sprintf("at index %d", got)
		} else {
			last = err.Error()
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s did not reach index %d within %s (%s)", admin, index, timeout, last)
}

// getSlow waits as long as a warm-up may take.
func getSlow(u string) (int64, error) { return getWith(&http.Client{Timeout: 30 * time.Minute}, u) }

func get(u string) (int64, error) { return getWith(client, u) }

func getWith(client *http.Client, u string) (int64, error) {
	resp, err := client.Get(u)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != 200 {
		return 0, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return n, err
}

func postJSON(u string, body, out any) error {
	b, _ := json.Marshal(body)
	resp, err := client.Post(u, "application/json", strings.NewReader(string(b)))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("POST %s: %s %s", u, resp.Status, rb)
	}
	return json.Unmarshal(rb, out)
}

// restoreLines prints what each node logged of the restore: where its
// time went.
func restoreLines(dir string) {
	time.Sleep(time.Second) // the nodes log after they publish
	fmt.Println()
	for i := 1; i <= 3; i++ {
		l, _ := os.ReadFile(filepath.Join(dir, fmt.Sprintf("node%d.log", i)))
		for _, line := range strings.Split(string(l), "\n") {
			if strings.Contains(line, "restore ") || strings.Contains(line, "slow apply") {
				fmt.Printf("node%d: %s\n", i, line)
			}
		}
	}
}

func logs(dir string, err error) error {
	var b strings.Builder
	for i := 1; i <= 3; i++ {
		l, _ := os.ReadFile(filepath.Join(dir, fmt.Sprintf("node%d.log", i)))
		if len(l) > 3000 {
			l = l[len(l)-3000:]
		}
		fmt.Fprintf(&b, "--- node%d\n%s\n", i, l)
	}
	return fmt.Errorf("%w\n%s", err, b.String())
}
