// Package cluster holds multi-process tests of a three-node Gatehouse
// cluster: forming it, writing through followers, failover after SIGKILL of
// the leader, a minority partition (SIGSTOP), catch-up after Raft
// snapshots, and `gatehouse cluster up`. Like the other suites under test/,
// they start the real binary on 127.0.0.1 and talk to it only over HTTP
// (and signals); they never import product packages.
//
//	go test -count=1 -v ./test/cluster/
//
// A full run takes about a minute.
package cluster
