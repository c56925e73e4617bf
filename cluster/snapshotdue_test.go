package cluster

import (
	"testing"
	"time"
)

// TestSnapshotWaitsForAValidationToEnd: between two batches of a bulk
// load the leader validates the next one for longer than the pause the
// snapshot waits for; while it does, the snapshot the bytes ask for
// waits, unless the cap on waiting bytes is passed.
func TestSnapshotWaitsForAValidationToEnd(t *testing.T) {
	now := time.Now()
	validating := false
	a := &adapter{snapshotBytes: 100, bulkRunning: func() bool { return validating }}
	a.lastBulk.Store(now.Add(-time.Minute).UnixNano())

	a.unsnapshotted.Store(100)
	if _, due := a.snapshotDue(now); due {
		t.Fatal("a snapshot is due at snapshotBytes, before they are passed")
	}
	a.unsnapshotted.Store(101)
	if wait, due := a.snapshotDue(now); !due || wait != 0 {
		t.Fatalf("past snapshotBytes with bulk work long paused: wait %v, due %v; want 0, true", wait, due)
	}
	validating = true
	if wait, due := a.snapshotDue(now); !due || wait != snapshotQuiet {
		t.Fatalf("during a validation: wait %v, due %v; want %v, true", wait, due, snapshotQuiet)
	}
	a.unsnapshotted.Store(snapshotDefer*100 + 1)
	if wait, due := a.snapshotDue(now); !due || wait != 0 {
		t.Fatalf("past the cap during a validation: wait %v, due %v; want 0, true", wait, due)
	}
	validating = false
	a.unsnapshotted.Store(200)
	a.lastBulk.Store(now.Add(-time.Second).UnixNano())
	if wait, due := a.snapshotDue(now); !due || wait != snapshotQuiet-time.Second {
		t.Fatalf("a second after a bulk entry: wait %v, due %v; want %v, true", wait, due, snapshotQuiet-time.Second)
	}
}
