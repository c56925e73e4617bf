package admin

import (
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/gatehouse-gw/gatehouse/fsm"
	"github.com/gatehouse-gw/gatehouse/fsm/backup"
)

// backupArchive serves GET /cluster/backup[?at=INDEX|TIME]: the
// configuration and the event history up to that point (default: now) as
// a backup archive (see package backup). Any node can serve it: every
// node holds the whole history, and reading it blocks no writes.
func (s *Server) backupArchive(w http.ResponseWriter, r *http.Request) {
	st, ok := s.readState(w, r)
	if !ok {
		return
	}
	// A large history takes longer than the server's write timeout.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})
	w.Header().Set("Content-Type", "application/gzip")
	w.Header().Set("Content-Disposition", `attachment; filename="gatehouse-`+strconv.FormatUint(st.Index, 10)+`.tar.gz"`)
	w.Header().Set("X-Gatehouse-Config-Index", strconv.FormatUint(st.Index, 10))
	entities := 0
	for _, k := range fsm.Kinds {
		entities += st.Count(k)
	}
	meta := backup.Meta{Index: st.Index, Node: s.cfg.NodeID, GatehouseVersion: GatehouseVersion, Entities: entities}
	err := backup.Write(w, meta, s.cfg.Store.Parts(st))
	if err != nil {
		// The status line is gone; a truncated archive fails the
		// restore's checks, and the operator sees this in the log.
		slog.Error("backup failed", "err", err)
	}
}

// restoreBackup serves POST /cluster/restore with a backup archive as the
// body: the cluster's state and history become the backup's (disaster
// recovery). The archive is checked whole (checksums, version, structure)
// before anything changes.
func (s *Server) restoreBackup(w http.ResponseWriter, r *http.Request) {
	_ = http.NewResponseController(w).SetReadDeadline(time.Time{})
	f, err := os.CreateTemp("", "gatehouse-upload-*")
	if err != nil {
		message(w, 500, "An unexpected error occurred")
		return
	}
	defer os.Remove(f.Name())
	defer f.Close()
	size, err := io.Copy(f, io.LimitReader(r.Body, 64<<30))
	if err != nil || size == 0 {
		message(w, 400, "expected a backup file as the request body")
		return
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		message(w, 500, "An unexpected error occurred")
		return
	}
	snap, snapSize, meta, cleanup, err := OpenBackup(f)
	if err != nil {
		message(w, 400, "refusing to restore: "+err.Error()+"; nothing was changed")
		return
	}
	defer cleanup()
	if err := s.cfg.Cluster.RestoreBackup(snap, snapSize); err != nil {
		message(w, 503, err.Error())
		return
	}
	writeJSON(w, 200, map[string]any{"message": "restored", "index": meta.Index, "events": meta.Events,
		"entities": meta.Entities})
}

// OpenBackup checks a backup archive and returns it as a snapshot stream
// ready for Raft, with its size and metadata. cleanup removes the
// unpacked files.
func OpenBackup(r io.Reader) (snap *os.File, size int64, meta backup.Meta, cleanup func(), err error) {
	a, err := backup.Open(r)
	if err != nil {
		return nil, 0, meta, nil, err
	}
	snap, size, err = a.WriteSnapshot()
	if err != nil {
		a.Close()
		return nil, 0, meta, nil, err
	}
	cleanup = func() { snap.Close(); a.Close() }
	if err := fsm.VerifyBackup(snap, size); err != nil {
		cleanup()
		return nil, 0, meta, nil, err
	}
	return snap, size, a.Meta, cleanup, nil
}
