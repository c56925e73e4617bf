package cluster

import (
	"testing"

	"github.com/gatehouse-gw/gatehouse/fsm"
)

// During a rolling upgrade a leader from before Member.Snapshot drops the
// field from the records it applies; an upgraded node must then count
// itself registered, or it posts its record again on every tick.
func TestRegisteredUnderALeaderThatDropsTheSnapshotVersion(t *testing.T) {
	self := fsm.Member{ID: "b", Admin: "127.0.0.1:2", Snapshot: fsm.SnapshotVersion}
	stripped := self
	stripped.Snapshot = 0
	oldLeader := fsm.Member{ID: "a", Admin: "127.0.0.1:1"}
	newLeader := fsm.Member{ID: "a", Admin: "127.0.0.1:1", Snapshot: fsm.SnapshotVersion}
	moved := stripped
	moved.Admin = "127.0.0.1:3"
	for _, tc := range []struct {
		name    string
		members map[string]fsm.Member
		leader  string
		want    bool
	}{
		{"the same record", map[string]fsm.Member{"a": newLeader, "b": self}, "a", true},
		{"no record", map[string]fsm.Member{"a": oldLeader}, "a", false},
		{"an older leader dropped the field", map[string]fsm.Member{"a": oldLeader, "b": stripped}, "a", true},
		{"an older leader, and the address changed", map[string]fsm.Member{"a": oldLeader, "b": moved}, "a", false},
		{"a current leader, field missing", map[string]fsm.Member{"a": newLeader, "b": stripped}, "a", false},
		{"this node leads, field missing", map[string]fsm.Member{"a": oldLeader, "b": stripped}, "", false},
	} {
		if got := isRegistered(tc.members, self, tc.leader); got != tc.want {
			t.Errorf("%s: registered = %v, want %v", tc.name, got, tc.want)
		}
	}
}
