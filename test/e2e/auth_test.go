package e2e

import (
	"encoding/json"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/test/harness"
)

// authed sends a JSON request with an admin token in the given header.
func authed(t *testing.T, method, url, header, token string, body any) *harness.Response {
	t.Helper()
	var b []byte
	if body != nil {
		b, _ = json.Marshal(body)
	}
	h := http.Header{}
	if token != "" {
		if header == "Authorization" {
			h.Set(header, "Bearer "+token)
		} else {
			h.Set(header, token)
		}
	}
	return harness.Do(t, harness.Request{Method: method, URL: url, Header: h, Body: b, ContentType: "application/json"})
}

func TestAdminAuthentication(t *testing.T) {
	const root = "root-token-for-tests"
	n := harness.Start(t, harness.Options{NodeID: "auth", Args: []string{"--admin-auth", "on"},
		Env: []string{"GATEHOUSE_ADMIN_TOKEN=" + root}})
	as := func(token string) func(method, path string, body any) *harness.Response {
		return func(method, path string, body any) *harness.Response {
			return authed(t, method, n.Admin(path), "Kong-Admin-Token", token, body)
		}
	}
	rootDo := as(root)

	// No token, a wrong token: 401, and nothing reaches the log.
	r := notAppended(t, n, root, func() *harness.Response { return as("")("POST", "/services", map[string]any{"host": "x.test"}) })
	harness.CheckMessage(t, r, 401, "Unauthorized: an admin token is required (Kong-Admin-Token or Authorization: Bearer)")
	r = notAppended(t, n, root, func() *harness.Response { return as("wrong")("POST", "/services", map[string]any{"host": "x.test"}) })
	harness.CheckMessage(t, r, 401, "Invalid credentials. Token or User credentials required")

	// The bootstrap token works in both header styles.
	harness.ExpectStatus(t, authed(t, "GET", n.Admin("/"), "Authorization", root, nil), 200)
	harness.ExpectStatus(t, rootDo("GET", "/", nil), 200)

	// The first super-admin is created once the node leads; token hashes
	// are never shown.
	harness.Eventually(t, 10*time.Second, 100*time.Millisecond, "bootstrap admin", func() (bool, string) {
		r := rootDo("GET", "/rbac/admins/admin", nil)
		return r.Status == 200, r.String()
	})
	list := rootDo("GET", "/rbac/admins", nil)
	if strings.Contains(list.Text(), "token_hash") || strings.Contains(list.Text(), `"token"`) {
		t.Fatalf("admin listing exposes token material: %s", list.Text())
	}

	// A read-only admin reads but cannot write; the 403 names the
	// missing permission.
	ro := rootDo("POST", "/rbac/admins", map[string]any{"username": "viewer", "roles": []any{"read-only"}})
	harness.ExpectStatus(t, ro, 201)
	viewerToken := harness.Str(ro.JSON(t), "token")
	if len(viewerToken) < 20 {
		t.Fatalf("no token in the creation response: %s", ro.Text())
	}
	viewer := as(viewerToken)
	harness.ExpectStatus(t, viewer("GET", "/services", nil), 200)
	r = viewer("POST", "/services", map[string]any{"name": "denied-svc", "host": "x.test"})
	harness.CheckMessage(t, r, 403, "Forbidden: missing permission 'services:create'")
	harness.ExpectStatus(t, rootDo("GET", "/services/denied-svc", nil), 404)
	// The refusal itself is history, with who asked.
	harness.Eventually(t, 10*time.Second, 100*time.Millisecond, "denial in the history", func() (bool, string) {
		ev := rootDo("GET", "/audit/events?size=1000", nil)
		for _, e := range ev.Data(t) {
			if e["outcome"] == "denied" && e["actor"] == "viewer" && e["op"] == "create" && e["entity_type"] == "services" {
				return true, ""
			}
		}
		return false, ev.Text()
	})
	harness.ExpectStatus(t, viewer("GET", "/rbac/admins", nil), 403)

	// An operator changes configuration but not credentials.
	op := rootDo("POST", "/rbac/admins", map[string]any{"username": "ops", "roles": []any{"operator"}})
	harness.ExpectStatus(t, op, 201)
	opToken := harness.Str(op.JSON(t), "token")
	harness.ExpectStatus(t, as(opToken)("POST", "/consumers", map[string]any{"username": "c1"}), 201)
	harness.CheckMessage(t, as(opToken)("POST", "/consumers/c1/key-auth", map[string]any{"key": "k"}), 403,
		"Forbidden: missing permission 'credentials:create'")

	// Custom roles and teams: an admin gets the roles of its teams; a
	// deny rule wins over every allow.
	harness.ExpectStatus(t, rootDo("POST", "/rbac/roles", map[string]any{"name": "svc-writer", "permissions": []any{
		map[string]any{"entity": "services", "op": "*"},
		map[string]any{"effect": "deny", "entity": "services", "op": "delete"},
	}}), 201)
	harness.ExpectStatus(t, rootDo("POST", "/rbac/teams", map[string]any{"name": "platform",
		"roles": []any{"svc-writer", "read-only"}}), 201)
	dev := rootDo("POST", "/rbac/admins", map[string]any{"username": "dev", "teams": []any{"platform"}})
	harness.ExpectStatus(t, dev, 201)
	devDo := as(harness.Str(dev.JSON(t), "token"))
	harness.ExpectStatus(t, devDo("POST", "/services", map[string]any{"name": "team-svc", "host": "t.test"}), 201)
	harness.ExpectStatus(t, devDo("GET", "/consumers", nil), 200)
	harness.CheckMessage(t, devDo("DELETE", "/services/team-svc", nil), 403, "Forbidden: missing permission 'services:delete'")
	harness.CheckMessage(t, devDo("POST", "/consumers", map[string]any{"username": "c2"}), 403,
		"Forbidden: missing permission 'consumers:create'")
	// Leaving the team takes its roles away.
	harness.ExpectStatus(t, rootDo("PATCH", "/rbac/admins/dev", map[string]any{"teams": []any{}}), 200)
	harness.ExpectStatus(t, devDo("GET", "/consumers", nil), 403)

	// A rule narrowed to tags covers only entities carrying one of them.
	harness.ExpectStatus(t, rootDo("POST", "/rbac/roles", map[string]any{"name": "team-a-routes", "permissions": []any{
		map[string]any{"entity": "services", "op": "*", "tags": []any{"team-a"}},
	}}), 201)
	ta := rootDo("POST", "/rbac/admins", map[string]any{"username": "team-a-dev", "roles": []any{"team-a-routes"}})
	harness.ExpectStatus(t, ta, 201)
	taDo := as(harness.Str(ta.JSON(t), "token"))
	harness.ExpectStatus(t, taDo("POST", "/services", map[string]any{"name": "a-svc", "host": "a.test", "tags": []any{"team-a"}}), 201)
	harness.ExpectStatus(t, rootDo("POST", "/services", map[string]any{"name": "b-svc", "host": "b.test", "tags": []any{"team-b"}}), 201)
	harness.ExpectStatus(t, taDo("POST", "/services", map[string]any{"name": "untagged", "host": "u.test"}), 403)
	harness.ExpectStatus(t, taDo("GET", "/services/a-svc", nil), 200)
	harness.ExpectStatus(t, taDo("GET", "/services/b-svc", nil), 403)
	harness.ExpectStatus(t, taDo("PATCH", "/services/b-svc", map[string]any{"retries": 1}), 403)
	// Retagging an entity out of the team's reach is refused too.
	harness.ExpectStatus(t, taDo("PATCH", "/services/a-svc", map[string]any{"tags": []any{"team-b"}}), 403)
	harness.ExpectStatus(t, taDo("PATCH", "/services/a-svc", map[string]any{"retries": 2}), 200)
	listed := taDo("GET", "/services", nil)
	harness.ExpectStatus(t, listed, 200)
	for _, svc := range listed.Data(t) {
		if svc["name"] != "a-svc" {
			t.Errorf("tag-scoped list shows %v", svc["name"])
		}
	}

	// The CLI drives the same endpoints.
	cli := exec.Command(harness.Binary(t), "admin", "create", "--role", "read-only", "--admin", n.AdminURL, "cli-made")
	cli.Env = append(cli.Environ(), "GATEHOUSE_TOKEN="+root)
	out, err := cli.Output()
	if err != nil {
		t.Fatalf("gatehouse admin create: %v", err)
	}
	var made map[string]any
	if json.Unmarshal(out, &made) != nil || made["token"] == nil {
		t.Fatalf("gatehouse admin create printed no token: %s", out)
	}
	harness.ExpectStatus(t, as(made["token"].(string))("GET", "/services", nil), 200)

	// Rotating a token retires the old one at once.
	rot := rootDo("POST", "/rbac/admins/ops/token", nil)
	harness.ExpectStatus(t, rot, 200)
	newToken := harness.Str(rot.JSON(t), "token")
	harness.ExpectStatus(t, as(opToken)("GET", "/services", nil), 401)
	harness.ExpectStatus(t, as(newToken)("GET", "/services", nil), 200)
}

// An admin API reachable from the network must not run unauthenticated
// by accident.
func TestOpenAdminRefusedWithoutAcknowledgement(t *testing.T) {
	ports, err := harness.FreePorts(4)
	if err != nil {
		t.Fatal(err)
	}
	addr := func(i int) string { return "127.0.0.1:" + strconv.Itoa(ports[i]) }
	cmd := exec.Command(harness.Binary(t), "run", "--data-dir", t.TempDir(), "--node-id", "open",
		"--admin-listen", "0.0.0.0:"+strconv.Itoa(ports[0]), "--admin-auth", "off",
		"--proxy-listen", addr(1), "--status-listen", addr(2), "--cluster-listen", addr(3))
	done := make(chan struct{})
	var out []byte
	go func() { out, _ = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatal("gatehouse started with an open admin API")
	}
	if cmd.ProcessState.Success() || !strings.Contains(string(out), "refusing to start") {
		t.Fatalf("want a refusal, got exit %v: %s", cmd.ProcessState, out)
	}
}

// notAppended is harness.NotAppended for a node that requires a token: the
// config index is read with the root token before and after do.
func notAppended(t *testing.T, n *harness.Node, root string, do func() *harness.Response) *harness.Response {
	t.Helper()
	index := func() string {
		r := authed(t, "GET", n.Admin("/"), "Kong-Admin-Token", root, nil)
		return r.Header.Get("X-Gatehouse-Config-Index")
	}
	before := index()
	r := do()
	if r.Status < 400 {
		t.Errorf("expected a failing request, got: %s", r)
	}
	if after := index(); after != before || before == "" {
		t.Errorf("config index moved from %q to %q after a rejected request: %s", before, after, r)
	}
	return r
}

// TestPredefinedRoles checks every predefined role against one request per
// endpoint family: allowed requests succeed, denied ones get 403 and are
// recorded in the history with the actor.
func TestPredefinedRoles(t *testing.T) {
	const root = "roles-root-token"
	n := harness.Start(t, harness.Options{NodeID: "roles", Args: []string{"--admin-auth", "on"},
		Env: []string{"GATEHOUSE_ADMIN_TOKEN=" + root}})
	do := func(token, method, path string, body any) *harness.Response {
		return authed(t, method, n.Admin(path), "Kong-Admin-Token", token, body)
	}
	harness.ExpectStatus(t, do(root, "POST", "/consumers", map[string]any{"username": "owner"}), 201)

	type call struct {
		perm, method, path string
		body               func(role string) any
	}
	calls := []call{
		{"config:read", "GET", "/", nil},
		{"services:read", "GET", "/services", nil},
		{"services:create", "POST", "/services", func(role string) any { return map[string]any{"name": "s-" + role, "host": "x.test"} }},
		{"credentials:create", "POST", "/consumers/owner/key-auth", func(role string) any { return map[string]any{"key": "k-" + role} }},
		{"rbac:read", "GET", "/rbac/admins", nil},
		{"cluster:read", "GET", "/cluster", nil},
		{"audit:read", "GET", "/audit/events", nil},
	}
	allow := map[string][]string{
		"super-admin": {"config:read", "services:read", "services:create", "credentials:create", "rbac:read", "cluster:read", "audit:read"},
		"admin":       {"config:read", "services:read", "services:create", "credentials:create", "cluster:read", "audit:read"},
		"operator":    {"config:read", "services:read", "services:create", "cluster:read", "audit:read"},
		"read-only":   {"config:read", "services:read", "cluster:read", "audit:read"},
		"auditor":     {"config:read", "audit:read"},
	}
	for role, allowed := range allow {
		a := do(root, "POST", "/rbac/admins", map[string]any{"username": "as-" + role, "roles": []any{role}})
		harness.ExpectStatus(t, a, 201)
		token := harness.Str(a.JSON(t), "token")
		for _, c := range calls {
			var body any
			if c.body != nil {
				body = c.body(role)
			}
			r := do(token, c.method, c.path, body)
			want := false
			for _, p := range allowed {
				want = want || p == c.perm
			}
			if want && (r.Status < 200 || r.Status > 299) {
				t.Errorf("%s %s: %s %s -> %d, want 2xx", role, c.perm, c.method, c.path, r.Status)
			}
			if !want && r.Status != 403 {
				t.Errorf("%s %s: %s %s -> %d, want 403", role, c.perm, c.method, c.path, r.Status)
			}
		}
	}
	// Every denial is in the history with its actor.
	denied := map[string]bool{}
	harness.Eventually(t, 10*time.Second, 200*time.Millisecond, "denials recorded", func() (bool, string) {
		for _, e := range do(root, "GET", "/audit/events?size=1000", nil).Data(t) {
			if e["outcome"] == "denied" {
				denied[harness.Str(e, "actor")+" "+harness.Str(e, "entity_type")+":"+harness.Str(e, "op")] = true
			}
		}
		for role, allowed := range allow {
			for _, c := range calls {
				ok := false
				for _, p := range allowed {
					ok = ok || p == c.perm
				}
				if !ok && !denied["as-"+role+" "+c.perm] {
					return false, "missing denial of " + c.perm + " for " + role
				}
			}
		}
		return true, ""
	})
}
