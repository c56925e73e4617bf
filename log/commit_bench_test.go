package log

import (
	"fmt"
	"path/filepath"
	"testing"
)

// BenchmarkCommitBulkRecord commits a declarative load's record: a
// payload and one change per entity (20,000 here, 200,000 in a
// 100,000-consumer batch).
func BenchmarkCommitBulkRecord(b *testing.B) {
	n := 20000
	if testing.Short() {
		n = 200
	}
	h, err := OpenHistory(filepath.Join(b.TempDir(), "h.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	changes := make([]Change, n)
	for i := range changes {
		changes[i] = Change{EntityType: "consumers", EntityID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i), Op: "created",
			After: map[string]any{"username": fmt.Sprintf("c%d", i), "created_at": 1796193737.0, "tags": []any{"consumers-1"}}}
	}
	payload := make([]byte, 180*n)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		r := &Record{Event: Event{Index: uint64(i + 1), Type: TypeBatch, Time: int64(i), Op: "config", Payload: payload},
			Type: TypeBatch, Outcome: "applied", Changes: changes}
		if err := h.Append(r); err != nil {
			b.Fatal(err)
		}
	}
}
