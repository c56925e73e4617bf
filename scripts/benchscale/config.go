package main

import (
	"encoding/json"
	"fmt"
)

// routesDoc is a declarative document with n routes in issue 8's mix (80%
// host-less prefix paths, 15% host + path, 5% regex; methods on a third),
// spread over services that all point at the upstream, plus the routes the
// measurements use: /plain, and /auth with key-auth.
func routesDoc(n int, upstream string) ([]byte, error) {
	const perService = 100
	var services []map[string]any
	methods := [][]string{nil, nil, {"GET"}, {"GET", "POST"}, nil, {"POST"}}
	for s := 0; s*perService < n; s++ {
		var routes []map[string]any
		for i := s * perService; i < min(n, (s+1)*perService); i++ {
			rt := map[string]any{"name": fmt.Sprintf("r%d", i)}
			if m := methods[i%len(methods)]; m != nil {
				rt["methods"] = m
			}
			switch k := i % 20; {
			case k < 16:
				rt["paths"] = []string{fmt.Sprintf("/svc%d/res%d", i/8, i%8)}
			case k < 19:
				rt["hosts"] = []string{fmt.Sprintf("tenant%d.example.com", i/40)}
				rt["paths"] = []string{fmt.Sprintf("/api/v%d", i%3)}
			default:
				rt["paths"] = []string{fmt.Sprintf(`~/svc%d/orders/(?<order>\d+)$`, i/8)}
			}
			routes = append(routes, rt)
		}
		services = append(services, map[string]any{"name": fmt.Sprintf("s%d", s), "url": upstream, "routes": routes})
	}
	services = append(services, map[string]any{"name": "bench", "url": upstream, "routes": []map[string]any{
		{"name": "plain", "paths": []string{"/plain"}},
		{"name": "auth", "paths": []string{"/auth"}, "plugins": []map[string]any{
			{"name": "key-auth"},
			{"name": "rate-limiting", "config": map[string]any{"minute": 1_000_000_000, "policy": "local"}},
		}},
	}})
	return json.Marshal(map[string]any{
		"_format_version": "3.0",
		"_info":           map[string]any{"select_tags": []string{"routes"}},
		"services":        services,
	})
}

// consumersDoc is one batch of consumers lo..hi-1, each with the key-auth
// key "k<i>", managed under its own select tag so batches add up instead
// of replacing each other.
func consumersDoc(batch, lo, hi int) ([]byte, error) {
	cs := make([]map[string]any, 0, hi-lo)
	for i := lo; i < hi; i++ {
		cs = append(cs, map[string]any{
			"username":            fmt.Sprintf("c%d", i),
			"keyauth_credentials": []map[string]any{{"key": fmt.Sprintf("k%d", i)}},
		})
	}
	return json.Marshal(map[string]any{
		"_format_version": "3.0",
		"_info":           map[string]any{"select_tags": []string{fmt.Sprintf("consumers-%d", batch)}},
		"consumers":       cs,
	})
}
