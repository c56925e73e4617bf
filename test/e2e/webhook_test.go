package e2e

import (
	"encoding/json"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/test/harness"
)

// sink is a webhook receiver on loopback that fails its first few
// deliveries and records the indexes it accepts.
type sink struct {
	mu       sync.Mutex
	failures int
	got      []float64
}

func (s *sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failures > 0 {
		s.failures--
		http.Error(w, "try later", 500)
		return
	}
	var body struct {
		Events []map[string]any `json:"events"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		http.Error(w, "bad body", 400)
		return
	}
	for _, e := range body.Events {
		s.got = append(s.got, e["index"].(float64))
	}
}

func (s *sink) indexes() []float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]float64(nil), s.got...)
}

// TestAuditWebhook delivers every event, in order, through failures and a
// restart: nothing skipped (duplicates after a lost acknowledgement are
// allowed by at-least-once).
func TestAuditWebhook(t *testing.T) {
	rcv := &sink{failures: 2}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: rcv}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	n := harness.Start(t, harness.Options{NodeID: "webhook"})
	harness.ExpectStatus(t, harness.JSON(t, "PUT", n.Admin("/audit/webhook"),
		map[string]any{"url": "http://" + ln.Addr().String() + "/events", "batch_size": 3}), 200)
	want := map[float64]bool{}
	write := func(name string) {
		r := harness.JSON(t, "POST", n.Admin("/consumers"), map[string]any{"username": name})
		harness.ExpectStatus(t, r, 201)
		i, _ := strconv.ParseFloat(r.Header.Get("X-Gatehouse-Config-Index"), 64)
		want[i] = true
	}
	for i := 0; i < 5; i++ {
		write("w" + strconv.Itoa(i))
	}
	delivered := func() bool {
		seen := map[float64]bool{}
		for _, i := range rcv.indexes() {
			seen[i] = true
		}
		for i := range want {
			if !seen[i] {
				return false
			}
		}
		return true
	}
	harness.Eventually(t, 20*time.Second, 100*time.Millisecond, "first writes delivered", func() (bool, string) {
		return delivered(), "waiting"
	})

	n.Restart(t)
	for i := 5; i < 8; i++ {
		write("w" + strconv.Itoa(i))
	}
	harness.Eventually(t, 20*time.Second, 100*time.Millisecond, "writes after the restart delivered", func() (bool, string) {
		return delivered(), "waiting"
	})
	// In order: the sequence never goes back except to resend a batch.
	got := rcv.indexes()
	for i := 1; i < len(got); i++ {
		if got[i] <= got[i-1] && !resend(got, i) {
			t.Fatalf("out of order at %d: %v", i, got)
		}
	}
}

// resend reports whether got[i:] restarts an earlier run (a batch sent
// again after its acknowledgement was lost), which at-least-once allows.
func resend(got []float64, i int) bool {
	for j := 0; j < i; j++ {
		if got[j] == got[i] {
			return true
		}
	}
	return false
}

// TestAuditReplay re-sends a range of the history (by index and by time)
// to a receiver that fails at first, through the API and the CLI: every
// event of the range arrives once the receiver is up, in order, and
// nothing outside the range.
func TestAuditReplay(t *testing.T) {
	rcv := &sink{failures: 2}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: rcv}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	n := harness.Start(t, harness.Options{NodeID: "replay"})
	var idx []float64
	for i := 0; i < 12; i++ {
		r := harness.JSON(t, "POST", n.Admin("/consumers"), map[string]any{"username": "r" + strconv.Itoa(i)})
		harness.ExpectStatus(t, r, 201)
		idx = append(idx, float64(r.ConfigIndex(t)))
	}
	since, until := idx[2], idx[9]
	r := harness.JSON(t, "POST", n.Admin("/audit/replay"), map[string]any{
		"since": since, "until": strconv.FormatFloat(until, 'f', 0, 64),
		"destination": "http://" + ln.Addr().String() + "/replay", "batch_size": 3})
	harness.ExpectStatus(t, r, 201)
	id, _ := r.JSON(t)["id"].(string)
	harness.Eventually(t, 20*time.Second, 50*time.Millisecond, "replay done", func() (bool, string) {
		j := harness.Get(t, n.Admin("/audit/replay/"+id))
		return j.JSON(t)["status"] == "done", j.Text()
	})
	got := rcv.indexes()
	if len(got) != 8 {
		t.Fatalf("replayed %v, want the 8 events %v..%v", got, since, until)
	}
	for i, v := range got {
		if v != idx[2+i] {
			t.Fatalf("replayed %v, want %v", got, idx[2:10])
		}
	}
	harness.ExpectStatus(t, harness.JSON(t, "POST", n.Admin("/audit/replay"),
		map[string]any{"destination": "ftp://x"}), 400)
	harness.ExpectStatus(t, harness.JSON(t, "POST", n.Admin("/audit/replay"),
		map[string]any{"since": 9, "until": 3, "destination": "http://127.0.0.1:1/"}), 400)

	// The CLI, with --wait, by time.
	rcv.mu.Lock()
	rcv.got = nil
	rcv.mu.Unlock()
	out, err := exec.Command(harness.Binary(t), "audit", "replay", "--admin", n.AdminURL, "--wait",
		"--since", strconv.FormatFloat(idx[10], 'f', 0, 64),
		"--destination", "http://"+ln.Addr().String()+"/cli").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "done") {
		t.Fatalf("audit replay: %v\n%s", err, out)
	}
	if got := rcv.indexes(); len(got) < 2 || got[0] != idx[10] || got[1] != idx[11] {
		t.Errorf("CLI replay delivered %v, want to start with %v %v", got, idx[10], idx[11])
	}
}
