package cluster

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/test/harness"
)

// snapshotTimeout bounds waiting for a Raft snapshot: the snapshot check
// runs every 5 s.
const snapshotTimeout = 15 * time.Second

// waitNewSnapshot waits until n's data dir holds a snapshot directory that
// is not in known, and returns n's snapshot directories.
func waitNewSnapshot(t *testing.T, n *harness.Node, known []string) []string {
	t.Helper()
	var dirs []string
	harness.Eventually(t, snapshotTimeout, 250*time.Millisecond, "a new Raft snapshot on "+n.NodeID, func() (bool, string) {
		dirs = snapshotDirs(n)
		for _, d := range dirs {
			if !slices.Contains(known, d) {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%s/raft/snapshots holds %v", n.DataDir, dirs)
	})
	return dirs
}

// TestRestartAfterSnapshot runs a cluster that snapshots every 64 entries,
// lets a stopped follower fall behind the leader's compacted log, and
// checks that it catches up on restart; then restarts the whole cluster
// and checks that every entity survived on every node.
func TestRestartAfterSnapshot(t *testing.T) {
	c := startCluster(t, "--raft-snapshot-threshold", "64")
	leader := c.waitLeader(t, c.nodes...)

	written := createConsumers(t, c.nodes, "snap-a", 300)
	waitConverged(t, convergeTimeout, c.nodes...)

	// Every node's log is now well past the threshold: each takes a
	// snapshot at its next check.
	snaps := map[string][]string{}
	for _, n := range c.nodes {
		snaps[n.NodeID] = waitNewSnapshot(t, n, nil)
		t.Logf("%s snapshots after 300 writes: %v", n.NodeID, snaps[n.NodeID])
	}

	follower := c.followers(leader)[0]
	behind := mustStatus(t, follower)
	follower.Stop()
	if !follower.Exited() {
		t.Fatalf("follower %s still runs after SIGTERM", follower.NodeID)
	}
	t.Logf("stopped follower %s at %s", follower.NodeID, behind)

	running := c.others(follower)
	written = append(written, createConsumers(t, running, "snap-b", 200)...)
	// Let the leader snapshot again, so that it keeps only the last 80
	// entries and the follower's next entry is no longer in its log.
	leader = c.waitLeader(t, running...)
	snaps[leader.NodeID] = waitNewSnapshot(t, leader, snaps[leader.NodeID])
	t.Logf("leader %s snapshots after 200 more writes: %v", leader.NodeID, snaps[leader.NodeID])
	ahead := mustStatus(t, leader)
	if ahead.AppliedIndex < behind.AppliedIndex+200 {
		t.Errorf("leader applied index %d, want at least %d + 200", ahead.AppliedIndex, behind.AppliedIndex)
	}

	t.Run("lagging follower catches up", func(t *testing.T) {
		follower.Restart(t)
		c.waitLeader(t, c.nodes...)
		sts := waitConverged(t, convergeTimeout, c.nodes...)
		t.Logf("converged: %s", describe(sts))
		t.Logf("%s snapshots after catching up: %v (before: %v)", follower.NodeID, snapshotDirs(follower), snaps[follower.NodeID])
		checkConsumers(t, follower, written)
		sameEntities(t, "/consumers", c.nodes...)
	})

	t.Run("whole cluster restarts", func(t *testing.T) {
		before := waitConverged(t, convergeTimeout, c.nodes...)[0]
		entities := listAll(t, leader, "/consumers")
		if len(entities) != len(written) {
			t.Errorf("%d consumers before the restart, want %d", len(entities), len(written))
		}
		for _, n := range c.nodes {
			n.Stop()
			if !n.Exited() {
				t.Fatalf("%s still runs after SIGTERM", n.NodeID)
			}
		}
		for _, n := range c.nodes {
			n.Restart(t) // the process has exited: this only starts it
		}
		c.waitLeader(t, c.nodes...)
		waitMembership(t, c.nodes...)
		sts := waitConverged(t, convergeTimeout, c.nodes...)
		t.Logf("before the restart: %s; after: %s", before, describe(sts))
		if sts[0].ConfigHash != before.ConfigHash {
			t.Errorf("config_hash changed across a full restart: before %s, after %s", before, describe(sts))
		}
		if sts[0].ConfigIndex < before.ConfigIndex {
			t.Errorf("config_index went back across a full restart: before %s, after %s", before, describe(sts))
		}
		for _, n := range c.nodes {
			diffEntities(t, "GET /consumers on "+n.NodeID+" after the full restart vs before", entities, listAll(t, n, "/consumers"))
			checkConsumers(t, n, written)
		}
	})
}

// consumerBatch is a declarative document of n consumers with a key
// each, managed under the select tag <prefix>-<b>, so batches add up.
func consumerBatch(prefix string, b, n int) []byte {
	var doc strings.Builder
	fmt.Fprintf(&doc, `{"_format_version": "3.0", "_info": {"select_tags": ["%s-%d"]}, "consumers": [`, prefix, b)
	for i := range n {
		if i > 0 {
			doc.WriteString(",")
		}
		fmt.Fprintf(&doc, `{"username": "%s-%d-%d", "keyauth_credentials": [{"key": "%s-key-%d-%d"}]}`, prefix, b, i, prefix, b, i)
	}
	doc.WriteString("]}")
	return []byte(doc.String())
}

// TestSnapshotAfterBulkWrites: a few large declarative configs are few
// entries but many bytes; past --raft-snapshot-bytes every node snapshots
// without waiting for the entry threshold, so a restart does not fold
// them all again. Without the byte trigger no snapshot is taken here
// (8192 entries by default, and this writes a handful).
func TestSnapshotAfterBulkWrites(t *testing.T) {
	c := startCluster(t, "--raft-snapshot-bytes", "200000")
	leader := c.waitLeader(t, c.nodes...)
	for b := range 3 {
		r := harness.Raw(t, http.MethodPost, leader.Admin("/config"), "application/json", consumerBatch("bulk", b, 1000))
		harness.ExpectStatus(t, r, http.StatusCreated)
	}
	for _, n := range c.nodes {
		dirs := waitNewSnapshot(t, n, nil)
		t.Logf("%s snapshots: %v", n.NodeID, dirs)
	}
}

// TestSnapshotWaitsForBulkWritesToPause: a load in batches is one large
// entry after another, and a snapshot every few of them (the whole state
// and history each time) slowed the load. The snapshot the bytes ask for
// waits until the large entries pause, then covers them all.
func TestSnapshotWaitsForBulkWritesToPause(t *testing.T) {
	n := harness.Start(t, harness.Options{NodeID: "pause", Args: []string{"--raft-snapshot-bytes", "1500000"}})
	var last uint64
	for b := range 3 {
		// 4,000 consumers and their keys: an entry of about 1.5 MB, over
		// the 1 MiB that marks bulk work.
		r := harness.Raw(t, http.MethodPost, n.Admin("/config"), "application/json", consumerBatch("pause", b, 4000))
		harness.ExpectStatus(t, r, http.StatusCreated)
		last = r.ConfigIndex(t)
	}
	dirs := waitNewSnapshot(t, n, nil)
	// Raft names a snapshot term-index-time; it keeps the last two.
	for _, d := range dirs {
		parts := strings.Split(d, "-")
		if len(parts) < 3 {
			t.Fatalf("snapshot directory %q is not term-index-time", d)
		}
		i, err := strconv.ParseUint(parts[1], 10, 64)
		if err != nil {
			t.Fatalf("snapshot directory %q: %v", d, err)
		}
		if i < last {
			t.Errorf("snapshot %s was taken mid-load, before the last batch's index %d", d, last)
		}
	}
}
