package admin

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse-gw/gatehouse/fsm"
	"github.com/gatehouse-gw/gatehouse/fsm/declarative"
	"github.com/gatehouse-gw/gatehouse/log"
)

// busyMarker is the store's side of the collection after bulk changes
// (fsm/collect.go): a declarative load is bulk work from the moment it
// is read, and the machine waits for it before collecting.
type busyMarker interface{ Busy() (done func()) }

// configApply serves POST /config (Kong's DB-less endpoint): the posted
// declarative document (YAML or JSON, raw or as the form field config)
// becomes the gateway configuration, as ONE batch event: entities the
// document lacks are deleted, the others written with their ids, and
// nothing at all changes if any entity is invalid. With _info.select_tags
// only entities carrying those tags are replaced. ?check_hash=1 answers
// 304 when the document would change nothing; ?flatten_errors=1 adds
// Kong's per-entity error list.
func (s *Server) configApply(w http.ResponseWriter, r *http.Request) {
	if b, ok := s.cfg.Store.(busyMarker); ok {
		defer b.Busy()()
	}
	ph := startPhases()
	defer ph.log("slow config")
	body, err := configBody(r)
	if err != nil {
		message(w, 400, err.Error())
		return
	}
	flatten := r.URL.Query().Get("flatten_errors") == "1" || r.URL.Query().Get("flatten_errors") == "true"
	doc, err := declarative.Parse(body)
	if err != nil {
		writeJSON(w, 400, map[string]any{"code": 14, "name": "invalid declarative configuration", "message": err.Error()})
		return
	}
	ph.mark("parse")
	cur := s.cfg.Store.State()
	kinds := []string{fsm.Certificates, fsm.CACertificates, fsm.SNIs, fsm.Services, fsm.Routes, fsm.Consumers, fsm.Upstreams,
		fsm.Targets, fsm.KeyAuths, fsm.BasicAuths, fsm.JWTSecrets, fsm.Plugins}
	// Finding the entities the document may delete visits every entity
	// of the state (two million at 1,000,000 consumers, 0.4 s of each
	// batch of a load) and needs only the select tags: it runs beside
	// Load, on the other core.
	tagged := make(chan []*fsm.Entity, 1)
	go func(tags []string) { tagged <- taggedEntities(cur, kinds, tags) }(declarative.SelectTags(doc))
	items, _, problems := declarative.Load(doc)
	ph.mark("load")
	if len(problems) > 0 {
		writeJSON(w, 400, declarativeError(problems, flatten))
		return
	}

	now := time.Now().UnixNano()
	want := map[string]map[string]bool{} // kind → ids the document keeps
	for _, it := range items {
		ids := want[it.Kind]
		if ids == nil {
			ids = map[string]bool{}
			want[it.Kind] = ids
		}
		ids[it.Data["id"].(string)] = true
	}
	var cmds []*fsm.Command
	for _, e := range <-tagged {
		if !want[e.Kind][e.ID] {
			cmds = append(cmds, &fsm.Command{Op: log.OpDelete, Kind: e.Kind, Key: e.ID})
		}
	}
	dels := len(cmds)
	for _, it := range items {
		b := make(map[string]any, len(it.Data))
		for k, v := range it.Data {
			if k != "id" {
				b[k] = v
			}
		}
		id := it.Data["id"].(string)
		cmds = append(cmds, &fsm.Command{Op: log.OpUpsert, Kind: it.Kind, Key: id, NewID: id, Body: b})
	}
	// Checked by folding the payload itself: the machine keeps the result
	// for when that event is applied to this state.
	payload, err := fsm.EncodeBatch(cmds)
	if err != nil {
		message(w, 500, "An unexpected error occurred")
		return
	}
	ph.mark("commands")
	changes, at, ferr, release := s.cfg.Store.PlanBatch(cur, now, payload)
	defer release()
	ph.mark("plan")
	if ferr != nil {
		// Kong lists every invalid entity, the fold stops at the first:
		// the fields of all of them are checked now, and only now (on a
		// valid document, normalizing every entity a second time was
		// about half a second of each 100,000-consumer batch).
		if problems := s.checkFields(items); len(problems) > 0 {
			writeJSON(w, 400, declarativeError(problems, flatten))
			return
		}
		if at >= dels {
			it := items[at-dels]
			errs, _ := ferr.Fields.(map[string]any)
			if errs == nil {
				errs = map[string]any{"@entity": ferr.Message}
			}
			writeJSON(w, 400, declarativeError([]declarative.Problem{{Kind: it.Kind, Path: it.Path, Entity: it.Data, Errors: errs}}, flatten))
			return
		}
		writeError(w, ferr)
		return
	}
	// Entities the document leaves as they are are not rewritten: applying
	// the same document twice appends nothing.
	same := map[string]bool{}
	for _, c := range changes {
		if c.Before != nil && c.After != nil && len(fsm.ChangedFields(c.Before.Data(), c.After.Data())) == 0 {
			same[c.Kind+"\x00"+c.ID] = true
		}
	}
	kept := make([]*fsm.Command, 0, len(cmds))
	for _, c := range cmds {
		if c.Op == log.OpDelete || len(same) == 0 || !same[c.Kind+"\x00"+c.Key] {
			kept = append(kept, c)
		}
	}
	if len(kept) < len(cmds) {
		// The plan was for the whole document, this is another payload.
		release()
		cmds = kept
		if payload, err = fsm.EncodeBatch(cmds); err != nil {
			message(w, 500, "An unexpected error occurred")
			return
		}
	}
	if q := r.URL.Query().Get("dry_run"); q == "1" || q == "true" {
		// What applying would do, entity by entity (gatehouse config diff).
		var plan []any
		for _, c := range changes {
			if same[c.Kind+"\x00"+c.ID] {
				continue
			}
			op, e := "updated", c.After
			switch {
			case c.Before == nil:
				op = "created"
			case c.After == nil:
				op, e = "deleted", c.Before
			}
			item := map[string]any{"op": op, "entity_type": c.Kind, "entity_id": c.ID}
			if ek := fsm.EndpointKey(c.Kind); ek != "" {
				if name := e.Data()[ek]; name != nil {
					item["entity_name"] = name
				}
			}
			if op == "updated" {
				item["fields"] = fsm.ChangedFields(c.Before.Data(), c.After.Data())
			}
			plan = append(plan, item)
		}
		writeJSON(w, 200, map[string]any{"changes": plan})
		return
	}
	hash := sha256.Sum256(body)
	w.Header().Set("X-Gatehouse-Config-Hash", hex.EncodeToString(hash[:16]))
	index := cur.Index
	var res *fsm.Result
	if len(cmds) > 0 {
		var ok bool
		res, ok = s.appendRequestEvent(w, r, &log.Event{Type: log.TypeBatch, Time: now, Op: "config",
			Entity: "config", Payload: payload})
		if !ok {
			return
		}
		index = res.Index
		ph.mark("append")
	} else if q := r.URL.Query().Get("check_hash"); q == "1" || q == "true" {
		w.Header().Set("X-Gatehouse-Config-Index", strconv.FormatUint(index, 10))
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("X-Gatehouse-Config-Index", strconv.FormatUint(index, 10))
	// Kong answers with the entities it loaded, by entity name. When the
	// apply took the plan, they are the plan's: looking 200,000 of them
	// up in a state of millions was most of a second.
	st, err := s.cfg.Store.StateAt(index)
	if err != nil || st.Index < index {
		st = s.cfg.Store.State()
	}
	var planned []fsm.Change
	if fsm.PlanApplied(changes, res) {
		planned = changes
	}
	loaded := make([]*fsm.Entity, len(items))
	next := 0 // the changes follow the commands, the deletes first
	for i, it := range items {
		id := it.Data["id"].(string)
		for j := next; j < min(next+64, len(planned)); j++ {
			if c := planned[j]; c.After != nil && c.ID == id && c.Kind == it.Kind {
				loaded[i], next = c.After, j+1
				break
			}
		}
		if loaded[i] == nil {
			loaded[i] = st.Get(it.Kind, id)
		}
	}
	b, err := loadedJSON(make([]byte, 0, 320*len(items)), st, items, loaded)
	if err != nil {
		message(w, 500, "An unexpected error occurred")
		return
	}
	writeJSONBytes(w, 201, b)
	ph.mark("answer")
}

// loadedJSON appends {"<kind>": [entity, ...], ...}: the entities
// loaded (items[i] as loaded[i], nil if gone), by kind in name order,
// each kind's in document order.
func loadedJSON(b []byte, st *fsm.State, items []declarative.Item, loaded []*fsm.Entity) ([]byte, error) {
	var kinds []string
	for i, it := range items {
		if loaded[i] != nil && !slices.Contains(kinds, it.Kind) {
			kinds = append(kinds, it.Kind)
		}
	}
	sort.Strings(kinds)
	b = append(b, '{')
	for k, kind := range kinds {
		if k > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendQuote(b, kind) // a kind is a plain identifier
		b = append(b, ':', '[')
		first := true
		for i, it := range items {
			if it.Kind != kind || loaded[i] == nil {
				continue
			}
			if !first {
				b = append(b, ',')
			}
			first = false
			var err error
			if b, err = appendRendered(b, st, loaded[i]); err != nil {
				return nil, err
			}
		}
		b = append(b, ']')
	}
	return append(b, '}'), nil
}

// phases times the steps of a long request, for one log line that says
// where its time went.
type phases struct {
	start, last time.Time
	attrs       []any
}

func startPhases() *phases {
	now := time.Now()
	return &phases{start: now, last: now}
}

func (p *phases) mark(step string) {
	now := time.Now()
	p.attrs = append(p.attrs, step, now.Sub(p.last).Round(time.Millisecond))
	p.last = now
}

// log writes the line if the request took over a second.
func (p *phases) log(msg string) {
	if d := time.Since(p.start); d > time.Second {
		slog.Info(msg, append(p.attrs, "total", d.Round(time.Millisecond))...)
	}
}

// checkFields is what is wrong with each item's own fields.
func (s *Server) checkFields(items []declarative.Item) []declarative.Problem {
	var problems []declarative.Problem
	fold := s.cfg.Store.Fold()
	for _, it := range items {
		if errs := fold.CheckFields(it.Kind, it.Data); errs != nil {
			problems = append(problems, declarative.Problem{Kind: it.Kind, Path: it.Path, Entity: it.Data, Errors: errs})
		}
	}
	return problems
}

// configBody is the posted document: the form field config (Kong's
// curl examples use -F config=@kong.yml), or the raw body.
func configBody(r *http.Request) ([]byte, error) {
	const limit = 64 << 20
	r.Body = http.MaxBytesReader(nil, r.Body, limit)
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch ct {
	case "multipart/form-data":
		if err := r.ParseMultipartForm(limit); err != nil {
			return nil, err
		}
		if f, _, err := r.FormFile("config"); err == nil {
			defer f.Close()
			return io.ReadAll(f)
		}
		return []byte(r.FormValue("config")), nil
	case "application/x-www-form-urlencoded":
		if err := r.ParseForm(); err != nil {
			return nil, err
		}
		return []byte(r.PostForm.Get("config")), nil
	}
	return io.ReadAll(r.Body)
}

// taggedEntities returns the entities of cur that carry every one of
// tags, kinds in reverse order (children before what they reference).
// The test allocates nothing: the entity's own tags, then its id.
func taggedEntities(cur *fsm.State, kinds, tags []string) []*fsm.Entity {
	var out []*fsm.Entity
	for i := len(kinds) - 1; i >= 0; i-- {
		cur.Walk(kinds[i], "", func(e *fsm.Entity) bool {
			if hasTags(e, tags) {
				out = append(out, e)
			}
			return true
		})
	}
	return out
}

func hasTags(e *fsm.Entity, tags []string) bool {
	for _, t := range tags {
		if !e.HasTag(t) {
			return false
		}
	}
	return true
}

// declarativeError is Kong's body for an invalid document: the errors
// nested as the document nests its entities, and with flatten one entry
// per entity.
func declarativeError(problems []declarative.Problem, flatten bool) map[string]any {
	fields := map[string]any{}
	var flat []any
	for _, p := range problems {
		if p.Path == "" {
			for k, v := range p.Errors {
				fields[k] = v
			}
			continue
		}
		node := fields
		parts := strings.Split(p.Path, ".")
		for _, part := range parts[:len(parts)-1] {
			next, _ := node[part].(map[string]any)
			if next == nil {
				next = map[string]any{}
				node[part] = next
			}
			node = next
		}
		node[parts[len(parts)-1]] = p.Errors
		if flatten {
			var errs []any
			keys := make([]string, 0, len(p.Errors))
			for k := range p.Errors {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				if k == "@entity" {
					errs = append(errs, map[string]any{"type": "entity", "message": flatMessage(p.Errors[k])})
				} else {
					errs = append(errs, map[string]any{"type": "field", "field": k, "message": flatMessage(p.Errors[k])})
				}
			}
			entry := map[string]any{"entity_type": strings.TrimSuffix(p.Kind, "s"), "entity": p.Entity, "errors": errs,
				"entity_tags": p.Entity["tags"]}
			if p.Entity != nil {
				entry["entity_id"] = p.Entity["id"]
				if ek := fsm.EndpointKey(p.Kind); ek != "" {
					entry["entity_name"] = p.Entity[ek]
				}
			}
			flat = append(flat, entry)
		}
	}
	arrays := toArrays(fields).(map[string]any)
	body := map[string]any{"code": 14, "name": "invalid declarative configuration",
		"message": "declarative config is invalid: " + fsm.LuaTable(arrays), "fields": arrays}
	if flatten {
		body["fields"] = map[string]any{}
		body["flattened_errors"] = flat
	}
	return body
}

func flatMessage(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case []any:
		var parts []string
		for _, e := range x {
			parts = append(parts, flatMessage(e))
		}
		return strings.Join(parts, "; ")
	}
	return fsm.LuaTable(v)
}

// toArrays turns maps keyed by positions into JSON arrays (null where an
// entity had no error), as Kong's error tables read.
func toArrays(v any) any {
	m, ok := v.(map[string]any)
	if !ok {
		return v
	}
	max, numeric := -1, len(m) > 0
	for k, e := range m {
		m[k] = toArrays(e)
		n, err := strconv.Atoi(k)
		if err != nil || n < 0 || n > 1<<20 {
			numeric = false
		} else if n > max {
			max = n
		}
	}
	if !numeric {
		return m
	}
	out := make([]any, max+1)
	for k, e := range m {
		n, _ := strconv.Atoi(k)
		out[n] = e
	}
	return out
}
