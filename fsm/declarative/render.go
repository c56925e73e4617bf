package declarative

import (
	"errors"
	"runtime"
	"sort"
	"sync"

	fastjson "github.com/segmentio/encoding/json"

	"github.com/gatehouse-gw/gatehouse/fsm"
	"github.com/gatehouse-gw/gatehouse/log"
)

// RenderJSON is json.Marshal(Dump(s)) without the document in between (Dump, in the tests, builds it as maps): each
// entity's JSON is written straight from its data, its nested entities
// spliced in key order. At 100,000 entities the document of copied maps
// was most of a dump's allocations. redact, when set, is applied to each
// credential and certificate first (as the Admin API's /config does for
// callers who may not read credentials). The test holds the two to the
// same bytes.
func RenderJSON(s *fsm.State, redact func(kind string, d map[string]any) map[string]any) ([]byte, error) {
	r := renderer{s: s, redact: redact}
	// Each top-level section is a list of entities, rendered in parallel
	// chunks.
	type section struct {
		name  string
		items []*fsm.Entity
		one   func(b []byte, e *fsm.Entity) ([]byte, error)
	}
	var secs []section
	collect := func(name, kind string, keep func(*fsm.Entity) bool, one func([]byte, *fsm.Entity) ([]byte, error)) {
		var items []*fsm.Entity
		s.Walk(kind, "", func(e *fsm.Entity) bool {
			if keep == nil || keep(e) {
				items = append(items, e)
			}
			return true
		})
		if len(items) > 0 {
			secs = append(secs, section{name, items, one})
		}
	}
	// In key order, as encoding/json writes a map.
	collect("ca_certificates", fsm.CACertificates, nil, func(b []byte, e *fsm.Entity) ([]byte, error) {
		return r.object(b, e, "", nil)
	})
	collect("certificates", fsm.Certificates, nil, r.certificate)
	collect("consumers", fsm.Consumers, nil, r.consumer)
	collect("plugins", fsm.Plugins, func(p *fsm.Entity) bool { return owner(p) == "" }, func(b []byte, e *fsm.Entity) ([]byte, error) {
		return r.object(b, e, "", nil)
	})
	collect("routes", fsm.Routes, func(e *fsm.Entity) bool { return e.View.(*fsm.Route).ServiceID == "" }, func(b []byte, e *fsm.Entity) ([]byte, error) {
		return r.route(b, e, "")
	})
	collect("services", fsm.Services, nil, r.service)
	collect("upstreams", fsm.Upstreams, nil, r.upstream)

	out := []byte(`{"_format_version":"` + FormatVersion + `"`)
	for _, sec := range secs {
		workers := 1
		if len(sec.items) >= 2048 {
			workers = runtime.GOMAXPROCS(0)
		}
		parts := make([][]byte, workers)
		errs := make([]error, workers)
		var wg sync.WaitGroup
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				lo, hi := len(sec.items)*w/workers, len(sec.items)*(w+1)/workers
				var b []byte
				for i := lo; i < hi; i++ {
					if i > lo {
						b = append(b, ',')
					}
					var err error
					if b, err = sec.one(b, sec.items[i]); err != nil {
						errs[w] = err
						return
					}
				}
				parts[w] = b
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
		out = append(out, `,"`+sec.name+`":[`...)
		first := true
		for _, p := range parts {
			if len(p) == 0 {
				continue
			}
			if !first {
				out = append(out, ',')
			}
			out = append(out, p...)
			first = false
		}
		out = append(out, ']')
	}
	return append(out, '}'), nil
}

type renderer struct {
	s      *fsm.State
	redact func(kind string, d map[string]any) map[string]any
}

// child is a nested list: its key and its rendered elements.
type child struct {
	key   string
	items []byte // elements, comma-separated; empty: the key is left out
}

// object writes e's data as the reference Dump's clean does (no nulls, no timestamps,
// not the omitted foreign key), with the children in key order.
func (r *renderer) object(b []byte, e *fsm.Entity, omit string, children []child) ([]byte, error) {
	d := e.Data()
	if r.redact != nil {
		switch e.Kind {
		case fsm.KeyAuths, fsm.BasicAuths, fsm.JWTSecrets, fsm.Certificates:
			d = r.redact(e.Kind, d)
		}
	}
	keys := make([]string, 0, len(d)+len(children))
	for k, v := range d {
		if v == nil || k == "created_at" || k == "updated_at" || k == omit {
			continue
		}
		keys = append(keys, k)
	}
	nested := map[string][]byte{}
	for _, c := range children {
		if len(c.items) > 0 {
			if _, dup := d[c.key]; !dup {
				keys = append(keys, c.key)
			}
			nested[c.key] = c.items
		}
	}
	sort.Strings(keys)
	b = append(b, '{')
	var err error
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = fastjson.AppendEscape(b, k, fastjson.EscapeHTML)
		b = append(b, ':')
		if items, ok := nested[k]; ok {
			b = append(b, '[')
			b = append(b, items...)
			b = append(b, ']')
			continue
		}
		if b, err = log.AppendJSON(b, d[k]); err != nil {
			return nil, err
		}
	}
	return append(b, '}'), nil
}

// list renders the children of one kind that pass keep.
func (r *renderer) list(parentKind, parentID, kind string, keep func(*fsm.Entity) bool,
	one func(b []byte, e *fsm.Entity) ([]byte, error)) ([]byte, error) {
	var b []byte
	var err error
	r.s.Children(parentKind, parentID, kind, func(e *fsm.Entity) bool {
		if keep != nil && !keep(e) {
			return true
		}
		if len(b) > 0 {
			b = append(b, ',')
		}
		b, err = one(b, e)
		return err == nil
	})
	return b, err
}

func (r *renderer) scoped(field string) func(b []byte, e *fsm.Entity) ([]byte, error) {
	return func(b []byte, e *fsm.Entity) ([]byte, error) { return r.object(b, e, field, nil) }
}

func ownedBy(field string) func(*fsm.Entity) bool {
	return func(p *fsm.Entity) bool { return owner(p) == field }
}

func (r *renderer) route(b []byte, e *fsm.Entity, omit string) ([]byte, error) {
	ps, err := r.list(fsm.Routes, e.ID, fsm.Plugins, ownedBy("route"), r.scoped("route"))
	if err != nil {
		return nil, err
	}
	return r.object(b, e, omit, []child{{"plugins", ps}})
}

func (r *renderer) service(b []byte, e *fsm.Entity) ([]byte, error) {
	rs, err := r.list(fsm.Services, e.ID, fsm.Routes, nil, func(b []byte, rt *fsm.Entity) ([]byte, error) {
		return r.route(b, rt, "service")
	})
	if err != nil {
		return nil, err
	}
	ps, err := r.list(fsm.Services, e.ID, fsm.Plugins, ownedBy("service"), r.scoped("service"))
	if err != nil {
		return nil, err
	}
	return r.object(b, e, "", []child{{"routes", rs}, {"plugins", ps}})
}

func (r *renderer) consumer(b []byte, e *fsm.Entity) ([]byte, error) {
	var children []child
	for _, c := range []struct{ key, kind string }{{"keyauth_credentials", fsm.KeyAuths},
		{"basicauth_credentials", fsm.BasicAuths}, {"jwt_secrets", fsm.JWTSecrets}} {
		items, err := r.list(fsm.Consumers, e.ID, c.kind, nil, r.scoped("consumer"))
		if err != nil {
			return nil, err
		}
		children = append(children, child{c.key, items})
	}
	ps, err := r.list(fsm.Consumers, e.ID, fsm.Plugins, ownedBy("consumer"), r.scoped("consumer"))
	if err != nil {
		return nil, err
	}
	return r.object(b, e, "", append(children, child{"plugins", ps}))
}

func (r *renderer) upstream(b []byte, e *fsm.Entity) ([]byte, error) {
	ts, err := r.list(fsm.Upstreams, e.ID, fsm.Targets, nil, r.scoped("upstream"))
	if err != nil {
		return nil, err
	}
	return r.object(b, e, "", []child{{"targets", ts}})
}

func (r *renderer) certificate(b []byte, e *fsm.Entity) ([]byte, error) {
	ss, err := r.list(fsm.Certificates, e.ID, fsm.SNIs, nil, r.scoped("certificate"))
	if err != nil {
		return nil, err
	}
	return r.object(b, e, "", []child{{"snis", ss}})
}
