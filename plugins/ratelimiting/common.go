package ratelimiting

import (
	"time"

	"github.com/gatehouse-gw/gatehouse/fsm/schema"
	"github.com/gatehouse-gw/gatehouse/plugins"
)

// DefaultSyncRate is how often a node reports changed counters to its
// peers when a cluster-policy plugin leaves sync_rate at -1 or null.
const DefaultSyncRate = 100 * time.Millisecond

// MinSyncRate is Kong's smallest accepted sync_rate (0.02 s); sync_rate 0,
// which Kong's rate-limiting-advanced takes as "synchronous", gossips at
// this interval: Gatehouse never waits on peers on the request path.
const MinSyncRate = 20 * time.Millisecond

// partitionField is Gatehouse's partition_behavior: what a node enforces
// while it hears only part of the cluster. full: the whole limit on what
// it can see; local_share: its share, limit × live members / cluster size.
func partitionField() *schema.Field {
	return plugins.Str("partition_behavior", "full", "full", "local_share")
}

// policyOf reads the counting policy from field (rate-limiting's policy,
// rate-limiting-advanced's strategy); local reports the local policy.
func policyOf(c map[string]any, field string, errs schema.Errors) (p Policy, local bool) {
	switch v := plugins.String(c, field); v {
	case "cluster":
		return clusterPolicy(c, errs), false
	case "redis":
		errs[field] = field + " 'redis' is not supported: Gatehouse runs without Redis; use 'cluster' " +
			"(counters gossiped between nodes) or 'local'"
		return Policy{}, false
	}
	return Policy{}, true
}

// clusterPolicy reads sync_rate (seconds, as in Kong's
// rate-limiting-advanced) and partition_behavior for the cluster policy.
func clusterPolicy(c map[string]any, errs schema.Errors) Policy {
	p := Policy{SyncEvery: DefaultSyncRate, Share: plugins.String(c, "partition_behavior") == "local_share"}
	sr, ok := c["sync_rate"].(float64)
	switch {
	case !ok || sr == -1:
	case sr == 0:
		p.SyncEvery = MinSyncRate
	case sr < MinSyncRate.Seconds():
		errs["sync_rate"] = "must be -1 (default interval), 0 (fastest) or at least 0.02 (seconds)"
	default:
		p.SyncEvery = time.Duration(sr * float64(time.Second))
	}
	return p
}

// identify returns the value a plugin counts by, falling back to the
// client address as Kong does when the configured identifier is absent.
func identify(ctx *plugins.Context, by, headerName, path string) string {
	switch by {
	case "consumer":
		if ctx.Consumer != nil {
			return ctx.Consumer.ID
		}
		if ctx.CredentialID != "" {
			return ctx.CredentialID
		}
	case "credential":
		if ctx.CredentialID != "" {
			return ctx.CredentialID
		}
	case "service":
		if ctx.Service != nil {
			return ctx.Service.ID
		}
	case "header":
		// A view: the identifier is copied into the counter key.
		if v, ok := ctx.Req.HeaderView(headerName); ok && v != "" {
			return v
		}
	case "path":
		if ctx.Req.Path() == path {
			return path
		}
	}
	return ctx.Req.ClientIP()
}

// redisField is Kong's redis record, accepted so that configs written for
// Kong validate; only the cluster and local policies count.
func redisField() *schema.Field {
	return &schema.Field{Name: "redis", Type: schema.Record, Fields: []*schema.Field{
		plugins.Str("host", nil), plugins.Int("port", 6379.0), plugins.Int("timeout", 2000.0),
		plugins.Str("username", nil), plugins.Str("password", nil), plugins.Int("database", 0.0),
		plugins.Bool("ssl", false), plugins.Bool("ssl_verify", false), plugins.Str("server_name", nil),
	}}
}
