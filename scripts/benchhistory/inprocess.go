package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"time"

	"github.com/gatehouse-gw/gatehouse/fsm"
	"github.com/gatehouse-gw/gatehouse/fsm/backup"
	"github.com/gatehouse-gw/gatehouse/fsm/declarative"
	"github.com/gatehouse-gw/gatehouse/log"
	"github.com/gatehouse-gw/gatehouse/plugins"
	"github.com/gatehouse-gw/gatehouse/plugins/keyauth"
)

// inProcess times the history operations inside this process, on a
// machine restored from the archive, with a CPU profile of each in
// profDir: the numbers to look at when a bar is missed.
func inProcess(seed, dir string, last uint64, profDir string) error {
	step := func(name string, fn func() error) error {
		pf, _ := os.Create(filepath.Join(profDir, name+".pprof"))
		pprof.StartCPUProfile(pf)
		t0 := time.Now()
		err := fn()
		pprof.StopCPUProfile()
		pf.Close()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		fmt.Printf("%-28s %10s  heap %5d MB\n", name, time.Since(t0).Round(time.Millisecond), ms.HeapInuse>>20)
		return err
	}
	hpath := filepath.Join(dir, "inproc-history.db")
	// The history with its versions rebuilt (the warm-up, minutes at a
	// million events) is kept next to the cached archive: restoring the
	// same archive over it keeps its versions.
	warmed := ""
	if cacheDir != "" {
		warmed = filepath.Join(cacheDir, "warm-history.db")
		if b, err := os.ReadFile(warmed); err == nil {
			if err := os.WriteFile(hpath, b, 0o600); err != nil {
				return err
			}
		}
	}
	h, err := log.OpenHistory(hpath)
	if err != nil {
		return err
	}
	defer h.Close()
	m := fsm.New(h, plugins.NewRegistry(keyauth.Definition()))
	defer m.Close()
	if err := step("restore-archive", func() error {
		f, err := os.Open(seed)
		if err != nil {
			return err
		}
		defer f.Close()
		a, err := backup.Open(f)
		if err != nil {
			return err
		}
		defer a.Close()
		snap, _, err := a.WriteSnapshot()
		if err != nil {
			return err
		}
		defer snap.Close()
		return m.Restore(snap)
	}); err != nil {
		return err
	}
	if err := step("warm-up", m.WarmTimeTravel); err != nil { // the rebuild of the versions
		return err
	}
	if warmed != "" {
		if _, err := os.Stat(warmed); err != nil {
			if err := h.Sync(); err != nil {
				return err
			}
			b, err := os.ReadFile(hpath)
			if err != nil {
				return err
			}
			if err := os.WriteFile(warmed, b, 0o600); err != nil {
				return err
			}
		}
	}
	for _, frac := range []float64{0.5, 0.1, 0.9} {
		at := uint64(float64(last) * frac)
		var s *fsm.State
		if err := step(fmt.Sprintf("state-at-%d", at), func() (err error) { s, err = m.StateAt(at); return }); err != nil {
			return err
		}
		if err := step(fmt.Sprintf("dump-json-%d", at), func() error {
			_, err := declarative.RenderJSON(s, nil)
			return err
		}); err != nil {
			return err
		}
	}
	if err := restorePlan(m, last/2, step); err != nil {
		return err
	}
	return step("persist", func() error {
		return backup.Write(io.Discard, backup.Meta{}, m.Parts(m.State()))
	})
}

// restorePlan times the pieces of a point-in-time restore to index at:
// planning, the leader's check, encoding, and the fold on every node.
func restorePlan(m *fsm.Machine, at uint64, step func(string, func() error) error) error {
	cur := m.State()
	past, err := m.StateAt(at)
	if err != nil {
		return err
	}
	var data []byte
	if err := step("restore-plan", func() error {
		payload, n, err := fsm.RestorePayload(cur, past)
		if err != nil {
			return err
		}
		data, err = log.Encode(&log.Event{Type: log.TypeRestore, Time: time.Now().UnixNano(), Op: "restore", Entity: "config", Payload: payload})
		fmt.Println("  entities:", n, "entry bytes:", len(data))
		return err
	}); err != nil {
		return err
	}
	return step("restore-apply", func() error {
		if r := m.Apply(cur.Index+1, data); r.Err != nil {
			return fmt.Errorf("%s", r.Err.Message)
		}
		return nil
	})
}
