package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/gatehouse-gw/gatehouse/admin"
	"github.com/gatehouse-gw/gatehouse/cluster"
	"github.com/gatehouse-gw/gatehouse/fsm"
	"github.com/gatehouse-gw/gatehouse/fsm/backup"
	"github.com/gatehouse-gw/gatehouse/plugins/prometheus"
	"github.com/gatehouse-gw/gatehouse/plugins/proxycache"
	"github.com/gatehouse-gw/gatehouse/plugins/ratelimiting"
)

// seedFile is where `restore --data-dir` leaves a backup for `run` to
// install when the node first starts.
const seedFile = "seed.snapshot"

func backupCommand() *cli.Command {
	return &cli.Command{
		Name:  "backup",
		Usage: "save the configuration and event history (optionally as of a past point) to a .tar.gz file",
		Flags: []cli.Flag{adminFlag(), tokenFlag(),
			&cli.StringFlag{Name: "out", Required: true, Usage: "backup file"},
			&cli.StringFlag{Name: "at", Usage: "log index or RFC 3339 time (default: now)"}},
		Action: func(c *cli.Context) error {
			apiToken = c.String("token")
			path := "/cluster/backup"
			if at := c.String("at"); at != "" {
				path += "?at=" + url.QueryEscape(at)
			}
			resp, err := request(c.String("admin"), "GET", path, nil, 0)
			if err != nil {
				return fmt.Errorf("backup: %w", err)
			}
			defer resp.Body.Close()
			tmp := c.String("out") + ".partial"
			f, err := os.Create(tmp)
			if err != nil {
				return err
			}
			// The archive must be whole: it is checked as it arrives, in
			// the same pass that writes it, before it is called a backup.
			cw := &countWriter{w: io.MultiWriter(f, progress(-1, "backup"))}
			_, err = backup.Check(io.TeeReader(resp.Body, cw), fsm.VerifyState, fsm.VerifyHistory)
			n := cw.n
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				os.Remove(tmp)
				return fmt.Errorf("backup: %w", err)
			}
			if err := os.Rename(tmp, c.String("out")); err != nil {
				return err
			}
			fmt.Printf("wrote %s (%d bytes, config index %s)\n", c.String("out"), n, resp.Header.Get("X-Gatehouse-Config-Index"))
			return nil
		},
	}
}

// countWriter counts the bytes written through it.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func restoreCommand() *cli.Command {
	return &cli.Command{
		Name: "restore",
		Usage: "--to TIME|INDEX: put the live configuration back to that point (one audited event); " +
			"--from FILE: replace a running cluster's configuration and history with a backup; " +
			"--from FILE --data-dir DIR [--to ...]: seed a fresh node from a backup (disaster recovery)",
		ArgsUsage: "[FILE]",
		Flags: []cli.Flag{adminFlag(), tokenFlag(),
			&cli.StringFlag{Name: "to", Usage: "log index or RFC 3339 time to restore to"},
			&cli.StringFlag{Name: "from", Usage: "backup file"},
			&cli.StringFlag{Name: "data-dir", Usage: "with --from: seed this (fresh) node data directory instead of a running cluster"}},
		Action: func(c *cli.Context) error {
			apiToken = c.String("token")
			from, to, dir := c.String("from"), c.String("to"), c.String("data-dir")
			if from == "" && c.NArg() == 1 {
				from = c.Args().First()
			}
			switch {
			case from != "" && dir != "":
				return seed(from, to, dir)
			case from != "" && to != "":
				return errors.New("--from with --to restores into a fresh node: add --data-dir, or take the backup with 'gatehouse backup --at'")
			case to != "":
				return call(c.String("admin"), "POST", "/audit/restore", map[string]any{"at": to}, os.Stdout)
			case from == "":
				return errors.New("usage: gatehouse restore --to TIME|INDEX | --from FILE [--data-dir DIR [--to TIME|INDEX]]")
			}
			f, err := os.Open(from)
			if err != nil {
				return err
			}
			defer f.Close()
			st, err := f.Stat()
			if err != nil {
				return err
			}
			resp, err := request(c.String("admin"), "POST", "/cluster/restore",
				io.TeeReader(f, progress(st.Size(), "upload")), st.Size())
			if err != nil {
				return fmt.Errorf("restore: %w", err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			fmt.Println(strings.TrimSpace(string(b)))
			return nil
		},
	}
}

// seed checks a backup, cuts it at a point if asked, and leaves it in a
// fresh data directory; `gatehouse run` installs it on first start (the
// node bootstraps alone, then others join it).
func seed(from, to, dir string) error {
	if cluster.HasState(dir) {
		return fmt.Errorf("%s already holds a node's state: seed a fresh directory", dir)
	}
	f, err := os.Open(from)
	if err != nil {
		return err
	}
	defer f.Close()
	snap, size, meta, cleanup, err := admin.OpenBackup(f)
	if err != nil {
		return fmt.Errorf("refusing to restore: %w; nothing was changed", err)
	}
	defer cleanup()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp := filepath.Join(dir, seedFile+".partial")
	out, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	index := meta.Index
	if to == "" {
		_, err = io.Copy(out, io.TeeReader(snap, progress(size, "seed")))
	} else {
		var i uint64
		var t int64
		if i, t, err = parsePoint(to); err == nil {
			scratch, serr := os.MkdirTemp("", "gatehouse-cut-*")
			if serr != nil {
				return serr
			}
			defer os.RemoveAll(scratch)
			cache, cerr := proxycache.NewStore(1 << 20)
			if cerr != nil {
				return cerr
			}
			index, err = fsm.Cut(snap, newRegistry(cache, ratelimiting.NewStore(1024), prometheus.NewMetrics(prometheus.NodeInfo{})), scratch, i, t, out)
		}
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, seedFile)); err != nil {
		return err
	}
	fmt.Printf("seeded %s from %s at index %d; start it with: gatehouse run --data-dir %s\n", dir, from, index, dir)
	return nil
}

// parsePoint reads an index or an RFC 3339 time (unix nanoseconds).
func parsePoint(v string) (uint64, int64, error) {
	var i uint64
	if _, err := fmt.Sscan(v, &i); err == nil && fmt.Sprint(i) == v {
		return i, 0, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return 0, 0, fmt.Errorf("%q is neither a log index nor an RFC 3339 time", v)
	}
	return 0, t.UnixNano(), nil
}

// request sends one request (a body of known size, or none) and returns
// the response if it is a 2xx.
func request(adminURL, method, path string, body io.Reader, size int64) (*http.Response, error) {
	req, err := http.NewRequest(method, strings.TrimRight(adminURL, "/")+path, body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.ContentLength = size
		req.Header.Set("Content-Type", "application/gzip")
	}
	if apiToken != "" {
		req.Header.Set("Kong-Admin-Token", apiToken)
	}
	resp, err := (&http.Client{Timeout: 30 * time.Minute}).Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return nil, fmt.Errorf("%s %s", resp.Status, strings.TrimSpace(string(b)))
	}
	return resp, nil
}

// progress is a byte progress bar on a terminal (stderr), and nothing
// otherwise; size -1 when unknown.
func progress(size int64, what string) io.Writer {
	if !term.IsTerminal(int(os.Stderr.Fd())) {
		return io.Discard
	}
	return progressbar.DefaultBytes(size, what)
}

// replayCommand starts a replay job on a node and, with --wait, follows
// it to the end.
func replayCommand() *cli.Command {
	return &cli.Command{
		Name:  "replay",
		Usage: "re-send a range of the history to a destination URL (batches of JSON, in order, retried)",
		Flags: []cli.Flag{adminFlag(), tokenFlag(),
			&cli.StringFlag{Name: "since", Usage: "first event: log index or RFC 3339 time (default: the first)"},
			&cli.StringFlag{Name: "until", Usage: "last event: log index or RFC 3339 time (default: now)"},
			&cli.StringFlag{Name: "destination", Required: true, Usage: "http(s) URL receiving POSTs of {\"events\": [...]}"},
			&cli.IntFlag{Name: "batch-size", Value: 100},
			&cli.BoolFlag{Name: "wait", Usage: "wait until the job is done"}},
		Action: func(c *cli.Context) error {
			apiToken = c.String("token")
			body := map[string]any{"destination": c.String("destination"), "batch_size": c.Int("batch-size")}
			for _, f := range []string{"since", "until"} {
				if v := c.String(f); v != "" {
					body[f] = v
				}
			}
			var buf strings.Builder
			if err := call(c.String("admin"), "POST", "/audit/replay", body, &buf); err != nil {
				return err
			}
			if !c.Bool("wait") {
				fmt.Print(buf.String())
				return nil
			}
			var job struct {
				ID     string `json:"id"`
				Status string `json:"status"`
				Sent   int    `json:"sent"`
				Error  string `json:"error"`
			}
			if err := json.Unmarshal([]byte(buf.String()), &job); err != nil {
				return err
			}
			for i := 0; job.Status == "running"; i++ {
				if i > 0 {
					time.Sleep(200 * time.Millisecond)
				}
				buf.Reset()
				if err := call(c.String("admin"), "GET", "/audit/replay/"+job.ID, nil, &buf); err != nil {
					return err
				}
				if err := json.Unmarshal([]byte(buf.String()), &job); err != nil {
					return err
				}
				if job.Error != "" && i%25 == 0 {
					fmt.Fprintf(os.Stderr, "replay %s: %d sent, retrying: %s\n", job.ID, job.Sent, job.Error)
				}
			}
			fmt.Printf("replay %s: %s, %d events sent\n", job.ID, job.Status, job.Sent)
			if job.Status != "done" {
				return fmt.Errorf("replay %s ended %s", job.ID, job.Status)
			}
			return nil
		},
	}
}
