package router

import (
	"fmt"
	"testing"
)

const benchRoutes = 10000

// benchSets builds 10,000-route configurations of different shapes. The
// shape decides the cost: host-bucketed routes are cheap however many
// there are, host-less routes are scanned linearly.
func benchSets() map[string][]*Route {
	sets := map[string][]*Route{}

	// One plain host per service, a few paths each: the typical
	// multi-tenant layout, fully served by the host index.
	var hosts []*Route
	for i := range benchRoutes {
		hosts = append(hosts, &Route{
			ID:        fmt.Sprintf("%08d-0000-4000-8000-000000000000", i),
			Hosts:     []string{fmt.Sprintf("svc%d.example.com", i/4)},
			Paths:     []string{fmt.Sprintf("/api/v%d", i%4)},
			Methods:   []string{"GET", "POST"},
			StripPath: true,
		})
	}
	sets["hosts"] = hosts

	// Host-less prefix routes: the worst case for the current design, a
	// linear scan in priority order.
	var paths []*Route
	for i := range benchRoutes {
		paths = append(paths, &Route{
			ID:    fmt.Sprintf("%08d-0000-4000-8000-000000000000", i),
			Paths: []string{fmt.Sprintf("/service%d/resource", i)},
		})
	}
	sets["paths"] = paths

	// Mostly plain hosts, plus wildcard hosts, host-less regex routes and
	// header routes that every request has to consider.
	var mixed []*Route
	for i := range benchRoutes {
		id := fmt.Sprintf("%08d-0000-4000-8000-000000000000", i)
		switch i % 10 {
		case 0:
			mixed = append(mixed, &Route{ID: id, Hosts: []string{fmt.Sprintf("*.tenant%d.example.net", i)}})
		case 1:
			mixed = append(mixed, &Route{ID: id, Paths: []string{fmt.Sprintf(`~/legacy%d/\d+$`, i)}})
		case 2:
			mixed = append(mixed, &Route{ID: id, Paths: []string{fmt.Sprintf("/internal%d", i)},
				Headers: map[string][]string{"x-tenant": {fmt.Sprint(i)}}})
		default:
			mixed = append(mixed, &Route{ID: id, Hosts: []string{fmt.Sprintf("svc%d.example.com", i)},
				Paths: []string{"/", fmt.Sprintf("/v%d", i%3)}})
		}
	}
	sets["mixed"] = mixed
	return sets
}

func BenchmarkMatch(b *testing.B) {
	sets := benchSets()
	cases := []struct {
		set  string
		name string
		req  Request
	}{
		{"hosts", "hit", Request{Method: "GET", Host: "svc1234.example.com", Path: "/api/v2/users/42"}},
		{"hosts", "miss", Request{Method: "GET", Host: "nope.example.com", Path: "/api/v2/users/42"}},
		{"hosts", "normalise", Request{Method: "GET", Host: "svc1234.example.com", Path: "/api/v2/./users/%34%32"}},
		{"paths", "first", Request{Method: "GET", Path: "/service9999/resource/1"}},
		{"paths", "last", Request{Method: "GET", Path: "/service0/resource/1"}},
		{"paths", "miss", Request{Method: "GET", Path: "/unknown"}},
		{"mixed", "plain-host", Request{Method: "GET", Host: "svc5003.example.com", Path: "/v2/x"}},
		{"mixed", "wildcard-host", Request{Method: "GET", Host: "a.tenant5000.example.net", Path: "/x"}},
		{"mixed", "regex", Request{Method: "GET", Host: "other", Path: "/legacy5001/42"}},
		{"mixed", "miss", Request{Method: "GET", Host: "other", Path: "/none", Header: headers("x-tenant", "1")}},
	}
	routers := map[string]*Router{}
	for name, routes := range sets {
		r, err := New(routes...)
		if err != nil {
			b.Fatal(err)
		}
		routers[name] = r
	}
	for _, c := range cases {
		b.Run(c.set+"/"+c.name, func(b *testing.B) {
			r := routers[c.set]
			req := c.req
			b.ReportAllocs()
			for b.Loop() {
				r.Match(&req)
			}
		})
	}
}

// BenchmarkUpsert measures one incremental change against 10,000 routes.
func BenchmarkUpsert(b *testing.B) {
	for _, set := range []string{"hosts", "paths"} {
		b.Run(set, func(b *testing.B) {
			r, err := New(benchSets()[set]...)
			if err != nil {
				b.Fatal(err)
			}
			rt := &Route{ID: "ffffffff-0000-4000-8000-000000000000", Hosts: []string{"svc17.example.com"}, Paths: []string{"/new"}}
			if set == "paths" {
				rt.Hosts = nil
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := r.Upsert(rt); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkNew(b *testing.B) {
	routes := benchSets()["mixed"]
	b.ReportAllocs()
	for b.Loop() {
		if _, err := New(routes...); err != nil {
			b.Fatal(err)
		}
	}
}
