package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/mux"

	"github.com/gatehouse-gw/gatehouse/log"
)

// Replay jobs re-send a range of the history to a destination, in order,
// in batches, retrying with backoff (Konnect's replay job, with no limit
// on how far back). Every node holds the whole history, so a job runs on
// the node that received it; jobs live in that node's memory and end
// with it (the destination can ask again from the last index it saw).

type replayJob struct {
	mu          sync.Mutex
	ID          string `json:"id"`
	Destination string `json:"destination"`
	Since       uint64 `json:"since"`
	Until       uint64 `json:"until"`
	BatchSize   int    `json:"batch_size"`
	Status      string `json:"status"` // running, done, failed, cancelled
	Sent        int    `json:"sent"`   // events delivered
	Next        uint64 `json:"next_index"`
	Error       string `json:"error,omitempty"`
	Node        string `json:"node"`
	CreatedAt   int64  `json:"created_at"`
	cancel      context.CancelFunc
}

func (j *replayJob) view() map[string]any {
	j.mu.Lock()
	defer j.mu.Unlock()
	b, _ := json.Marshal(j)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return m
}

type replays struct {
	mu   sync.Mutex
	seq  int
	jobs map[string]*replayJob
}

// replayCreate serves POST /audit/replay {since, until, destination,
// batch_size}: since and until are indexes or RFC 3339 times (until
// defaults to now).
func (s *Server) replayCreate(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Since       json.RawMessage `json:"since"`
		Until       json.RawMessage `json:"until"`
		Destination string          `json:"destination"`
		BatchSize   int             `json:"batch_size"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
		message(w, 400, `expected {"since": ..., "until": ..., "destination": "http(s)://..."}`)
		return
	}
	if u, err := url.Parse(req.Destination); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		message(w, 400, "destination must be an http or https URL")
		return
	}
	if req.BatchSize == 0 {
		req.BatchSize = 100
	}
	if req.BatchSize < 1 || req.BatchSize > 1000 {
		message(w, 400, "batch_size must be between 1 and 1000")
		return
	}
	point := func(name string, raw json.RawMessage, def uint64) (uint64, bool) {
		v := string(bytes.Trim(raw, `"`))
		if v == "" || v == "null" {
			return def, true
		}
		return s.resolvePoint(w, name, v)
	}
	cur := s.cfg.Store.State().Index
	since, ok := point("since", req.Since, 1)
	if !ok {
		return
	}
	until, ok := point("until", req.Until, cur)
	if !ok {
		return
	}
	if since > until {
		message(w, 400, "since is after until")
		return
	}
	s.replays.mu.Lock()
	if s.replays.jobs == nil {
		s.replays.jobs = map[string]*replayJob{}
	}
	s.replays.seq++
	ctx, cancel := context.WithCancel(context.Background())
	job := &replayJob{ID: s.cfg.NodeID + "-" + strconv.Itoa(s.replays.seq), Destination: req.Destination,
		Since: since, Until: until, BatchSize: req.BatchSize, Status: "running", Next: since,
		Node: s.cfg.NodeID, CreatedAt: time.Now().Unix(), cancel: cancel}
	s.replays.jobs[job.ID] = job
	s.replays.mu.Unlock()
	go s.runReplay(ctx, job)
	writeJSON(w, 201, job.view())
}

// replayGet serves GET /audit/replay/{id}; DELETE cancels the job.
func (s *Server) replayGet(w http.ResponseWriter, r *http.Request) {
	s.replays.mu.Lock()
	job := s.replays.jobs[mux.Vars(r)["id"]]
	s.replays.mu.Unlock()
	if job == nil {
		notFound(w)
		return
	}
	if r.Method == "DELETE" {
		job.cancel()
		w.WriteHeader(204)
		return
	}
	writeJSON(w, 200, job.view())
}

// replayList serves GET /audit/replay: this node's jobs.
func (s *Server) replayList(w http.ResponseWriter, r *http.Request) {
	s.replays.mu.Lock()
	data := []any{}
	for _, j := range s.replays.jobs {
		data = append(data, j.view())
	}
	s.replays.mu.Unlock()
	writeJSON(w, 200, map[string]any{"data": data, "next": nil})
}

func (s *Server) runReplay(ctx context.Context, job *replayJob) {
	client := &http.Client{Timeout: 10 * time.Second}
	backoff := time.Duration(0)
	set := func(f func()) { job.mu.Lock(); f(); job.mu.Unlock() }
	for attempt := 0; ; attempt++ {
		if backoff > 0 {
			select {
			case <-ctx.Done():
				set(func() { job.Status = "cancelled" })
				return
			case <-time.After(backoff):
			}
		}
		job.mu.Lock()
		from := job.Next
		job.mu.Unlock()
		if from > job.Until {
			set(func() { job.Status = "done" })
			return
		}
		rows, last, err := s.rows(from, job.Until, job.BatchSize, false)
		if err == nil && len(rows) == 0 {
			set(func() { job.Status, job.Next = "done", job.Until+1 })
			return
		}
		if err == nil {
			err = postEvents(ctx, client, job.Destination, map[string]any{"events": rows, "replay": job.ID})
		}
		if errors.Is(ctx.Err(), context.Canceled) {
			set(func() { job.Status = "cancelled" })
			return
		}
		if err != nil {
			backoff = min(max(2*backoff, 250*time.Millisecond), 30*time.Second)
			set(func() { job.Error = err.Error() })
			if attempt > 10_000 {
				set(func() { job.Status = "failed" })
				return
			}
			continue
		}
		backoff = 0
		set(func() { job.Sent += len(rows); job.Next = last + 1; job.Error = "" })
	}
}

// rows returns up to size signed audit rows from the history in [from,
// to] (to 0: no bound), and the last index looked at. Cursor events are
// left out of webhook deliveries (they only say how far delivery got)
// when skipCursors is set.
func (s *Server) rows(from, to uint64, size int, skipCursors bool) ([]any, uint64, error) {
	var rows []any
	var last uint64
	err := s.cfg.Store.History().Range(from, to, func(rec *log.Record) bool {
		last = rec.Event.Index
		if skipCursors && rec.Type == log.TypeCursor {
			return true
		}
		rows = append(rows, s.sign(log.RowOf(rec)))
		return len(rows) < size
	})
	return rows, last, err
}

// postEvents POSTs one batch as JSON; anything but a 2xx is an error.
func postEvents(ctx context.Context, client *http.Client, dest string, body any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, "POST", dest, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s answered %s", dest, resp.Status)
	}
	return nil
}
