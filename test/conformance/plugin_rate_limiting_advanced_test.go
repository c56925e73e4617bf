package conformance

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/test/echo"
	"github.com/gatehouse-gw/gatehouse/test/harness"
)

// TestRateLimitingAdvanced covers rate-limiting-advanced on one node (its
// schema errors in Kong's shape, windows and headers) and the schema of
// the cluster policy.
func TestRateLimitingAdvanced(t *testing.T) {
	n := harness.Start(t, harness.Options{NodeID: "conf-rla"})
	up := echo.StartT(t, "rla-echo")
	svc := service(t, n, up, nil)

	t.Run("schema violations change nothing", func(t *testing.T) {
		bad := []struct {
			config map[string]any
			field  string // where the message is
			want   string
		}{
			{map[string]any{"limit": []any{10, 100}, "window_size": []any{60}}, "@entity",
				"You must provide the same number of windows and limits"},
			{map[string]any{"limit": []any{10}}, "window_size", "required field missing"},
			{map[string]any{"limit": []any{10}, "window_size": []any{60}, "window_type": "rolling"}, "window_type", "expected one of"},
			{map[string]any{"limit": []any{10}, "window_size": []any{60}, "identifier": "header"}, "header_name", "required field missing"},
			{map[string]any{"limit": []any{10}, "window_size": []any{60}, "strategy": "redis"}, "strategy", "without Redis"},
			{map[string]any{"limit": []any{10}, "window_size": []any{60}, "strategy": "cluster", "sync_rate": 0.001}, "sync_rate", "at least 0.02"},
			{map[string]any{"limit": []any{-1}, "window_size": []any{60}}, "limit", "greater than"},
		}
		for _, b := range bad {
			r := harness.NotAppended(t, n, func() *harness.Response {
				return harness.JSON(t, http.MethodPost, n.Admin("/services/"+idOf(svc)+"/plugins"),
					map[string]any{"name": "rate-limiting-advanced", "config": b.config})
			})
			e := harness.CheckKongError(t, r, 400, 2, "schema violation", "")
			fields, _ := e["fields"].(map[string]any)
			config, _ := fields["config"].(map[string]any)
			if config[b.field] == nil || !strings.Contains(r.Text(), b.want) {
				t.Errorf("config %v: want %q at fields.%s: %s", b.config, b.want, b.field, r)
			}
		}
		// The rate-limiting plugin's cluster policy is checked the same way.
		r := harness.NotAppended(t, n, func() *harness.Response {
			return harness.JSON(t, http.MethodPost, n.Admin("/services/"+idOf(svc)+"/plugins"),
				map[string]any{"name": "rate-limiting", "config": map[string]any{"minute": 5, "policy": "cluster", "partition_behavior": "half"}})
		})
		harness.CheckKongError(t, r, 400, 2, "schema violation", "")
	})

	t.Run("defaults", func(t *testing.T) {
		rt := route(t, n, idOf(svc), map[string]any{"paths": []any{"/rla-defaults"}})
		p := create(t, n, "/routes/"+idOf(rt)+"/plugins", map[string]any{"name": "rate-limiting-advanced",
			"config": map[string]any{"limit": []any{5}, "window_size": []any{30}}})
		cfg, _ := p["config"].(map[string]any)
		checkFields(t, "rate-limiting-advanced config", cfg, map[string]any{
			"identifier": "consumer", "window_type": "sliding", "strategy": "local", "sync_rate": nil,
			"namespace": nil, "hide_client_headers": false, "disable_penalty": false, "error_code": 429,
			"error_message": "API rate limit exceeded", "partition_behavior": "full",
		})
	})

	t.Run("fixed windows and headers", func(t *testing.T) {
		rt := route(t, n, idOf(svc), map[string]any{"paths": []any{"/rla-fixed"}})
		waitProxied(t, n, get("/rla-fixed"))
		create(t, n, "/routes/"+idOf(rt)+"/plugins", map[string]any{"name": "rate-limiting-advanced",
			"config": map[string]any{"limit": []any{3, 100}, "window_size": []any{20, 3600}, "window_type": "fixed",
				"identifier": "ip"}})
		// A whole 20 s window ahead, so the five requests share it.
		for i := 0; i < 100 && time.Now().Unix()%20 > 10; i++ {
			time.Sleep(200 * time.Millisecond)
		}
		first := waitFor(t, n, "rate-limiting-advanced on /rla-fixed", get("/rla-fixed"), func(r *harness.Response) bool {
			return r.Header.Get("X-RateLimit-Limit-20") != ""
		})
		resps := []*harness.Response{first}
		for i := 0; i < 3; i++ {
			resps = append(resps, proxy(t, n, get("/rla-fixed")))
		}
		var statuses, remaining []string
		for _, r := range resps {
			statuses = append(statuses, strconv.Itoa(r.Status))
			remaining = append(remaining, r.Header.Get("X-RateLimit-Remaining-20"))
		}
		if got := strings.Join(statuses, ","); got != "200,200,200,429" {
			t.Errorf("statuses %s, want 200×3 then 429", got)
		}
		if got := strings.Join(remaining, ","); got != "2,1,0,0" {
			t.Errorf("X-RateLimit-Remaining-20 %s, want 2,1,0,0", got)
		}
		last := resps[3]
		if last.Header.Get("X-RateLimit-Limit-3600") != "100" || last.Header.Get("X-RateLimit-Remaining-3600") != "97" {
			t.Errorf("hour window headers: %v", last.Header)
		}
		if last.Header.Get("RateLimit-Limit") != "3" || last.Header.Get("RateLimit-Remaining") != "0" {
			t.Errorf("RateLimit-* name the most restrictive window: %v", last.Header)
		}
		retry, err := strconv.Atoi(last.Header.Get("Retry-After"))
		if wantMax := 20 - int(time.Now().Unix()%20); err != nil || retry < 1 || retry > wantMax+1 {
			t.Errorf("Retry-After %q, want the rest of the 20 s window (≤ %d)", last.Header.Get("Retry-After"), wantMax+1)
		}
		if !strings.Contains(last.Text(), "API rate limit exceeded") {
			t.Errorf("429 body: %s", last)
		}
	})
}
