package main

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/gatehouse-gw/gatehouse/cluster"
)

func adminFlag() *cli.StringFlag {
	return &cli.StringFlag{Name: "admin", Value: "http://127.0.0.1:8001", EnvVars: []string{"GATEHOUSE_ADMIN"},
		Usage: "admin API of any node"}
}

func tokenFlag() *cli.StringFlag {
	return &cli.StringFlag{Name: "token", EnvVars: []string{"GATEHOUSE_TOKEN", "GATEHOUSE_ADMIN_TOKEN"},
		Usage: "admin token, when admin authentication is on"}
}

// apiToken is the token CLI commands send (set from --token).
var apiToken string

func clusterCommand() *cli.Command {
	return &cli.Command{
		Name:  "cluster",
		Usage: "start a local cluster, or inspect and change a running one",
		Subcommands: []*cli.Command{
			{
				Name:  "up",
				Usage: "start N nodes on loopback as one cluster; Ctrl-C stops them all",
				Flags: []cli.Flag{
					&cli.IntFlag{Name: "nodes", Value: 3, Usage: "number of nodes"},
					&cli.StringFlag{Name: "data-dir", Value: "./cluster-data", Usage: "parent of the nodes' data dirs"},
					&cli.IntFlag{Name: "base-port", Value: 8000, Usage: "node i uses base+10(i-1) (+0 proxy, +1 admin, +5 cluster, +6 gossip, +100 status)"},
					&cli.BoolFlag{Name: "tls", Value: true, Usage: "mutual TLS between nodes, with a throwaway CA made here"},
				},
				Action: clusterUp,
			},
			{
				Name:      "certs",
				Usage:     "make a CA and one certificate per node for mutual TLS between nodes",
				ArgsUsage: "NODE_ID...",
				Flags:     []cli.Flag{&cli.StringFlag{Name: "dir", Value: "./cluster-tls", Usage: "output directory"}},
				Action: func(c *cli.Context) error {
					if c.NArg() == 0 {
						return errors.New("usage: gatehouse cluster certs --dir DIR NODE_ID...")
					}
					files, err := cluster.DevCerts(c.String("dir"), c.Args().Slice())
					if err != nil {
						return err
					}
					for _, id := range c.Args().Slice() {
						f := files[id]
						fmt.Printf("%s: --cluster-tls-cert %s --cluster-tls-key %s --cluster-ca %s\n", id, f.Cert, f.Key, f.CA)
					}
					return nil
				},
			},
			{
				Name:   "status",
				Usage:  "show members, roles, leader and progress",
				Flags:  []cli.Flag{adminFlag(), tokenFlag()},
				Action: clusterStatus,
			},
			{
				Name:      "join",
				Usage:     "add a node to the cluster",
				ArgsUsage: "NODE_ID",
				Flags: []cli.Flag{adminFlag(), tokenFlag(),
					&cli.StringFlag{Name: "cluster-address", Required: true, Usage: "the new node's Raft address"},
					&cli.StringFlag{Name: "admin-address", Usage: "the new node's admin address"},
					&cli.StringFlag{Name: "proxy-address", Usage: "the new node's proxy address"},
				},
				Action: func(c *cli.Context) error {
					apiToken = c.String("token")
					if c.NArg() != 1 {
						return errors.New("usage: gatehouse cluster join NODE_ID --cluster-address HOST:PORT")
					}
					body := map[string]string{"id": c.Args().First(), "cluster_address": c.String("cluster-address"),
						"admin_address": c.String("admin-address"), "proxy_address": c.String("proxy-address")}
					return call(c.String("admin"), "POST", "/cluster/join", body, os.Stdout)
				},
			},
			{
				Name:      "remove",
				Usage:     "remove a node from the cluster",
				ArgsUsage: "NODE_ID",
				Flags:     []cli.Flag{adminFlag(), tokenFlag()},
				Action: func(c *cli.Context) error {
					apiToken = c.String("token")
					if c.NArg() != 1 {
						return errors.New("usage: gatehouse cluster remove NODE_ID")
					}
					return call(c.String("admin"), "DELETE", "/cluster/members/"+c.Args().First(), nil, os.Stdout)
				},
			},
		},
	}
}

// call sends one request to a node's admin API and prints the body; a
// non-2xx answer is an error.
func call(admin, method, path string, body any, out io.Writer) error {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, strings.TrimRight(admin, "/")+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if apiToken != "" {
		req.Header.Set("Kong-Admin-Token", apiToken)
	}
	resp, err := (&http.Client{Timeout: 15 * time.Second}).Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s %s", method, path, resp.Status, strings.TrimSpace(string(b)))
	}
	if len(b) > 0 {
		fmt.Fprintln(out, strings.TrimSpace(string(b)))
	}
	return nil
}

type clusterView struct {
	Leader  string `json:"leader"`
	Members []struct {
		ID           string `json:"id"`
		Role         string `json:"role"`
		Cluster      string `json:"cluster_address"`
		Admin        string `json:"admin_address"`
		Proxy        string `json:"proxy_address"`
		AppliedIndex any    `json:"applied_index"`
		LastContact  any    `json:"last_contact"`
	} `json:"members"`
}

func fetchCluster(admin string) (*clusterView, error) {
	req, err := http.NewRequest("GET", strings.TrimRight(admin, "/")+"/cluster", nil)
	if err != nil {
		return nil, err
	}
	if apiToken != "" {
		req.Header.Set("Kong-Admin-Token", apiToken)
	}
	resp, err := (&http.Client{Timeout: 3 * time.Second}).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("GET /cluster: %s", resp.Status)
	}
	var v clusterView
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return nil, err
	}
	return &v, nil
}

func printCluster(v *clusterView, out io.Writer) {
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tROLE\tPROXY\tADMIN\tCLUSTER\tAPPLIED\tLAST CONTACT")
	for _, m := range v.Members {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%v\t%v\n", m.ID, m.Role, m.Proxy, m.Admin, m.Cluster, m.AppliedIndex, m.LastContact)
	}
	tw.Flush()
	fmt.Fprintf(out, "leader: %s\n", v.Leader)
}

func clusterStatus(c *cli.Context) error {
	apiToken = c.String("token")
	v, err := fetchCluster(c.String("admin"))
	if err != nil {
		return err
	}
	printCluster(v, os.Stdout)
	return nil
}

// clusterUp starts N `gatehouse run` processes that form one cluster with
// the same command line shape as a production deployment (--join plus
// --bootstrap-expect), then waits for a signal and stops them.
func clusterUp(c *cli.Context) error {
	n, base := c.Int("nodes"), c.Int("base-port")
	if n < 1 || n > 9 {
		return errors.New("--nodes must be between 1 and 9")
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	dir := c.String("data-dir")
	var admins []string
	for i := 0; i < n; i++ {
		admins = append(admins, "127.0.0.1:"+strconv.Itoa(base+10*i+1))
	}
	var ids []string
	for i := 0; i < n; i++ {
		ids = append(ids, "node"+strconv.Itoa(i+1))
	}
	var certs map[string]cluster.TLSFiles
	if c.Bool("tls") {
		if certs, err = cluster.DevCerts(filepath.Join(dir, "tls"), ids); err != nil {
			return fmt.Errorf("make cluster certificates: %w", err)
		}
	}
	// A throwaway gossip key as well, passed in the environment (not on
	// command lines other local users can read).
	var gossipEnv []string
	if c.Bool("tls") {
		k := make([]byte, 32)
		if _, err := rand.Read(k); err != nil {
			return fmt.Errorf("gossip key: %w", err)
		}
		gossipEnv = []string{"GATEHOUSE_GOSSIP_KEY=" + base64.StdEncoding.EncodeToString(k)}
	}
	var procs []*exec.Cmd
	stopAll := func() {
		for _, p := range procs {
			p.Process.Signal(syscall.SIGTERM)
		}
		deadline := time.After(15 * time.Second)
		for _, p := range procs {
			done := make(chan struct{})
			go func() { p.Wait(); close(done) }()
			select {
			case <-done:
			case <-deadline:
				p.Process.Kill()
			}
		}
	}
	for i := 0; i < n; i++ {
		id := "node" + strconv.Itoa(i+1)
		p := base + 10*i
		ndir := filepath.Join(dir, id)
		if err := os.MkdirAll(ndir, 0o700); err != nil {
			stopAll()
			return err
		}
		logf, err := os.OpenFile(filepath.Join(dir, id+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			stopAll()
			return err
		}
		args := []string{"run", "--node-id", id, "--data-dir", ndir,
			"--proxy-listen", "127.0.0.1:" + strconv.Itoa(p), "--admin-listen", admins[i],
			"--proxy-tls-listen", "127.0.0.1:" + strconv.Itoa(p+443),
			"--cluster-listen", "127.0.0.1:" + strconv.Itoa(p+5), "--gossip-listen", "127.0.0.1:" + strconv.Itoa(p+6),
			"--status-listen", "127.0.0.1:" + strconv.Itoa(p+100)}
		if n > 1 {
			args = append(args, "--join", strings.Join(admins, ","), "--bootstrap-expect", strconv.Itoa(n))
		}
		if f, ok := certs[id]; ok {
			args = append(args, "--cluster-tls-cert", f.Cert, "--cluster-tls-key", f.Key, "--cluster-ca", f.CA)
		}
		cmd := exec.Command(self, args...)
		cmd.Env = append(os.Environ(), gossipEnv...)
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			stopAll()
			return fmt.Errorf("start %s: %w", id, err)
		}
		procs = append(procs, cmd)
	}
	tlsNote := "plain TCP between nodes"
	if certs != nil {
		tlsNote = "mutual TLS between nodes (CA in " + filepath.Join(dir, "tls") + ")"
	}
	fmt.Printf("started %d nodes, %s; logs in %s/node*.log\n", n, tlsNote, dir)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	var view *clusterView
	deadline := time.Now().Add(60 * time.Second)
	for view == nil || view.Leader == "" || !allKnown(view) {
		if time.Now().After(deadline) {
			stopAll()
			return errors.New("no leader elected within 60s; see the node logs")
		}
		select {
		case <-sig:
			stopAll()
			return nil
		case <-time.After(250 * time.Millisecond):
		}
		view, _ = fetchCluster("http://" + admins[0])
	}
	printCluster(view, os.Stdout)
	fmt.Println("cluster is up; Ctrl-C stops all nodes")
	<-sig
	fmt.Println("stopping…")
	stopAll()
	return nil
}

func allKnown(v *clusterView) bool {
	for _, m := range v.Members {
		if m.Admin == "" || m.Role == "unknown" || m.Role == "unreachable" {
			return false
		}
	}
	return len(v.Members) > 0
}
