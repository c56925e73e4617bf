package backup_test

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse-gw/gatehouse/fsm"
	"github.com/gatehouse-gw/gatehouse/fsm/backup"
	"github.com/gatehouse-gw/gatehouse/log"
)

// archive folds a few services and writes them as a backup.
func archive(t *testing.T) ([]byte, uint64) {
	t.Helper()
	h, err := log.OpenHistory(filepath.Join(t.TempDir(), "h.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	m := fsm.New(h, nil)
	defer m.Close()
	for i := 1; i <= 50; i++ {
		id := fmt.Sprintf("00000000-0000-4000-8000-%012d", i)
		payload, err := fsm.EncodeCommand(&fsm.Command{Op: log.OpCreate, Kind: fsm.Services, Key: id, NewID: id,
			Body: map[string]any{"name": "svc-" + strings.Repeat("x", i), "host": "example.test"}})
		if err != nil {
			t.Fatal(err)
		}
		data, err := log.Encode(&log.Event{Type: log.TypeEntity, Time: int64(i), Op: log.OpCreate, Entity: fsm.Services, Payload: payload})
		if err != nil {
			t.Fatal(err)
		}
		if r := m.Apply(uint64(i), data); r.Err != nil {
			t.Fatal(r.Err.Message)
		}
	}
	var buf bytes.Buffer
	if err := backup.Write(&buf, backup.Meta{Index: m.State().Index, Entities: 50}, m.Parts(m.State())); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), m.State().Index
}

func TestCheckStreamsAndRefusesBadArchives(t *testing.T) {
	good, index := archive(t)
	meta, err := backup.Check(bytes.NewReader(good), fsm.VerifyState, fsm.VerifyHistory)
	if err != nil {
		t.Fatalf("a good archive: %v", err)
	}
	if meta.Index != index || meta.Events != 50 || meta.Version != backup.Version {
		t.Errorf("meta %+v, want index %d, 50 events, version %d", meta, index, backup.Version)
	}
	// The one-pass check and the unpacking one agree on a good file.
	a, err := backup.Open(bytes.NewReader(good))
	if err != nil {
		t.Fatalf("Open of a good archive: %v", err)
	}
	snap, size, err := a.WriteSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	if err := fsm.VerifyBackup(snap, size); err != nil {
		t.Errorf("VerifyBackup of a good archive: %v", err)
	}
	snap.Close()
	a.Close()

	bad := map[string][]byte{
		"truncated":     good[:len(good)-40],
		"half":          good[:len(good)/2],
		"trailing data": append(append([]byte(nil), good...), "junk after the end"...),
		"empty":         nil,
	}
	for i := 20; i < len(good)-20; i += len(good) / 7 {
		b := append([]byte(nil), good...)
		b[i] ^= 0x40
		bad["altered at "+string(rune('0'+i*7/len(good)))] = b
	}
	for name, b := range bad {
		if _, err := backup.Check(bytes.NewReader(b), fsm.VerifyState, fsm.VerifyHistory); err == nil {
			t.Errorf("%s archive passed the check", name)
		}
	}
}
