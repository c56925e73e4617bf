package declarative

import (
	"sync"

	"github.com/gatehouse-gw/gatehouse/fsm"
)

// Dump is the declarative document as maps: the reference RenderJSON is
// held to (json.Marshal(Dump(s)) must be RenderJSON's bytes). Only tests
// build it; the Admin API renders the JSON directly.
// It returns the gateway configuration of s as a declarative document,
// ready for encoding/json. Entities keep their ids (so a dump can be
// restored exactly) but not their timestamps, and fields that are null
// are left out, as decK writes them. A foreign key is left out where
// nesting already says it.
func Dump(s *fsm.State) map[string]any {
	doc := map[string]any{"_format_version": FormatVersion}

	// The sections are independent walks of an immutable state: each
	// runs on its own goroutine (at 100,000 entities the walk is a
	// quarter of a dump's time).
	var services, routes, consumers, upstreams, plugins, certificates, caCertificates []any
	var wg sync.WaitGroup
	section := func(walk func()) {
		wg.Add(1)
		go func() { defer wg.Done(); walk() }()
	}
	section(func() {
		s.Walk(fsm.Certificates, "", func(c *fsm.Entity) bool {
			out := clean(c.Data())
			var ss []any
			s.Children(fsm.Certificates, c.ID, fsm.SNIs, func(sni *fsm.Entity) bool {
				ss = append(ss, clean(sni.Data(), "certificate"))
				return true
			})
			put(out, "snis", ss)
			certificates = append(certificates, out)
			return true
		})
		s.Walk(fsm.CACertificates, "", func(c *fsm.Entity) bool {
			caCertificates = append(caCertificates, clean(c.Data()))
			return true
		})
	})
	section(func() {
		s.Walk(fsm.Services, "", func(svc *fsm.Entity) bool {
			out := clean(svc.Data())
			var rs, ps []any
			s.Children(fsm.Services, svc.ID, fsm.Routes, func(r *fsm.Entity) bool {
				rs = append(rs, route(s, r, "service"))
				return true
			})
			s.Children(fsm.Services, svc.ID, fsm.Plugins, func(p *fsm.Entity) bool {
				if owner(p) == "service" {
					ps = append(ps, clean(p.Data(), "service"))
				}
				return true
			})
			put(out, "routes", rs)
			put(out, "plugins", ps)
			services = append(services, out)
			return true
		})
	})
	section(func() {
		s.Walk(fsm.Routes, "", func(r *fsm.Entity) bool {
			if r.Data()["service"] == nil {
				routes = append(routes, route(s, r))
			}
			return true
		})
	})
	section(func() {
		s.Walk(fsm.Consumers, "", func(c *fsm.Entity) bool {
			out := clean(c.Data())
			var ks, ps []any
			s.Children(fsm.Consumers, c.ID, fsm.KeyAuths, func(k *fsm.Entity) bool {
				ks = append(ks, clean(k.Data(), "consumer"))
				return true
			})
			var bs []any
			s.Children(fsm.Consumers, c.ID, fsm.BasicAuths, func(b *fsm.Entity) bool {
				bs = append(bs, clean(b.Data(), "consumer"))
				return true
			})
			put(out, "basicauth_credentials", bs)
			var js []any
			s.Children(fsm.Consumers, c.ID, fsm.JWTSecrets, func(j *fsm.Entity) bool {
				js = append(js, clean(j.Data(), "consumer"))
				return true
			})
			put(out, "jwt_secrets", js)
			s.Children(fsm.Consumers, c.ID, fsm.Plugins, func(p *fsm.Entity) bool {
				if owner(p) == "consumer" {
					ps = append(ps, clean(p.Data(), "consumer"))
				}
				return true
			})
			put(out, "keyauth_credentials", ks)
			put(out, "plugins", ps)
			consumers = append(consumers, out)
			return true
		})
	})
	section(func() {
		s.Walk(fsm.Upstreams, "", func(u *fsm.Entity) bool {
			out := clean(u.Data())
			var ts []any
			s.Children(fsm.Upstreams, u.ID, fsm.Targets, func(t *fsm.Entity) bool {
				ts = append(ts, clean(t.Data(), "upstream"))
				return true
			})
			put(out, "targets", ts)
			upstreams = append(upstreams, out)
			return true
		})
	})
	section(func() {
		s.Walk(fsm.Plugins, "", func(p *fsm.Entity) bool {
			if owner(p) == "" {
				plugins = append(plugins, clean(p.Data()))
			}
			return true
		})
	})
	wg.Wait()
	put(doc, "certificates", certificates)
	put(doc, "ca_certificates", caCertificates)
	put(doc, "services", services)
	put(doc, "routes", routes)
	put(doc, "consumers", consumers)
	put(doc, "upstreams", upstreams)
	put(doc, "plugins", plugins)
	return doc
}

// route renders a route with the plugins scoped to it alone.
func route(s *fsm.State, r *fsm.Entity, omit ...string) map[string]any {
	out := clean(r.Data(), omit...)
	var ps []any
	s.Children(fsm.Routes, r.ID, fsm.Plugins, func(p *fsm.Entity) bool {
		if owner(p) == "route" {
			ps = append(ps, clean(p.Data(), "route"))
		}
		return true
	})
	put(out, "plugins", ps)
	return out
}

func clean(d map[string]any, omit ...string) map[string]any {
	out := make(map[string]any, len(d))
	for k, v := range d {
		if v == nil || k == "created_at" || k == "updated_at" {
			continue
		}
		out[k] = v
	}
	for _, k := range omit {
		delete(out, k)
	}
	return out
}

func put(m map[string]any, k string, list []any) {
	if len(list) > 0 {
		m[k] = list
	}
}
