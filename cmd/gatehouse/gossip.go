package main

import (
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/gatehouse-gw/gatehouse/cluster/gossip"
	"github.com/gatehouse-gw/gatehouse/fsm"
	"github.com/gatehouse-gw/gatehouse/plugins/ratelimiting"
)

// gossipListen is --gossip-listen, defaulting to the cluster address's
// host and the port after it.
func gossipListen(flagValue, clusterAddr string) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	host, port, err := net.SplitHostPort(clusterAddr)
	if err != nil {
		return "", fmt.Errorf("--cluster-listen %q: %w", clusterAddr, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return "", fmt.Errorf("--cluster-listen %q: %w", clusterAddr, err)
	}
	return net.JoinHostPort(host, strconv.Itoa(p+1)), nil
}

// gossipKey is the AES key for gossip packets: --gossip-key (base64 of 16,
// 24 or 32 bytes), or else one derived from the bootstrap admin token that
// every node of an authenticated cluster already shares; none without
// either (a loopback or trusted network).
func gossipKey(flagValue, adminToken string) ([]byte, error) {
	if flagValue != "" {
		k, err := base64.StdEncoding.DecodeString(flagValue)
		if err != nil || (len(k) != 16 && len(k) != 24 && len(k) != 32) {
			return nil, fmt.Errorf("--gossip-key must be base64 of 16, 24 or 32 bytes")
		}
		return k, nil
	}
	if adminToken == "" {
		return nil, nil
	}
	k, err := hkdf.Key(sha256.New, []byte(adminToken), nil, "gatehouse gossip key v1", 32)
	if err != nil {
		return nil, fmt.Errorf("derive gossip key: %w", err)
	}
	return k, nil
}

// followMembers keeps the gossip's peer list equal to the cluster's
// members as the log records them.
func followMembers(g *gossip.Gossip) func(fsm.Update) {
	return func(u fsm.Update) {
		if u.Prev != nil && !u.Reset && sameMembers(u.Prev.Members(), u.Next.Members()) {
			return
		}
		peers := map[string]string{}
		for id, m := range u.Next.Members() {
			if !m.Removed {
				peers[id] = m.Gossip
			}
		}
		g.SetPeers(peers)
	}
}

func sameMembers(a, b map[string]fsm.Member) bool {
	if len(a) != len(b) {
		return false
	}
	for id, m := range a {
		if o, ok := b[id]; !ok || o.Gossip != m.Gossip || o.Removed != m.Removed {
			return false
		}
	}
	return true
}

// rateLimits serves the admin's /rate-limits endpoint from the store.
type rateLimits struct{ self string }

func (r rateLimits) Inspect(p *fsm.Plugin, key string) (any, error) {
	return ratelimiting.Inspect(p, key, r.self, time.Now())
}

// gossipStatus is the "gossip" object of /status.
func gossipStatus(g *gossip.Gossip, store *ratelimiting.Store) func() any {
	return func() any {
		return map[string]any{"transport": g.Stats(), "rate_limits": store.Stats()}
	}
}
