package admin

import (
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"

	"github.com/gatehouse-gw/gatehouse/fsm"
)

// backup serves GET /cluster/backup[?at=INDEX|TIME]: the configuration
// and the event history up to that point (default: now), in the same
// format as a Raft snapshot, so POST /cluster/restore can install it.
func (s *Server) backup(w http.ResponseWriter, r *http.Request) {
	st, ok := s.readState(w, r)
	if !ok {
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="gatehouse-`+strconv.FormatUint(st.Index, 10)+`.backup"`)
	w.Header().Set("X-Gatehouse-Config-Index", strconv.FormatUint(st.Index, 10))
	if err := s.cfg.Store.Persist(st, w); err != nil {
		// The status line is gone; a truncated body fails the restore's
		// checks, and the operator sees this in the log.
		slog.Error("backup failed", "err", err)
	}
}

// restoreBackup serves POST /cluster/restore with a backup file as the
// body: the cluster's state and history become the backup's (disaster
// recovery). The body is spooled to a temporary file because Raft needs
// its size up front.
func (s *Server) restoreBackup(w http.ResponseWriter, r *http.Request) {
	f, err := os.CreateTemp("", "gatehouse-restore-*")
	if err != nil {
		message(w, 500, "An unexpected error occurred")
		return
	}
	defer os.Remove(f.Name())
	defer f.Close()
	size, err := io.Copy(f, io.LimitReader(r.Body, 8<<30))
	if err != nil || size == 0 {
		message(w, 400, "expected a backup file as the request body")
		return
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		message(w, 500, "An unexpected error occurred")
		return
	}
	if err := fsm.VerifyBackup(f, size); err != nil {
		message(w, 400, "refusing to restore: "+err.Error()+"; nothing was changed")
		return
	}
	if err := s.cfg.Cluster.RestoreBackup(f, size); err != nil {
		message(w, 503, err.Error())
		return
	}
	writeJSON(w, 200, map[string]any{"message": "restored", "bytes": size})
}
