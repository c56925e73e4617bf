// Command gatehouse is the Gatehouse API gateway. This file only wires the
// packages together; behaviour lives in them.
package main

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/gatehouse-gw/gatehouse/admin"
	"github.com/gatehouse-gw/gatehouse/cluster"
	"github.com/gatehouse-gw/gatehouse/cluster/gossip"
	"github.com/gatehouse-gw/gatehouse/fsm"
	"github.com/gatehouse-gw/gatehouse/log"
	"github.com/gatehouse-gw/gatehouse/plugins"
	"github.com/gatehouse-gw/gatehouse/plugins/basicauth"
	"github.com/gatehouse-gw/gatehouse/plugins/httplog"
	"github.com/gatehouse-gw/gatehouse/plugins/jwt"
	"github.com/gatehouse-gw/gatehouse/plugins/keyauth"
	"github.com/gatehouse-gw/gatehouse/plugins/prometheus"
	"github.com/gatehouse-gw/gatehouse/plugins/proxycache"
	"github.com/gatehouse-gw/gatehouse/plugins/ratelimiting"
	"github.com/gatehouse-gw/gatehouse/plugins/requesttransformer"
	"github.com/gatehouse-gw/gatehouse/proxy"
	"github.com/gatehouse-gw/gatehouse/proxy/router"
)

func main() {
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})))
	app := &cli.App{
		Name:     "gatehouse",
		Usage:    "a Kong-compatible API gateway whose configuration is a Raft-replicated event log",
		Version:  admin.GatehouseVersion,
		Commands: []*cli.Command{runCommand(), clusterCommand(), adminCommand(), auditCommand(), historyCommand(), backupCommand(), restoreCommand(), configCommand()},
	}
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "gatehouse:", err)
		os.Exit(1)
	}
}

// installSeed installs a backup left by `gatehouse restore --data-dir`:
// once this node leads (it bootstraps alone), the backup becomes the
// cluster's state and history through Raft, so nodes that join later
// receive it too. The seed is renamed once installed.
func installSeed(ctx context.Context, node *cluster.Node, dir string) error {
	path := filepath.Join(dir, seedFile)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open seed: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := node.WaitLeader(wctx); err != nil || !node.IsLeader() {
		return fmt.Errorf("a seeded node must start alone and lead to install its backup (then others join it): %v", err)
	}
	if err := node.RestoreBackup(f, st.Size()); err != nil {
		return fmt.Errorf("install seed: %w", err)
	}
	slog.Info("installed the seeded backup", "file", path, "index", node.AppliedIndex())
	return os.Rename(path, path+".installed")
}

// newRegistry is the set of plugins this build offers.
func newRegistry(cache *proxycache.Store, counters *ratelimiting.Store, metrics *prometheus.Metrics) *plugins.Registry {
	return plugins.NewRegistry(
		keyauth.Definition(),
		basicauth.Definition(),
		jwt.Definition(),
		prometheus.Definition(metrics),
		httplog.Definition(httplog.NewQueues()),
		requesttransformer.Definition(),
		ratelimiting.Definition(counters),
		ratelimiting.AdvancedDefinition(counters),
		proxycache.Definition(cache),
	)
}

func flag(name, def, usage string) *cli.StringFlag {
	env := "GATEHOUSE_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
	return &cli.StringFlag{Name: name, Value: def, Usage: usage, EnvVars: []string{env}}
}

func runCommand() *cli.Command {
	host, _ := os.Hostname()
	return &cli.Command{
		Name:  "run",
		Usage: "run a Gatehouse node (proxy, admin API and cluster member)",
		Flags: []cli.Flag{
			flag("data-dir", "./data", "directory for the Raft log, snapshots and event history"),
			flag("proxy-listen", "0.0.0.0:8000", "proxy listen address"),
			flag("proxy-tls-listen", "", "proxy TLS listen address (Kong's 8443; certificates chosen by SNI); off when empty"),
			flag("admin-listen", "127.0.0.1:8001", "Admin API listen address"),
			flag("status-listen", "127.0.0.1:8100", "status API listen address (/status, /status/ready, /debug/pprof)"),
			flag("node-id", host, "this node's id in the cluster"),
			flag("cluster-listen", "127.0.0.1:8005", "Raft transport listen address"),
			flag("gossip-listen", "", "rate-limit gossip (UDP and TCP) listen address (default: --cluster-listen's host, its port + 1)"),
			flag("gossip-key", "", "base64 AES key (16, 24 or 32 bytes) for gossip packets (default: derived from --admin-token, if set)"),
			&cli.IntFlag{Name: "rate-limit-max-counters", Value: ratelimiting.DefaultMaxCounters,
				EnvVars: []string{"GATEHOUSE_RATE_LIMIT_MAX_COUNTERS"},
				Usage:   "most rate-limit counters one node keeps (its own and its peers'); the least used go first"},
			flag("join", "", "comma-separated admin addresses of other nodes to join or form a cluster with"),
			&cli.IntFlag{Name: "bootstrap-expect", Value: 0, EnvVars: []string{"GATEHOUSE_BOOTSTRAP_EXPECT"},
				Usage: "form a new cluster once this many nodes (listed in --join) have started"},
			&cli.Uint64Flag{Name: "raft-snapshot-threshold", Value: 0, EnvVars: []string{"GATEHOUSE_RAFT_SNAPSHOT_THRESHOLD"},
				Usage: "log entries between Raft snapshots (0: 8192)"},
			&cli.Int64Flag{Name: "raft-snapshot-bytes", Value: 0, EnvVars: []string{"GATEHOUSE_RAFT_SNAPSHOT_BYTES"},
				Usage: "bytes of applied entries that make a Raft snapshot sooner, so a restart after bulk writes does not fold them again; taken when bulk entries pause (0: 64 MiB)"},
			flag("admin-auth", "auto", "admin API authentication: on, off, or auto (on unless the admin listener is loopback)"),
			&cli.BoolFlag{Name: "i-know-admin-is-open", EnvVars: []string{"GATEHOUSE_I_KNOW_ADMIN_IS_OPEN"},
				Usage: "allow --admin-auth=off on a non-loopback admin listener"},
			&cli.DurationFlag{Name: "admin-write-timeout", Value: 60 * time.Second, EnvVars: []string{"GATEHOUSE_ADMIN_WRITE_TIMEOUT"},
				Usage: "time the Admin API has to answer a request; bulk writes (POST /config, restores) get it afresh for their answer once applied"},
			&cli.DurationFlag{Name: "proxy-read-timeout", Value: 60 * time.Second, EnvVars: []string{"GATEHOUSE_PROXY_READ_TIMEOUT"},
				Usage: "time a client may take to send a whole request to the proxy"},
			flag("cluster-tls-cert", "", "PEM certificate for mutual TLS between nodes (Raft)"),
			flag("cluster-tls-key", "", "PEM key for --cluster-tls-cert"),
			flag("cluster-ca", "", "PEM CA that signs every node's cluster certificate"),
			&cli.StringFlag{Name: "admin-token", EnvVars: []string{"GATEHOUSE_ADMIN_TOKEN"},
				Usage: "bootstrap super-admin token (the same on every node of a cluster); generated and printed once if unset"},
			flag("startup-profile", "", "write a CPU profile of the start, until the node serves, to this file (/debug/pprof answers only after)"),
		},
		Action: func(c *cli.Context) error {
			return run(c.Context, runConfig{
				dataDir: c.String("data-dir"), proxy: c.String("proxy-listen"), admin: c.String("admin-listen"),
				proxyTLS: c.String("proxy-tls-listen"),
				status:   c.String("status-listen"), nodeID: c.String("node-id"), cluster: c.String("cluster-listen"),
				join: splitList(c.String("join")), expect: c.Int("bootstrap-expect"),
				snapshotThreshold: c.Uint64("raft-snapshot-threshold"), snapshotBytes: c.Int64("raft-snapshot-bytes"),
				adminAuth: c.String("admin-auth"), iKnowOpen: c.Bool("i-know-admin-is-open"),
				adminToken:       c.String("admin-token"),
				proxyReadTimeout: c.Duration("proxy-read-timeout"), adminWriteTimeout: c.Duration("admin-write-timeout"),
				gossip: c.String("gossip-listen"), gossipKey: c.String("gossip-key"),
				maxCounters: c.Int("rate-limit-max-counters"), startupProfile: c.String("startup-profile"),
				tls: cluster.TLSFiles{Cert: c.String("cluster-tls-cert"), Key: c.String("cluster-tls-key"),
					CA: c.String("cluster-ca")},
			})
		},
	}
}

type runConfig struct {
	dataDir, proxy, admin, status, nodeID, cluster string
	proxyTLS                                       string
	join                                           []string
	expect                                         int
	snapshotThreshold                              uint64
	snapshotBytes                                  int64
	adminAuth, adminToken                          string
	iKnowOpen                                      bool
	tls                                            cluster.TLSFiles
	proxyReadTimeout, adminWriteTimeout            time.Duration
	gossip, gossipKey                              string
	maxCounters                                    int
	startupProfile                                 string
}

// authEnabled applies the admin-auth rules: auto means on unless the admin
// listener is loopback, and an open non-loopback admin API needs an
// explicit acknowledgement.
func authEnabled(cfg runConfig) (bool, error) {
	host, _, _ := net.SplitHostPort(cfg.admin)
	ip := net.ParseIP(host)
	loopback := host == "localhost" || ip != nil && ip.IsLoopback()
	var on bool
	switch cfg.adminAuth {
	case "on":
		on = true
	case "off":
		on = false
	case "auto", "":
		on = !loopback
	default:
		return false, fmt.Errorf("--admin-auth must be on, off or auto, not %q", cfg.adminAuth)
	}
	if !on && !loopback && !cfg.iKnowOpen {
		return false, fmt.Errorf("refusing to start: the admin API on %s would accept changes from the network "+
			"without authentication; use --admin-auth=on, or --admin-auth=off --i-know-admin-is-open", cfg.admin)
	}
	if on && len(cfg.join) > 0 && cfg.adminToken == "" {
		return false, errors.New("nodes of a cluster with admin authentication authenticate to each other with " +
			"GATEHOUSE_ADMIN_TOKEN (--admin-token): give every node the same one")
	}
	return on, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// advertise turns a listen address into one other nodes can reach: a
// wildcard host is replaced by the cluster address's host.
func advertise(listen, clusterAddr string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host, _, _ = net.SplitHostPort(clusterAddr)
	}
	return net.JoinHostPort(host, port)
}

func run(ctx context.Context, cfg runConfig) error {
	if cfg.nodeID == "" {
		return errors.New("--node-id must not be empty")
	}
	stopProfile := startupProfile(cfg.startupProfile)
	defer stopProfile()
	auth, err := authEnabled(cfg)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.dataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	nodeUUID, err := loadNodeUUID(cfg.dataDir)
	if err != nil {
		return err
	}
	signingKey, err := loadSigningKey(cfg.dataDir)
	if err != nil {
		return err
	}
	history, err := log.OpenHistory(filepath.Join(cfg.dataDir, "history.db"))
	if err != nil {
		return err
	}
	defer history.Close()

	cache, err := proxycache.NewStore(256 << 20)
	if err != nil {
		return err
	}
	counters := ratelimiting.NewStore(cfg.maxCounters)
	// The proxy and the Raft node exist only further down; the metrics
	// read them through these once they do.
	var px *proxy.Proxy
	var node *cluster.Node
	metrics := prometheus.NewMetrics(prometheus.NodeInfo{NodeID: cfg.nodeID, Version: proxy.KongVersion,
		Requests: func() float64 {
			if px == nil {
				return 0
			}
			return px.Requests()
		},
		Connections: func() float64 {
			if px == nil {
				return 0
			}
			return px.OpenConnections()
		},
		Reachable: func() bool { return node != nil && node.Ready() == nil },
	})
	registry := newRegistry(cache, counters, metrics)
	fsm.RouteValidator = func(p string) string {
		if err := router.ValidatePath(p); err != nil {
			return err.Error()
		}
		return ""
	}
	machine := fsm.New(history, registry)
	defer machine.Close() // before the history closes: its queued commits
	rt := proxy.NewRuntime(registry, machine.State())
	// Subscribe before Raft starts: its startup restore and log replay
	// must reach the proxy too.
	machine.Subscribe(rt.Update)

	gossipAddr, err := gossipListen(cfg.gossip, cfg.cluster)
	if err != nil {
		return err
	}
	key, err := gossipKey(cfg.gossipKey, cfg.adminToken)
	if err != nil {
		return err
	}
	gsp, err := gossip.Start(gossip.Config{NodeID: cfg.nodeID, Bind: gossipAddr,
		Advertise: advertise(gossipAddr, cfg.cluster), Key: key}, counters)
	if err != nil {
		return err
	}
	defer gsp.Close()
	machine.Subscribe(followMembers(gsp))

	// Listen before starting Raft so a taken port fails fast.
	proxyLn, err := net.Listen("tcp", cfg.proxy)
	if err != nil {
		return fmt.Errorf("proxy listen: %w", err)
	}
	var proxyTLSLn net.Listener
	if cfg.proxyTLS != "" {
		if proxyTLSLn, err = net.Listen("tcp", cfg.proxyTLS); err != nil {
			proxyLn.Close()
			return fmt.Errorf("proxy TLS listen: %w", err)
		}
		defer proxyTLSLn.Close()
	}
	adminLn, err := net.Listen("tcp", cfg.admin)
	if err != nil {
		proxyLn.Close()
		return fmt.Errorf("admin listen: %w", err)
	}
	statusLn, err := net.Listen("tcp", cfg.status)
	if err != nil {
		proxyLn.Close()
		adminLn.Close()
		return fmt.Errorf("status listen: %w", err)
	}

	node, err = cluster.Open(cluster.Config{
		NodeID: cfg.nodeID, DataDir: cfg.dataDir, BindAddr: cfg.cluster,
		Join: cfg.join, BootstrapExpect: cfg.expect, SnapshotThreshold: cfg.snapshotThreshold, SnapshotBytes: cfg.snapshotBytes, Token: cfg.adminToken,
		TLS: cfg.tls,
		Self: fsm.Member{Admin: advertise(adminLn.Addr().String(), cfg.cluster),
			Proxy: advertise(proxyLn.Addr().String(), cfg.cluster), Status: advertise(statusLn.Addr().String(), cfg.cluster),
			Gossip:    advertise(gossipAddr, cfg.cluster),
			PublicKey: base64.RawURLEncoding.EncodeToString(signingKey.Public().(ed25519.PublicKey))},
	}, machine)
	if err != nil {
		proxyLn.Close()
		adminLn.Close()
		statusLn.Close()
		return err
	}
	// Serve only once the log on disk is folded in: a restarted node must
	// not answer with an empty configuration. Connections meanwhile wait
	// in the listen backlog.
	rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
	if err := node.WaitReplay(rctx); err != nil {
		slog.Warn("serving before the local log was replayed (no quorum yet?)", "err", err)
	}
	rcancel()
	if err := installSeed(ctx, node, cfg.dataDir); err != nil {
		return err
	}
	// A single node (or a cluster's leader) registers its own addresses
	// at once; a follower needs the leader's admin API, which may itself
	// still be starting, so that wait is short.
	rctx, rcancel = context.WithTimeout(ctx, registerWait(cfg))
	if err := node.WaitRegistered(rctx); err != nil {
		slog.Info("serving before this node's addresses were registered", "err", err)
	}
	rcancel()
	px = proxy.New(rt, cfg.proxyReadTimeout)
	api := admin.New(admin.Config{
		NodeID: cfg.nodeID, NodeUUID: nodeUUID, Store: machine, Appender: node, Plugins: registry,
		Cache: cache, ServerInfo: px.Stats, Cluster: node,
		Auth: admin.Auth{Enabled: auth, BootstrapToken: cfg.adminToken}, SigningKey: signingKey,
		RateLimits: rateLimits{self: cfg.nodeID}, Gossip: gossipStatus(gsp, counters), Metrics: metrics.Handler(),
		Settings: map[string]any{"admin_listen": []string{cfg.admin}, "proxy_listen": proxyListen(cfg),
			"status_listen": []string{cfg.status}, "cluster_listen": cfg.cluster, "prefix": cfg.dataDir},
		WriteTimeout: cfg.adminWriteTimeout,
	})
	// Bounded reads so a slow or stalled client cannot hold a handler;
	// the write bound covers an entity write's commit (8 s) with room,
	// and bulk writes re-arm it for their answer (admin.Config).
	adminSrv := &http.Server{Handler: api, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 60 * time.Second,
		WriteTimeout: cfg.adminWriteTimeout, IdleTimeout: 120 * time.Second}
	statusSrv := &http.Server{Handler: api.StatusAPI(node.Ready), ReadHeaderTimeout: 10 * time.Second}

	bctx, bcancel := context.WithCancel(ctx)
	defer bcancel()
	if auth {
		// As with registration: serve once the first admin exists, so its
		// event does not land among a client's first writes (bounded; a
		// follower may have to wait for a leader elsewhere).
		bdone := make(chan struct{})
		go func() { bootstrapAdmin(bctx, api, node, cfg.adminToken); close(bdone) }()
		select {
		case <-bdone:
		case <-time.After(registerWait(cfg)):
		}
	}

	go api.DeliverWebhook(bctx)
	go func() {
		if err := machine.WarmTimeTravel(); err != nil {
			slog.Warn("time-travel checkpoints", "err", err)
		}
	}()

	errc := make(chan error, 4)
	go func() { errc <- px.Serve(proxyLn) }()
	if proxyTLSLn != nil {
		go func() { errc <- px.ServeTLS(proxyTLSLn) }()
		slog.Info("proxy TLS", "listen", proxyTLSLn.Addr().String())
	}
	go func() { errc <- adminSrv.Serve(adminLn) }()
	go func() { errc <- statusSrv.Serve(statusLn) }()
	stopProfile()
	slog.Info("gatehouse started", "node", cfg.nodeID, "proxy", proxyLn.Addr().String(),
		"admin", adminLn.Addr().String(), "status", statusLn.Addr().String(), "cluster", cfg.cluster,
		"data_dir", cfg.dataDir)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	var runErr error
	select {
	case s := <-sig:
		slog.Info("shutting down", "signal", s.String())
	case err := <-errc:
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			runErr = err
			slog.Error("listener failed", "err", err)
		}
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	adminSrv.Shutdown(sctx)
	statusSrv.Shutdown(sctx)
	px.Shutdown()
	// Leave the gossip first: peers then forget this node's counts at
	// once instead of waiting to declare it dead.
	if err := gsp.Close(); err != nil {
		slog.Debug("gossip shutdown", "err", err)
	}
	if err := node.Close(); err != nil {
		slog.Warn("raft shutdown", "err", err)
	}
	return runErr
}

// proxyListen is Kong's proxy_listen setting: each address, the TLS one
// marked ssl.
func proxyListen(cfg runConfig) []string {
	out := []string{cfg.proxy}
	if cfg.proxyTLS != "" {
		out = append(out, cfg.proxyTLS+" ssl")
	}
	return out
}

// bootstrapAdmin makes sure a first super-admin exists once this node
// leads. A token the operator did not choose is printed exactly once.
func bootstrapAdmin(ctx context.Context, api *admin.Server, node *cluster.Node, token string) {
	generated := token == ""
	if generated {
		token = admin.NewToken()
	}
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		if node.IsLeader() {
			actx, cancel := context.WithTimeout(ctx, 5*time.Second)
			created, err := api.BootstrapAdmin(actx, token)
			cancel()
			if err == nil {
				if created && generated {
					fmt.Fprintf(os.Stderr, "\nbootstrap super-admin token (shown once; send it as Kong-Admin-Token): %s\n\n", token)
				}
				return
			}
			slog.Debug("bootstrap admin", "err", err)
		} else if api.HasAdmins() {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func registerWait(cfg runConfig) time.Duration {
	if len(cfg.join) == 0 {
		return 10 * time.Second
	}
	return 2 * time.Second
}

// loadSigningKey returns this node's Ed25519 audit signing key, creating
// it on first start. The private key never leaves the data dir.
func loadSigningKey(dir string) (ed25519.PrivateKey, error) {
	path := filepath.Join(dir, "audit_ed25519.seed")
	if b, err := os.ReadFile(path); err == nil && len(b) == ed25519.SeedSize {
		return ed25519.NewKeyFromSeed(b), nil
	}
	_, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		return nil, fmt.Errorf("generate audit signing key: %w", err)
	}
	if err := os.WriteFile(path, key.Seed(), 0o600); err != nil {
		return nil, fmt.Errorf("write audit signing key: %w", err)
	}
	return key, nil
}

// loadNodeUUID returns Kong's node_id for this data dir, creating it once.
func loadNodeUUID(dir string) (string, error) {
	path := filepath.Join(dir, "node_uuid")
	if b, err := os.ReadFile(path); err == nil {
		if id := strings.TrimSpace(string(b)); fsm.IsUUID(id) {
			return id, nil
		}
	}
	id := admin.NewUUID()
	if err := os.WriteFile(path, []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write node uuid: %w", err)
	}
	return id, nil
}

// startupProfile writes a CPU profile of the start, until the node
// serves, to path when it is set (--startup-profile): /debug/pprof only
// answers once the node serves, and a restart's time is spent before.
// The returned function stops it; calls after the first do nothing.
func startupProfile(path string) func() {
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		slog.Warn("startup profile", "err", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		slog.Warn("startup profile", "err", err)
		f.Close()
		os.Remove(path)
		return func() {}
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			pprof.StopCPUProfile()
			if err := f.Close(); err != nil {
				slog.Warn("startup profile", "err", err)
			}
		})
	}
}
