package fsm

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/gatehouse-gw/gatehouse/fsm/schema"
)

// Command is the payload of an entity event: what the admin request asked
// for, with everything random (ids, generated keys) already chosen.
type Command struct {
	Op   string `msgpack:"op"`
	Kind string `msgpack:"kind"`
	Key  string `msgpack:"key,omitempty"` // entity id or URL key for upsert/update/delete
	// Named is the endpoint key the client put in the URL of a PUT (e.g.
	// a service name), when it differs from Key.
	Named  string         `msgpack:"named,omitempty"`
	NewID  string         `msgpack:"new_id,omitempty"` // id to use if the command creates
	Parent *Parent        `msgpack:"parent,omitempty"` // nested URL scope (/services/{s}/routes)
	Body   map[string]any `msgpack:"body,omitempty"`
}

// URLKey is the non-UUID key the client named in the URL, if any.
func (c *Command) URLKey() string {
	if c.Named != "" {
		return c.Named
	}
	if !IsUUID(c.Key) {
		return c.Key
	}
	return ""
}

// Parent is the entity a nested endpoint is scoped to; Field is the child's
// foreign field that points at it.
type Parent struct {
	Kind  string `msgpack:"kind"`
	Key   string `msgpack:"key"`
	Field string `msgpack:"field"`
}

// Change describes what one command did to one entity. Before is nil for a
// creation, After nil for a deletion.
type Change struct {
	Kind          string
	ID            string
	Before, After *Entity
}

// PluginDef is what the fold needs to know about a plugin: its config
// schema, and how to check and compile a config once, at apply time.
type PluginDef interface {
	ConfigSchema() *schema.Schema
	// Compile validates a normalized config (cross-field checks) and returns
	// the parsed form the proxy runs with, or field errors keyed like the
	// config's fields ("@entity" for config-level errors).
	Compile(config map[string]any) (any, schema.Errors)
}

// PluginRegistry resolves plugin names; declared here, implemented by the
// plugins package and wired by cmd.
type PluginRegistry interface {
	Plugin(name string) (PluginDef, bool)
}

// Fold applies commands to states. It is deterministic: the same state,
// command and time always give the same result, on every node.
type Fold struct {
	Plugins PluginRegistry
}

type txn struct {
	base     *State
	entities *tree[*Entity]
	unique   *tree[string]
	children *tree[struct{}]
	names    map[string]int
	consumer int // consumer-scoped plugins
	hash     [32]byte
	changes  []Change
	// decoded holds the fields of published entities a revert replaces,
	// decoded once, in parallel, for its index passes (see fields).
	decoded map[*Entity]map[string]any
}

// fields returns x's fields for the index passes: its own while it is
// being folded, the decoding revert made up front, or a fresh decoding.
func (t *txn) fields(x *Entity) map[string]any {
	if x.data != nil {
		return x.data
	}
	if d, ok := t.decoded[x]; ok {
		return d
	}
	return x.Data()
}

func (f *Fold) begin(s *State) *txn {
	return &txn{base: s, entities: fork(s.entities), unique: fork(s.unique), children: fork(s.children),
		names: s.pluginNames, consumer: s.consumerPlugins, hash: s.hash}
}

func (t *txn) commit(index uint64) *State {
	// The txn's trees are published as they are: it is not written again.
	return &State{Index: index, entities: t.entities, unique: t.unique,
		children: t.children, pluginNames: t.names,
		consumerPlugins: t.consumer, meta: t.base.meta, hash: t.hash}
}

// live returns the state as modified so far by this transaction, for a
// batch's lookups between its writes. It shares the txn's trees as they
// are, so it is only read, never kept, forked or iterated across a write.
// A view per command made each command's first write to every tree copy
// that tree's whole path: a bulk load of 200,000 commands copied gigabytes
// of nodes, and a third of its CPU went to collecting them.
func (t *txn) live() *State {
	return &State{entities: t.entities, unique: t.unique,
		children: t.children, pluginNames: t.names,
		consumerPlugins: t.consumer, meta: t.base.meta, hash: t.hash}
}

// view returns the state as modified so far by this transaction, frozen:
// for a walk whose body writes.
func (t *txn) view() *State {
	// Copy (on the txn's own trees) makes the txn copy a node before it
	// next writes one, so the view stays as it is now.
	return &State{entities: t.entities.Copy(), unique: t.unique.Copy(),
		children: t.children.Copy(), pluginNames: t.names,
		consumerPlugins: t.consumer, meta: t.base.meta, hash: t.hash}
}

// Apply folds one command into s. now is the event time in unix
// nanoseconds. On error the state is unchanged.
func (f *Fold) Apply(s *State, index uint64, now int64, cmd *Command) (*State, []Change, *Error) {
	t := f.begin(s)
	if err := f.exec(t, s, now, cmd); err != nil {
		return s, nil, err
	}
	return t.commit(index), t.changes, nil
}

// ApplyAll folds several commands atomically: all land or none does.
func (f *Fold) ApplyAll(s *State, index uint64, now int64, cmds []*Command) (*State, []Change, *Error) {
	t := f.begin(s)
	for _, c := range cmds {
		if err := f.exec(t, t.live(), now, c); err != nil {
			return s, nil, err
		}
	}
	return t.commit(index), t.changes, nil
}

// Check runs a command against s without keeping the result: the admin API
// uses it to reject bad input before anything is appended to the log.
func (f *Fold) Check(s *State, now int64, cmd *Command) *Error {
	_, _, err := f.Apply(s, s.Index, now, cmd)
	return err
}

func (f *Fold) exec(t *txn, s *State, now int64, cmd *Command) *Error {
	sch := Schemas[cmd.Kind]
	if sch == nil {
		return &Error{Status: 404, Message: "Not found"}
	}
	var parent *Entity
	if cmd.Parent != nil {
		if parent = s.Find(cmd.Parent.Kind, cmd.Parent.Key); parent == nil {
			return ErrNotFound()
		}
	}
	owned := func(e *Entity) bool {
		return parent == nil || ref(e.Data(), cmd.Parent.Field) == parent.ID
	}
	switch cmd.Op {
	case "delete":
		e := s.Find(cmd.Kind, cmd.Key)
		if e == nil {
			return nil // Kong answers 204 for a missing entity
		}
		if !owned(e) {
			return ErrNotFound()
		}
		return f.delete(t, s, e)
	case "create":
		data := schema.DeepCopy(cmd.Body).(map[string]any)
		id := cmd.NewID
		if v, ok := data["id"].(string); ok && IsUUID(v) {
			id = strings.ToLower(v)
		}
		data["id"] = id
		return f.put(t, s, now, cmd, parent, nil, data, false)
	case "upsert":
		e := s.Find(cmd.Kind, cmd.Key)
		if e != nil && !owned(e) {
			return ErrNotFound()
		}
		data := schema.DeepCopy(cmd.Body).(map[string]any)
		// Find looked the key up as an id first: when it found nothing,
		// that id is free, and put need not look again (at 1,000,000
		// consumers each lookup is microseconds, and a bulk load's
		// upserts are nearly all new).
		idFree := false
		switch {
		case e != nil:
			data["id"] = e.ID
		case IsUUID(cmd.Key):
			data["id"] = strings.ToLower(cmd.Key)
			idFree = true
		default:
			data["id"] = cmd.NewID
		}
		// PUT /services/{name}: the name in the URL is part of the
		// replacement (the admin resolves an existing entity's key to its
		// id, so this only applies to the key the client typed).
		if ek := endpointKeys[cmd.Kind]; ek != "" && !IsUUID(cmd.URLKey()) && cmd.URLKey() != "" {
			if v, ok := data[ek]; ok && v != nil && v != cmd.URLKey() {
				return SchemaError(schema.Errors{ek: "must match the URL key"})
			}
			data[ek] = cmd.URLKey()
		}
		return f.put(t, s, now, cmd, parent, e, data, idFree)
	case "update":
		e := s.Find(cmd.Kind, cmd.Key)
		if e == nil || !owned(e) {
			return ErrNotFound()
		}
		data := schema.Merge(e.Data(), cmd.Body)
		data["id"] = e.ID
		return f.put(t, s, now, cmd, parent, e, data, false)
	}
	return &Error{Status: 400, Message: "unknown operation " + cmd.Op}
}

// put writes data as the new version of old (nil: a new entity). idFree
// says the caller has just found no entity of this kind with data's id.
func (f *Fold) put(t *txn, s *State, now int64, cmd *Command, parent, old *Entity, data map[string]any, idFree bool) *Error {
	kind := cmd.Kind
	if parent != nil {
		data[cmd.Parent.Field] = map[string]any{"id": parent.ID}
	}
	if err := shorthands(kind, data, old); err != nil {
		return err
	}
	sec := float64(now / 1e9)
	if kind == Targets {
		sec = float64(now/1e6) / 1000 // Kong stores target times with ms precision
	}
	if old != nil {
		data["created_at"] = old.Data()["created_at"]
	} else {
		data["created_at"] = sec
	}
	if Schemas[kind].Lookup("updated_at") != nil {
		data["updated_at"] = sec
	}

	var config map[string]any
	if kind == Plugins {
		config, _ = data["config"].(map[string]any)
		if data["config"] != nil && config == nil {
			return SchemaError(schema.Errors{"config": "expected a record"})
		}
		delete(data, "config")
	}
	snis, hasSNIs, serrs := takeDerived(kind, data)
	if serrs != nil {
		return SchemaError(serrs)
	}
	out, errs := Schemas[kind].Normalize(data, true)
	if errs == nil {
		errs = schema.Errors{}
	}
	entityChecks(kind, out, errs)
	var compiled any
	if kind == Plugins {
		compiled = f.checkPlugin(out, config, errs)
	}
	if len(errs) > 0 {
		return SchemaError(errs)
	}
	if err := resolveRefs(s, kind, out); err != nil {
		return err
	}
	if pw, ok := cmd.Body["password"].(string); ok && kind == BasicAuths &&
		(old == nil || pw != str(old.Data(), "password") || ref(old.Data(), "consumer") != ref(out, "consumer")) {
		// Hashed once, when the command carries a password: an update
		// that leaves it out keeps the stored hash, and so does one that
		// sends the stored hash back (a dump applied again).
		out["password"] = HashPassword(pw, ref(out, "consumer"))
	}
	if kind == CACertificates {
		caDigest(out)
	}
	if err := t.checkUnique(s, now, kind, out, old, idFree); err != nil {
		return err
	}
	e := NewEntity(kind, out["id"].(string), out)
	e.View = buildView(kind, out, compiled)
	if old != nil {
		t.replace(old, e)
	} else {
		t.index(e)
	}
	t.changes = append(t.changes, Change{Kind: kind, ID: e.ID, Before: old, After: e})
	if hasSNIs {
		return f.syncSNIs(t, now, e, snis)
	}
	return nil
}

// CheckFields validates an entity's own fields, as a create would, without
// a state: what a declarative document can check for every entity at once
// (references and uniqueness need the batch; see ApplyAllAt).
func (f *Fold) CheckFields(kind string, body map[string]any) map[string]any {
	if Schemas[kind] == nil {
		return map[string]any{"@entity": "unknown entity " + kind}
	}
	data := schema.DeepCopy(body).(map[string]any)
	if err := shorthands(kind, data, nil); err != nil {
		if f, ok := err.Fields.(map[string]any); ok {
			return f
		}
		return map[string]any{"@entity": err.Message}
	}
	for _, fr := range foreignFields[kind] {
		if data[fr.field] != nil {
			// Resolved and checked by the batch; here only its presence.
			data[fr.field] = map[string]any{"id": "00000000-0000-4000-8000-000000000000"}
		}
	}
	var config map[string]any
	if kind == Plugins {
		config, _ = data["config"].(map[string]any)
		if data["config"] != nil && config == nil {
			return map[string]any{"config": "expected a record"}
		}
		delete(data, "config")
	}
	if _, _, serrs := takeDerived(kind, data); serrs != nil {
		return map[string]any(serrs)
	}
	out, errs := Schemas[kind].Normalize(data, true)
	if errs == nil {
		errs = schema.Errors{}
	}
	entityChecks(kind, out, errs)
	if kind == Plugins {
		f.checkPlugin(out, config, errs)
	}
	if len(errs) == 0 {
		return nil
	}
	return map[string]any(errs)
}

// ApplyAllAt is ApplyAll that also says which command failed (-1 when
// none did).
func (f *Fold) ApplyAllAt(s *State, index uint64, now int64, cmds []*Command) (*State, []Change, int, *Error) {
	t := f.begin(s)
	for i, c := range cmds {
		if err := f.exec(t, t.live(), now, c); err != nil {
			return s, nil, i, err
		}
	}
	return t.commit(index), t.changes, -1, nil
}

// shorthands expands Kong's input conveniences before validation.
func shorthands(kind string, data map[string]any, old *Entity) *Error {
	switch kind {
	case Services:
		if u, ok := data["url"]; ok {
			delete(data, "url")
			s, _ := u.(string)
			p, err := ParseServiceURL(s)
			if err != nil {
				return SchemaError(schema.Errors{"url": err.Error()})
			}
			for k, v := range p {
				data[k] = v
			}
		}
	case Targets:
		if s, ok := data["target"].(string); ok && s != "" {
			data["target"] = normalizeTarget(s)
		}
	case Upstreams:
		// Kong keeps algorithm and hash_on consistent with each other.
		if h, ok := data["hash_on"].(string); ok && (old == nil || old.Data()["hash_on"] != h) {
			if h != "none" {
				data["algorithm"] = "consistent-hashing"
			} else if data["algorithm"] == "consistent-hashing" {
				data["algorithm"] = "round-robin"
			}
		}
		if a, ok := data["algorithm"].(string); ok && (a == "least-connections" || a == "latency" || a == "round-robin") {
			if a != "round-robin" || data["hash_on"] == nil {
				data["hash_on"] = "none"
			}
		}
	}
	return nil
}

// ParseServiceURL expands a service url into protocol, host, port and path
// as Kong's url shorthand does.
func ParseServiceURL(s string) (map[string]any, error) {
	s = strings.TrimSpace(s)
	u, err := url.Parse(s)
	if s == "" || err != nil || u.Host == "" || u.Hostname() == "" {
		return nil, fmt.Errorf("missing host in url")
	}
	out := map[string]any{"host": u.Hostname()}
	proto := u.Scheme
	port := 0
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil {
			return nil, fmt.Errorf("invalid port in url")
		}
		port = n
	}
	if proto == "" {
		proto = "http"
		if port == 443 {
			proto = "https"
		}
	}
	if port == 0 {
		port = 80
		if proto == "https" {
			port = 443
		}
	}
	out["protocol"] = proto
	out["port"] = float64(port)
	if u.EscapedPath() != "" {
		out["path"] = u.EscapedPath()
	} else {
		out["path"] = nil
	}
	return out, nil
}

func entityChecks(kind string, d map[string]any, errs schema.Errors) {
	switch kind {
	case Services:
		switch str(d, "protocol") {
		case "tcp", "tls", "udp", "grpc", "grpcs", "tls_passthrough":
			if d["path"] != nil {
				errs.AddEntity("value must be null when 'protocol' is " + str(d, "protocol"))
			}
		}
		if str(d, "protocol") != "https" && str(d, "protocol") != "tls" {
			for _, fld := range []string{"tls_verify", "tls_verify_depth", "ca_certificates", "client_certificate"} {
				if d[fld] != nil {
					errs[fld] = "value must be null when 'protocol' is " + str(d, "protocol")
				}
			}
		}
	case Routes:
		checkRoute(d, errs)
	case Certificates:
		certChecks(d, errs)
	case JWTSecrets:
		jwtChecks(d, errs)
	case Consumers:
		if str(d, "username") == "" && str(d, "custom_id") == "" {
			errs.AddEntity("at least one of these fields must be non-empty: 'custom_id', 'username'")
		}
	case Upstreams:
		h := str(d, "hash_on")
		need := map[string]string{"header": "hash_on_header", "cookie": "hash_on_cookie",
			"query_arg": "hash_on_query_arg", "uri_capture": "hash_on_uri_capture"}
		if fld := need[h]; fld != "" && str(d, fld) == "" {
			errs.AddEntity("failed conditional validation given value of field 'hash_on'")
			errs[fld] = "required field missing"
		}
		if (h == "none" || h == "cookie") && str(d, "hash_fallback") != "none" {
			errs["hash_fallback"] = "expected one of: none"
		}
	}
}

// checkRoute holds the route checks that involve more than one field.
// Path syntax (normalisation, regex compilation) is checked by the
// router-aware validator the proxy registers, see RouteValidator.
func checkRoute(d map[string]any, errs schema.Errors) {
	protos := strs(d, "protocols")
	groups := map[string]int{"http": 1, "https": 1, "ws": 1, "wss": 1, "tcp": 2, "tls": 2, "udp": 2,
		"tls_passthrough": 3, "grpc": 4, "grpcs": 4}
	for _, p := range protos {
		if groups[p] != groups[protos[0]] {
			errs["protocols"] = "these sets are mutually exclusive: ('http', 'https'), ('tcp', 'tls', 'udp'), " +
				"('tls_passthrough'), ('grpc', 'grpcs')"
			return
		}
	}
	isHTTP, isHTTPS := false, false
	for _, p := range protos {
		switch p {
		case "http", "https", "ws", "wss":
			isHTTP = true
			if p == "https" || p == "wss" {
				isHTTPS = true
			}
		}
	}
	if isHTTP {
		set := d["methods"] != nil || d["hosts"] != nil || d["headers"] != nil || d["paths"] != nil
		if isHTTPS {
			set = set || d["snis"] != nil
		}
		if !set {
			last := protos[len(protos)-1]
			if isHTTPS {
				errs.AddEntity("must set one of 'methods', 'hosts', 'headers', 'paths', 'snis' when 'protocols' is '" + last + "'")
			} else {
				errs.AddEntity("must set one of 'methods', 'hosts', 'headers', 'paths' when 'protocols' is '" + last + "'")
			}
		}
		if d["sources"] != nil {
			errs["sources"] = "cannot set 'sources' when 'protocols' is 'http' or 'https'"
		}
		if d["destinations"] != nil {
			errs["destinations"] = "cannot set 'destinations' when 'protocols' is 'http' or 'https'"
		}
	}
	tlsProto := false
	for _, p := range protos {
		tlsProto = tlsProto || p == "https" || p == "grpcs" || p == "tls" || p == "tls_passthrough" || p == "wss"
	}
	if d["snis"] != nil && !tlsProto {
		errs["snis"] = "'snis' can only be set when 'protocols' is 'grpcs', 'https', 'tls' or 'tls_passthrough'"
	}
	if RouteValidator != nil {
		for i, p := range strs(d, "paths") {
			if msg := RouteValidator(p); msg != "" {
				l, _ := errs["paths"].([]any)
				if l == nil {
					l = make([]any, len(strs(d, "paths")))
				}
				l[i] = msg
				errs["paths"] = l
			}
		}
	} else {
		for i, p := range strs(d, "paths") {
			if !strings.HasPrefix(p, "/") && !strings.HasPrefix(p, "~/") {
				l := make([]any, i+1)
				l[i] = "should start with: / (fixed path) or ~/ (regex path)"
				errs["paths"] = l
			}
		}
	}
}

// RouteValidator validates one route path (normalisation and regex
// syntax), returning Kong's message or "". The proxy's router owns path
// semantics, so cmd wires it here; fsm must not import the proxy.
var RouteValidator func(path string) string

func (f *Fold) checkPlugin(d, config map[string]any, errs schema.Errors) any {
	name := str(d, "name")
	if name == "" {
		return nil
	}
	var def PluginDef
	ok := false
	if f.Plugins != nil {
		def, ok = f.Plugins.Plugin(name)
	}
	if !ok {
		errs["name"] = "plugin '" + name + "' not enabled; add it to the 'plugins' configuration property"
		return nil
	}
	if config == nil {
		config = map[string]any{}
	}
	cfg, cerrs := def.ConfigSchema().Normalize(config, true)
	d["config"] = cfg
	if cerrs != nil {
		errs["config"] = cerrs
		return nil
	}
	compiled, cerrs := def.Compile(cfg)
	if len(cerrs) > 0 {
		errs["config"] = cerrs
		return nil
	}
	return compiled
}

func resolveRefs(s *State, kind string, d map[string]any) *Error {
	for _, fr := range foreignFields[kind] {
		r, _ := d[fr.field].(map[string]any)
		if r == nil {
			continue
		}
		if id, ok := r["id"].(string); ok {
			if s.Get(fr.kind, strings.ToLower(id)) == nil {
				msg := "the foreign key '" + luaTable(map[string]any{"id": id}) + "' does not reference an existing '" + fr.kind + "' entity."
				return &Error{Status: 400, Code: 4, Name: "foreign key violation", Message: msg,
					Fields: map[string]any{fr.field: msg}}
			}
			d[fr.field] = map[string]any{"id": strings.ToLower(id)}
			continue
		}
		ek := endpointKeys[fr.kind]
		v, _ := r[ek].(string)
		e := s.FindUnique(fr.kind, ek, v)
		if e == nil {
			q := luaTable(map[string]any{ek: v})
			return &Error{Status: 400, Code: 13, Name: "foreign keys unresolved",
				Message: "foreign key unresolved (" + fr.field + "." + ek + ": the foreign key cannot be resolved with '" +
					q + "' for an existing '" + fr.kind + "' entity)",
				Fields: map[string]any{fr.field: map[string]any{ek: "the foreign key cannot be resolved with '" +
					q + "' for an existing '" + fr.kind + "' entity"}}}
		}
		d[fr.field] = map[string]any{"id": e.ID}
	}
	return nil
}

// appendUnique appends the unique-index entry for field = v, if v is set.
func appendUnique(keys []string, kind, field, v string) []string {
	if v == "" {
		return keys
	}
	return append(keys, k(kind, field, v))
}

// uniqueKeys lists the unique-index entries an entity owns.
func uniqueKeys(kind string, d map[string]any) []string {
	keys, _ := uniqueEntries(kind, d, false)
	return keys
}

// uniqueEntries is uniqueKeys with, when fields is set, the Kong fields
// object reported when each one collides. Index maintenance asks for the
// keys only: building the objects was most of a large restore's
// unique-index pass.
func uniqueEntries(kind string, d map[string]any, fields bool) (keys []string, objs []map[string]any) {
	for _, fld := range uniqueFields[kind] {
		if v := str(d, fld); v != "" {
			keys = appendUnique(keys, kind, fld, v)
			if fields {
				objs = append(objs, map[string]any{fld: v})
			}
		}
	}
	switch kind {
	case Plugins:
		keys = append(keys, string(k(kind, "cache_key", pluginKey(str(d, "name"), ref(d, "route"), ref(d, "service"), ref(d, "consumer")))))
		if fields {
			objs = append(objs, map[string]any{"name": d["name"], "route": nullRef(d, "route"),
				"service": nullRef(d, "service"), "consumer": nullRef(d, "consumer")})
		}
	case Targets:
		keys = append(keys, string(k(kind, "target", ref(d, "upstream")+"|"+str(d, "target"))))
		if fields {
			objs = append(objs, map[string]any{"target": d["target"], "upstream": nullRef(d, "upstream")})
		}
	}
	return keys, objs
}

func nullRef(d map[string]any, f string) any {
	if id := ref(d, f); id != "" {
		return map[string]any{"id": id}
	}
	return nil
}

func (t *txn) checkUnique(s *State, now int64, kind string, d map[string]any, old *Entity, idFree bool) *Error {
	// Looked up before an expired credential is dropped below: s may be
	// the txn's live state, and the check is against the state the
	// command found.
	taken := old == nil && !idFree && s.Get(kind, d["id"].(string)) != nil
	keys, fields := uniqueEntries(kind, d, true)
	for i, key := range keys {
		id, ok := s.unique.Get(key)
		if ok && kind == KeyAuths {
			// An expired credential no longer holds its key. Expiry is
			// judged by the event's time, so every node agrees. The
			// credential being rewritten is left to the replace: dropping
			// it here too removed it twice (its hash twice, its child
			// key for good).
			if e := s.Get(kind, id); e != nil && e != old && e.View.(*KeyAuth).Expired(now/1e9) {
				t.unindex(e)
				t.changes = append(t.changes, Change{Kind: kind, ID: e.ID, Before: e})
				ok = false
			}
		}
		if ok && (old == nil || id != old.ID) && id != d["id"] {
			return uniqueError(fields[i])
		}
	}
	if taken {
		return &Error{Status: 409, Code: 3, Name: "primary key violation",
			Message: "primary key violation on key '" + luaTable(map[string]any{"id": d["id"]}) + "'",
			Fields:  map[string]any{"id": d["id"]}}
	}
	return nil
}

func (t *txn) index(e *Entity)        { t.swap(nil, e) }
func (t *txn) unindex(e *Entity)      { t.swap(e, nil) }
func (t *txn) replace(old, e *Entity) { t.swap(old, e) }

// swap replaces old with e, versions of one entity (old nil: e is new; e
// nil: old goes). The index trees are independent, so each has its own
// pass (revert runs them in parallel), and each touches only the keys
// that differ: most updates change no unique field, tag or reference, and
// every radix operation copies a path of the tree.
func (t *txn) swap(old, e *Entity) {
	t.swapEntity(old, e)
	t.swapUnique(old, e)
	t.swapChildren(old, e)
	t.swapCounts(old, e)
}

func (t *txn) swapEntity(old, e *Entity) {
	if e != nil {
		t.entities.Set(k(e.Kind, e.ID), e)
	} else {
		t.entities.Delete(k(old.Kind, old.ID))
	}
}

// swapUnique removes a unique key only while it still names this entity,
// so a batch that moves a name from one entity to another is right in
// either order.
func (t *txn) swapUnique(old, e *Entity) {
	var oldKeys, newKeys []string
	if old != nil {
		oldKeys = uniqueKeys(old.Kind, t.fields(old))
	}
	if e != nil {
		newKeys = uniqueKeys(e.Kind, t.fields(e))
	}
	for _, key := range oldKeys {
		if !slices.Contains(newKeys, key) {
			if id, ok := t.unique.Get(key); ok && id == old.ID {
				t.unique.Delete(key)
			}
		}
	}
	for _, key := range newKeys {
		// A key the old version held already names this entity: looked
		// up to leave its node unshared. A new one is set unlooked (half
		// of a bulk load's or a restore's index time was these lookups).
		if old == nil || !slices.Contains(oldKeys, key) {
			t.unique.Set(key, e.ID)
		} else if id, ok := t.unique.Get(key); !ok || id != e.ID {
			t.unique.Set(key, e.ID)
		}
	}
}

func (t *txn) swapChildren(old, e *Entity) {
	x := old
	if x == nil {
		x = e
	}
	frs := foreignFields[x.Kind]
	if len(frs) == 0 {
		return
	}
	var oldData, newData map[string]any
	if old != nil {
		oldData = t.fields(old)
	}
	if e != nil {
		newData = t.fields(e)
	}
	for _, fr := range frs {
		was, is := ref(oldData, fr.field), ref(newData, fr.field)
		if was == is {
			continue
		}
		if was != "" {
			t.children.Delete(k(fr.kind, was, x.Kind, x.ID))
		}
		if is != "" {
			t.children.Set(k(fr.kind, is, x.Kind, x.ID), struct{}{})
		}
	}
}

// swapCounts keeps the content hash and the plugin counts.
func (t *txn) swapCounts(old, e *Entity) {
	if old != nil {
		xorInto(&t.hash, entityHash(old))
	}
	if e != nil {
		xorInto(&t.hash, entityHash(e))
	}
	for _, x := range []*Entity{old, e} {
		if x == nil || x.Kind != Plugins {
			continue
		}
		d := 1
		if x == old {
			d = -1
		}
		data := t.fields(x)
		t.countPlugin(str(data, "name"), d)
		if ref(data, "consumer") != "" {
			t.consumer += d
		}
	}
}

// countPlugin copies the small name→count map on write, keeping older
// states valid.
func (t *txn) countPlugin(name string, d int) {
	m := make(map[string]int, len(t.names)+1)
	for n, c := range t.names {
		m[n] = c
	}
	m[name] += d
	if m[name] <= 0 {
		delete(m, name)
	}
	t.names = m
}

func (f *Fold) delete(t *txn, s *State, e *Entity) *Error {
	// Restrict: a service still used by routes cannot go (Kong does not
	// cascade route → service).
	if e.Kind == Services && s.HasChildren(Services, e.ID, Routes) {
		return &Error{Status: 400, Code: 4, Name: "foreign key violation",
			Message: "an existing 'routes' entity references this 'services' entity",
			Fields:  map[string]any{"@referenced_by": "routes"}}
	}
	if e.Kind == Certificates && s.HasChildren(Certificates, e.ID, Services) {
		return &Error{Status: 400, Code: 4, Name: "foreign key violation",
			Message: "an existing 'services' entity references this 'certificates' entity",
			Fields:  map[string]any{"@referenced_by": "services"}}
	}
	var dependants []*Entity
	for _, kind := range Kinds {
		for _, fr := range foreignFields[kind] {
			if fr.kind == e.Kind && fr.cascade {
				s.Children(e.Kind, e.ID, kind, func(c *Entity) bool {
					dependants = append(dependants, c)
					return true
				})
			}
		}
	}
	seen := map[string]bool{}
	for _, c := range dependants {
		if seen[c.Kind+c.ID] {
			continue
		}
		seen[c.Kind+c.ID] = true
		if err := f.delete(t, s, c); err != nil {
			return err
		}
	}
	if _, ok := t.entities.Get(k(e.Kind, e.ID)); !ok {
		return nil
	}
	t.unindex(e)
	t.changes = append(t.changes, Change{Kind: e.Kind, ID: e.ID, Before: e})
	return nil
}
