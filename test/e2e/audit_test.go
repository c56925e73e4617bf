package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/test/echo"
	"github.com/gatehouse-gw/gatehouse/test/harness"
)

// TestAuditEvents reads the history through GET /audit/events (filters,
// pagination, one event by index) and through `gatehouse audit events`.
func TestAuditEvents(t *testing.T) {
	n := harness.Start(t, harness.Options{NodeID: "audit"})
	a := admin{n}
	start := time.Now().UTC()
	svc := a.create(t, "/services", map[string]any{"name": "audited", "host": "a.test"})
	for i := 0; i < 5; i++ {
		a.create(t, "/consumers", map[string]any{"username": "u" + strconv.Itoa(i)})
	}
	// A write refused before the log (a duplicate username) leaves no
	// event: the history holds what was appended.
	harness.ExpectStatus(t, harness.JSON(t, "POST", n.Admin("/consumers"), map[string]any{"username": "u0"}), 409)
	a.del(t, "/services/audited", true)

	get := func(q url.Values) []map[string]any {
		r := harness.Get(t, n.Admin("/audit/events?"+q.Encode()))
		harness.ExpectStatus(t, r, 200)
		return r.Data(t)
	}
	all := get(url.Values{"entity_type": {"consumers"}})
	if len(all) != 5 {
		t.Fatalf("consumer events: %d, want 5", len(all))
	}
	for _, e := range all {
		if e["op"] != "create" || e["outcome"] != "applied" || e["actor"] != "anonymous" || e["request_id"] == "" {
			t.Errorf("unexpected event %v", e)
		}
	}
	dels := get(url.Values{"op": {"delete"}, "entity_type": {"services"}})
	if len(dels) != 1 || dels[0]["entity_id"] != svc["id"] {
		t.Fatalf("service delete event: %v", dels)
	}
	// Time filters.
	if got := get(url.Values{"since": {start.Format(time.RFC3339Nano)}, "entity_type": {"consumers"}}); len(got) != 5 {
		t.Errorf("since=%s: %d consumer events", start.Format(time.RFC3339Nano), len(got))
	}
	if got := get(url.Values{"until": {start.Add(-time.Hour).Format(time.RFC3339)}, "entity_type": {"consumers"}}); len(got) != 0 {
		t.Errorf("until an hour ago: %d events", len(got))
	}

	// Pagination walks every consumer event exactly once.
	seen := map[float64]bool{}
	path := "/audit/events?entity_type=consumers&size=2"
	for page := 0; path != "" && page < 10; page++ {
		r := harness.Get(t, n.Admin(path))
		harness.ExpectStatus(t, r, 200)
		for _, e := range r.Data(t) {
			seen[e["index"].(float64)] = true
		}
		path = ""
		if next, ok := r.JSON(t)["next"].(string); ok {
			path = next
		}
	}
	if len(seen) != 5 {
		t.Fatalf("pages held %d distinct events, want 5", len(seen))
	}

	// One event by index.
	idx := strconv.Itoa(int(dels[0]["index"].(float64)))
	one := harness.Get(t, n.Admin("/audit/events/"+idx))
	harness.ExpectStatus(t, one, 200)
	if one.JSON(t)["op"] != "delete" {
		t.Fatalf("event %s: %s", idx, one.Text())
	}
	harness.ExpectStatus(t, harness.Get(t, n.Admin("/audit/events/999999")), 404)

	// The CLI prints the same events as JSON lines.
	out, err := exec.Command(harness.Binary(t), "audit", "events", "--admin", n.AdminURL, "--entity-type", "consumers").Output()
	if err != nil {
		t.Fatalf("gatehouse audit events: %v", err)
	}
	lines := 0
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var e map[string]any
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil || e["entity_type"] != "consumers" {
			t.Fatalf("bad line %q", sc.Text())
		}
		lines++
	}
	if lines != 5 {
		t.Fatalf("CLI printed %d events, want 5", lines)
	}
}

// TestAuditExportVerifies exports the history with the CLI, verifies it
// against the node's JWKS, and shows that editing, removing or reordering
// a line is caught at the right index.
func TestAuditExportVerifies(t *testing.T) {
	n := harness.Start(t, harness.Options{NodeID: "verify"})
	a := admin{n}
	for i := 0; i < 4; i++ {
		a.create(t, "/consumers", map[string]any{"username": "v" + strconv.Itoa(i)})
	}
	dir := t.TempDir()
	file := dir + "/export.jsonl"
	run := func(args ...string) (string, error) {
		out, err := exec.Command(harness.Binary(t), args...).CombinedOutput()
		return string(out), err
	}
	if out, err := run("audit", "export", "--admin", n.AdminURL, "--out", file); err != nil {
		t.Fatalf("export: %v\n%s", err, out)
	}
	jwks := harness.Get(t, n.Admin("/audit/jwks.json"))
	harness.ExpectStatus(t, jwks, 200)
	out, err := run("audit", "verify", "--admin", n.AdminURL, file)
	if err != nil || !bytes.Contains([]byte(out), []byte("verified")) {
		t.Fatalf("a genuine export must verify: %v\n%s", err, out)
	}

	lines := bytes.Split(bytes.TrimSpace(mustRead(t, file)), []byte("\n"))
	if len(lines) < 5 {
		t.Fatalf("export has %d lines", len(lines))
	}
	indexOf := func(line []byte) string {
		var r struct {
			Index uint64 `json:"index"`
		}
		json.Unmarshal(line, &r)
		return strconv.FormatUint(r.Index, 10)
	}
	tampered := func(name string, mutate func([][]byte) [][]byte, badIndex string) {
		t.Helper()
		copyLines := make([][]byte, len(lines))
		copy(copyLines, lines)
		path := dir + "/" + name + ".jsonl"
		writeFile(t, path, bytes.Join(mutate(copyLines), []byte("\n")))
		out, err := run("audit", "verify", "--admin", n.AdminURL, path)
		if err == nil || !bytes.Contains([]byte(out), []byte("first bad index "+badIndex)) {
			t.Errorf("%s: want failure at index %s, got err=%v\n%s", name, badIndex, err, out)
		}
	}
	tampered("edited", func(l [][]byte) [][]byte {
		l[2] = bytes.Replace(l[2], []byte(`"actor":"anonymous"`), []byte(`"actor":"someone-else"`), 1)
		return l
	}, indexOf(lines[2]))
	tampered("removed", func(l [][]byte) [][]byte { return append(l[:2:2], l[3:]...) }, indexOf(lines[3]))
	tampered("reordered", func(l [][]byte) [][]byte { l[2], l[3] = l[3], l[2]; return l }, indexOf(lines[3]))
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestTimeTravel reads the configuration as it was at past log indexes and
// times with ?at=, while the live configuration moves on.
func TestTimeTravel(t *testing.T) {
	n := harness.Start(t, harness.Options{NodeID: "time-travel"})
	idx := func(r *harness.Response) string { return r.Header.Get("X-Gatehouse-Config-Index") }
	created := harness.JSON(t, "POST", n.Admin("/services"), map[string]any{"name": "tt", "host": "a.test", "retries": 5})
	harness.ExpectStatus(t, created, 201)
	time.Sleep(20 * time.Millisecond)
	between := time.Now().UTC().Format(time.RFC3339Nano)
	time.Sleep(20 * time.Millisecond)
	patched := harness.JSON(t, "PATCH", n.Admin("/services/tt"), map[string]any{"retries": 9})
	harness.ExpectStatus(t, patched, 200)
	deleted := harness.Method(t, "DELETE", n.Admin("/services/tt"))
	harness.ExpectStatus(t, deleted, 204)

	retries := func(at string) (int, float64) {
		r := harness.Get(t, n.Admin("/services/tt?at="+url.QueryEscape(at)))
		if r.Status != 200 {
			return r.Status, 0
		}
		if r.Header.Get("X-Gatehouse-Config-Index") == "" {
			t.Errorf("no config index on a time-travel read")
		}
		v, _ := r.JSON(t)["retries"].(float64)
		return 200, v
	}
	if st, v := retries(idx(created)); st != 200 || v != 5 {
		t.Errorf("at creation: %d retries=%v, want 200 5", st, v)
	}
	if st, v := retries(between); st != 200 || v != 5 {
		t.Errorf("at %s: %d retries=%v, want 200 5", between, st, v)
	}
	if st, v := retries(idx(patched)); st != 200 || v != 9 {
		t.Errorf("after the patch: %d retries=%v, want 200 9", st, v)
	}
	if st, _ := retries(idx(deleted)); st != 404 {
		t.Errorf("after the delete: %d, want 404", st)
	}
	if r := harness.Get(t, n.Admin("/services/tt")); r.Status != 404 {
		t.Errorf("live read: %d, want 404", r.Status)
	}
	list := harness.Get(t, n.Admin("/services?at="+idx(patched)))
	if d := list.Data(t); len(d) != 1 || d[0]["name"] != "tt" {
		t.Errorf("list at the patch: %v", d)
	}
	harness.ExpectStatus(t, harness.Get(t, n.Admin("/services?at=99999999")), 400)
}

// TestPointInTimeRestore changes the configuration, restores it to an
// earlier index with one new event, and checks entities (with their ids)
// and proxying are back, and that the restore is itself in the history.
func TestPointInTimeRestore(t *testing.T) {
	n := harness.Start(t, harness.Options{NodeID: "restore"})
	up := echo.StartT(t, "restore-echo")
	a := admin{n}
	svc := a.create(t, "/services", map[string]any{"name": "keep", "url": up.URL, "retries": 3})
	a.create(t, "/services/keep/routes", map[string]any{"name": "keep-route", "paths": []any{"/keep"}})
	a.create(t, "/consumers", map[string]any{"username": "alice"})
	mark := harness.Get(t, n.Admin("/services")).Header.Get("X-Gatehouse-Config-Index")

	// Damage: delete the route, change the service, add a stray consumer.
	a.del(t, "/routes/keep-route", true)
	harness.ExpectStatus(t, harness.JSON(t, "PATCH", n.Admin("/services/keep"), map[string]any{"retries": 9}), 200)
	a.create(t, "/consumers", map[string]any{"username": "mallory"})
	harness.ExpectStatus(t, harness.Get(t, n.ProxyURL+"/keep/anything"), 404)

	r := harness.JSON(t, "POST", n.Admin("/audit/restore"), map[string]any{"at": mark})
	harness.ExpectStatus(t, r, 200)
	restoredAt := r.Header.Get("X-Gatehouse-Config-Index")

	got := harness.Get(t, n.Admin("/services/keep"))
	harness.ExpectStatus(t, got, 200)
	if got.JSON(t)["id"] != svc["id"] || got.JSON(t)["retries"] != 3.0 {
		t.Errorf("service after restore: %s", got.Text())
	}
	harness.ExpectStatus(t, harness.Get(t, n.Admin("/routes/keep-route")), 200)
	harness.ExpectStatus(t, harness.Get(t, n.Admin("/consumers/alice")), 200)
	harness.ExpectStatus(t, harness.Get(t, n.Admin("/consumers/mallory")), 404)
	harness.Eventually(t, 5*time.Second, 50*time.Millisecond, "route proxies again", func() (bool, string) {
		p := harness.Get(t, n.ProxyURL+"/keep/anything")
		return p.Status == 200, p.String()
	})
	// The restore is one audited event.
	ev := harness.Get(t, n.Admin("/audit/events/"+restoredAt))
	harness.ExpectStatus(t, ev, 200)
	if ev.JSON(t)["op"] != "restore" || ev.JSON(t)["entity_id"] != mark {
		t.Errorf("restore event: %s", ev.Text())
	}
	// And undoable (here with the CLI): restoring to just before it brings
	// the damage back.
	before, _ := strconv.Atoi(restoredAt)
	if out, err := exec.Command(harness.Binary(t), "restore", "--admin", n.AdminURL, "--to", strconv.Itoa(before-1)).CombinedOutput(); err != nil {
		t.Fatalf("gatehouse restore --to: %v\n%s", err, out)
	}
	harness.ExpectStatus(t, harness.Get(t, n.Admin("/consumers/mallory")), 200)
}

// TestBackupAndRestoreIntoFreshNode backs a node up with the CLI (as of a
// past index), restores the file into a brand-new node, and checks the
// configuration, the proxy and the history came across.
func TestBackupAndRestoreIntoFreshNode(t *testing.T) {
	up := echo.StartT(t, "backup-echo")
	src := harness.Start(t, harness.Options{NodeID: "backup-src"})
	a := admin{src}
	svc := a.create(t, "/services", map[string]any{"name": "saved", "url": up.URL})
	a.create(t, "/services/saved/routes", map[string]any{"paths": []any{"/saved"}})
	mark := harness.Get(t, src.Admin("/services")).Header.Get("X-Gatehouse-Config-Index")
	a.create(t, "/consumers", map[string]any{"username": "after-the-backup-point"})

	file := t.TempDir() + "/gatehouse.backup"
	if out, err := exec.Command(harness.Binary(t), "backup", "--admin", src.AdminURL, "--at", mark, "--out", file).CombinedOutput(); err != nil {
		t.Fatalf("backup: %v\n%s", err, out)
	}

	dst := harness.Start(t, harness.Options{NodeID: "backup-dst"})
	// Bad files are refused and change nothing.
	good := mustRead(t, file)
	altered := append([]byte(nil), good...)
	altered[len(altered)/2] ^= 0xff
	for name, b := range map[string][]byte{"truncated": good[:len(good)-100], "altered": altered} {
		bad := t.TempDir() + "/" + name
		writeFile(t, bad, b)
		out, err := exec.Command(harness.Binary(t), "restore", "--admin", dst.AdminURL, bad).CombinedOutput()
		if err == nil || !bytes.Contains(out, []byte("refusing to restore")) {
			t.Errorf("%s backup: want a refusal, got err=%v\n%s", name, err, out)
		}
	}
	harness.ExpectStatus(t, harness.Get(t, dst.Admin("/services/saved")), 404)
	if out, err := exec.Command(harness.Binary(t), "restore", "--admin", dst.AdminURL, file).CombinedOutput(); err != nil {
		t.Fatalf("restore: %v\n%s", err, out)
	}
	got := harness.Get(t, dst.Admin("/services/saved"))
	harness.ExpectStatus(t, got, 200)
	if got.JSON(t)["id"] != svc["id"] {
		t.Errorf("restored service id %v, want %v", got.JSON(t)["id"], svc["id"])
	}
	harness.ExpectStatus(t, harness.Get(t, dst.Admin("/consumers/after-the-backup-point")), 404)
	harness.Eventually(t, 5*time.Second, 50*time.Millisecond, "restored route proxies", func() (bool, string) {
		p := harness.Get(t, dst.ProxyURL+"/saved/anything")
		return p.Status == 200, p.String()
	})
	// The history came with it: the source's service creation is there.
	found := false
	for _, e := range harness.Get(t, dst.Admin("/audit/events?entity_type=services&op=create")).Data(t) {
		found = found || e["entity_id"] == svc["id"]
	}
	if !found {
		t.Error("the restored node's history lacks the source's events")
	}
}

// TestSecretsNeverInAuditViews creates key-auth credentials every way a
// key can be given (body, URL key of a PUT) and looks for the keys in the
// audit API and an export.
func TestSecretsNeverInAuditViews(t *testing.T) {
	n := harness.Start(t, harness.Options{NodeID: "secrets"})
	a := admin{n}
	a.create(t, "/consumers", map[string]any{"username": "holder"})
	const inBody, inURL = "sekret-in-the-body-0123456789", "sekret-in-the-url-0123456789"
	harness.ExpectStatus(t, harness.JSON(t, "POST", n.Admin("/consumers/holder/key-auth"), map[string]any{"key": inBody}), 201)
	harness.ExpectStatus(t, harness.JSON(t, "PUT", n.Admin("/consumers/holder/key-auth/"+inURL), map[string]any{}), 200)
	harness.ExpectStatus(t, harness.Method(t, "DELETE", n.Admin("/key-auths/"+inBody)), 204)
	// Racing creates of one key: the losers that got past the admin's
	// check are rejected by the fold, whose unique-violation message
	// names the key; the history must not.
	const raced = "sekret-raced-0123456789"
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			harness.Try(harness.Request{Method: "POST", URL: n.Admin("/consumers/holder/key-auth"),
				ContentType: "application/json", Body: []byte(`{"key":"` + raced + `"}`)})
		}()
	}
	wg.Wait()
	// A denied or failed lookup by key leaves no trace of it either.
	harness.Get(t, n.Admin("/key-auths/"+inURL+"-not-there"))

	views := harness.Get(t, n.Admin("/audit/events?size=1000")).Text()
	file := t.TempDir() + "/export.jsonl"
	if out, err := exec.Command(harness.Binary(t), "audit", "export", "--admin", n.AdminURL, "--out", file).CombinedOutput(); err != nil {
		t.Fatalf("export: %v\n%s", err, out)
	}
	export := string(mustRead(t, file))
	// The history still tells that the deleted key is the one created:
	// both events carry the same HMAC of it.
	var created, deleted string
	for _, e := range harness.Get(t, n.Admin("/audit/events?entity_type=keyauth_credentials")).Data(t) {
		cs, _ := e["changes"].([]any)
		for _, c := range cs {
			cm := c.(map[string]any)
			if a, ok := cm["after"].(map[string]any); ok && cm["op"] == "created" && created == "" {
				created, _ = a["key"].(string)
			}
			if b, ok := cm["before"].(map[string]any); ok && cm["op"] == "deleted" {
				deleted, _ = b["key"].(string)
			}
		}
	}
	if !strings.HasPrefix(created, "hmac-sha256:") || created != deleted {
		t.Errorf("key in the recorded changes: created %q, deleted %q", created, deleted)
	}
	for _, secret := range []string{inBody, inURL, raced} {
		if bytes.Contains([]byte(views), []byte(secret)) || bytes.Contains([]byte(export), []byte(secret)) {
			t.Errorf("key %q appears in clear in the audit views or export", secret)
		}
	}
}

// TestConfigAtAndDiff runs a scripted sequence of creates, updates and
// deletes across entity types, records GET /config after each step, and
// checks that GET /config?at= (by index and by time) gives back exactly
// what was recorded, that /audit/diff lists what changed between two
// steps, and that the CLI shows the same.
func TestConfigAtAndDiff(t *testing.T) {
	n := harness.Start(t, harness.Options{NodeID: "config-at"})
	a := admin{n}
	type mark struct {
		index, time string
		config      string
	}
	var marks []mark
	record := func() {
		r := harness.Get(t, n.Admin("/config"))
		harness.ExpectStatus(t, r, 200)
		time.Sleep(15 * time.Millisecond)
		marks = append(marks, mark{index: r.Header.Get("X-Gatehouse-Config-Index"),
			time: time.Now().UTC().Format(time.RFC3339Nano), config: r.Text()})
		time.Sleep(15 * time.Millisecond)
	}
	record() // empty
	svc := a.create(t, "/services", map[string]any{"name": "billing", "url": "http://billing.test:8080/v1"})
	a.create(t, "/services/billing/routes", map[string]any{"name": "billing-route", "paths": []any{"/billing"}})
	a.create(t, "/consumers", map[string]any{"username": "ann"})
	harness.ExpectStatus(t, harness.JSON(t, "POST", n.Admin("/consumers/ann/key-auth"), map[string]any{"key": "ann-key-0123456789"}), 201)
	a.create(t, "/upstreams", map[string]any{"name": "pool"})
	a.create(t, "/upstreams/pool/targets", map[string]any{"target": "10.0.0.1:80"})
	a.create(t, "/services/billing/plugins", map[string]any{"name": "rate-limiting", "config": map[string]any{"minute": 10}})
	record()
	harness.ExpectStatus(t, harness.JSON(t, "PATCH", n.Admin("/services/billing"), map[string]any{"retries": 9}), 200)
	a.del(t, "/routes/billing-route", true)
	a.create(t, "/plugins", map[string]any{"name": "key-auth"})
	record()
	a.del(t, "/consumers/ann", true)
	a.create(t, "/services", map[string]any{"name": "late", "host": "late.test"})
	record()

	for i, m := range marks {
		for _, at := range []string{m.index, m.time} {
			r := harness.Get(t, n.Admin("/config?at="+url.QueryEscape(at)))
			harness.ExpectStatus(t, r, 200)
			if r.Text() != m.config {
				t.Errorf("step %d: /config?at=%s\n got %s\nwant %s", i, at, r.Text(), m.config)
			}
		}
	}
	// The document is Kong's declarative shape.
	doc := harness.Get(t, n.Admin("/config?at="+marks[1].index)).JSON(t)
	services, _ := doc["services"].([]any)
	if doc["_format_version"] != "3.0" || len(services) != 1 {
		t.Fatalf("declarative document: %v", doc)
	}
	s0 := services[0].(map[string]any)
	if s0["id"] != svc["id"] || len(s0["routes"].([]any)) != 1 || len(s0["plugins"].([]any)) != 1 {
		t.Errorf("service with nested routes and plugins: %v", s0)
	}

	diff := harness.Get(t, n.Admin("/audit/diff?from="+marks[1].index+"&to="+marks[2].index))
	harness.ExpectStatus(t, diff, 200)
	got := map[string]string{}
	for _, c := range diff.JSON(t)["changes"].([]any) {
		cm := c.(map[string]any)
		got[cm["entity_type"].(string)+"/"+cm["op"].(string)] = fmt.Sprint(cm["fields"])
	}
	want := map[string]string{"services/updated": "[retries]", "routes/deleted": "<nil>", "plugins/created": "<nil>"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("diff: got %v, want %v", got, want)
	}
	// A deleted consumer's credential shows as an HMAC in the diff.
	d3 := harness.Get(t, n.Admin("/audit/diff?from="+marks[2].index+"&to="+marks[3].index)).Text()
	if strings.Contains(d3, "ann-key-0123456789") || !strings.Contains(d3, "hmac-sha256:") {
		t.Errorf("diff with a deleted credential: %s", d3)
	}
	harness.ExpectStatus(t, harness.Get(t, n.Admin("/audit/diff")), 400)
	harness.ExpectStatus(t, harness.Get(t, n.Admin("/audit/diff?from=yesterday")), 400)

	out, err := exec.Command(harness.Binary(t), "history", "diff", "--admin", n.AdminURL,
		"--from", marks[1].index, "--to", marks[2].index).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "~ services "+svc["id"].(string)+" (billing)") ||
		!strings.Contains(string(out), "retries: 5 -> 9") {
		t.Errorf("history diff: %v\n%s", err, out)
	}
	out, err = exec.Command(harness.Binary(t), "history", "show", "--admin", n.AdminURL, "--at", marks[1].time).CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"billing-route"`) {
		t.Errorf("history show: %v\n%s", err, out)
	}
}
