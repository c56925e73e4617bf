package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"strings"
	"time"

	"github.com/gatehouse-gw/gatehouse/fsm"
	"github.com/gatehouse-gw/gatehouse/log"
)

// Auth configures Admin API authentication. With Enabled false every
// request acts as "anonymous" with full rights (Kong OSS's model: protect
// the listener by binding it to loopback).
type Auth struct {
	Enabled bool
	// BootstrapToken, when set, is always accepted as a super-admin: it
	// is how nodes authenticate to each other and how an operator gets in
	// before any admin exists (Consul's initial management token).
	BootstrapToken string
}

// principal is who a request acts as.
type principal struct {
	actor string
	roles []string
	// scoped is set when the request's permission depends on tags: the
	// handler must then check the entities it touches (entityAllowed).
	scoped bool
	perm   perm
}

type principalKey struct{}

// HashToken is how tokens are stored: only this hash is replicated.
func HashToken(tok string) string {
	h := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(h[:])
}

func requestToken(r *http.Request) string {
	if t := r.Header.Get("Kong-Admin-Token"); t != "" {
		return t
	}
	if a := r.Header.Get("Authorization"); len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
		return strings.TrimSpace(a[7:])
	}
	return ""
}

// authenticate resolves the request's token to a principal and checks the
// permission the request needs. ok is false after 401/403 was written.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (*http.Request, bool) {
	p := &principal{actor: "anonymous", roles: []string{"super-admin"}}
	if s.cfg.Auth.Enabled {
		tok := requestToken(r)
		if tok == "" {
			message(w, 401, "Unauthorized: an admin token is required (Kong-Admin-Token or Authorization: Bearer)")
			return r, false
		}
		p = s.identify(tok)
		if p == nil {
			message(w, 401, "Invalid credentials. Token or User credentials required")
			return r, false
		}
		p.perm = permission(r.Method, r.URL.Path)
		ok, scoped := decide(s.cfg.Store.State(), p.roles, p.perm, nil)
		if !ok {
			s.recordDenied(r, p)
			message(w, 403, "Forbidden: missing permission '"+p.perm.String()+"'")
			return r, false
		}
		p.scoped = scoped
	}
	return r.WithContext(context.WithValue(r.Context(), principalKey{}, p)), true
}

func (s *Server) identify(tok string) *principal {
	if bt := s.cfg.Auth.BootstrapToken; bt != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(bt)) == 1 {
		return &principal{actor: "bootstrap", roles: []string{"super-admin"}}
	}
	st := s.cfg.Store.State()
	e := st.FindUnique(fsm.Admins, "token_hash", HashToken(tok))
	if e == nil {
		return nil
	}
	a := e.View.(*fsm.Admin)
	roles := append([]string(nil), a.Roles...)
	for _, name := range a.Teams {
		if te := st.FindUnique(fsm.Teams, "name", name); te != nil {
			roles = append(roles, te.View.(*fsm.Team).Roles...)
		}
	}
	return &principal{actor: a.Username, roles: roles}
}

func actorOf(r *http.Request) string {
	if p, ok := r.Context().Value(principalKey{}).(*principal); ok {
		return p.actor
	}
	return "anonymous"
}

// perm is an entity type and operation, e.g. services:create.
type perm struct{ entity, op string }

func (p perm) String() string { return p.entity + ":" + p.op }

var collections = map[string]string{
	"services": "services", "routes": "routes", "consumers": "consumers", "plugins": "plugins",
	"upstreams": "upstreams", "targets": "targets", "key-auth": "credentials", "key-auths": "credentials",
	"basic-auth": "credentials", "basic-auths": "credentials", "jwt": "credentials", "jwts": "credentials",
	"certificates": "certificates", "snis": "certificates", "ca_certificates": "certificates",
	"rbac": "rbac", "cluster": "cluster", "proxy-cache": "proxy-cache", "audit": "audit",
	"rate-limits": "plugins",
}

// permission names what a request needs: the innermost collection in its
// path (so /consumers/x/key-auth is credentials) and the operation.
func permission(method, path string) perm {
	entity := "config" // /, /status, /schemas, /tags, /endpoints
	for _, seg := range strings.Split(strings.Trim(path, "/"), "/") {
		if e, ok := collections[seg]; ok {
			entity = e
		}
	}
	op := "read"
	switch method {
	case "POST":
		op = "create"
		if strings.HasSuffix(path, "/validate") {
			op = "read"
		}
	case "PUT", "PATCH":
		op = "update"
	case "DELETE":
		op = "delete"
	}
	return perm{entity, op}
}

// decide applies the roles an admin holds directly or through its teams.
// Predefined roles:
//   - super-admin: everything;
//   - admin: everything but RBAC;
//   - operator: configuration, but neither credentials, RBAC nor cluster
//     membership changes;
//   - read-only: reads of everything but RBAC;
//   - auditor: the audit API and status reads.
//
// Any other name is a custom role from /rbac/roles; a matching deny in any
// custom role wins over every allow. Unknown names grant nothing. A rule
// with tags covers only entities carrying one of them: with tags nil (not
// known yet, before the handler has found the entity) such a rule counts
// as a possible allow and scoped reports that the entity must be checked.
func decide(st *fsm.State, roles []string, p perm, tags []string) (ok, scoped bool) {
	known := tags != nil
	for _, role := range roles {
		switch role {
		case "super-admin":
			ok = true
		case "admin":
			ok = ok || p.entity != "rbac"
		case "operator":
			ok = ok || p.entity != "rbac" && p.entity != "credentials" && (p.entity != "cluster" || p.op == "read")
		case "read-only":
			ok = ok || p.op == "read" && p.entity != "rbac"
		case "auditor":
			ok = ok || p.op == "read" && (p.entity == "audit" || p.entity == "config")
		default:
			e := st.FindUnique(fsm.RBACRoles, "name", role)
			if e == nil {
				continue
			}
			for _, rule := range e.View.(*fsm.Role).Permissions {
				if (rule.Entity != "*" && rule.Entity != p.entity) || (rule.Op != "*" && rule.Op != p.op) {
					continue
				}
				if len(rule.Tags) > 0 && !known {
					scoped = true
					if !rule.Deny {
						ok = true // possibly; the handler checks the entity
					}
					continue
				}
				if len(rule.Tags) > 0 && !intersects(rule.Tags, tags) {
					continue
				}
				if rule.Deny {
					return false, false
				}
				ok = true
			}
		}
	}
	return ok, scoped
}

func intersects(a, b []string) bool {
	for _, x := range a {
		for _, y := range b {
			if x == y {
				return true
			}
		}
	}
	return false
}

// entityAllowed re-checks a tag-scoped request against an entity's tags.
// Requests that did not depend on tags pass without work.
func entityAllowed(st *fsm.State, r *http.Request, data map[string]any) bool {
	p, ok := r.Context().Value(principalKey{}).(*principal)
	if !ok || !p.scoped {
		return true
	}
	tags := []string{}
	if l, ok := data["tags"].([]any); ok {
		for _, t := range l {
			if s, ok := t.(string); ok {
				tags = append(tags, s)
			}
		}
	}
	allowed, _ := decide(st, p.roles, p.perm, tags)
	return allowed
}

func (s *Server) forbidden(w http.ResponseWriter, r *http.Request) {
	p, _ := r.Context().Value(principalKey{}).(*principal)
	s.recordDenied(r, p)
	message(w, 403, "Forbidden: missing permission '"+p.perm.String()+"' for this entity's tags")
}

// BootstrapAdmin creates the first super-admin, named "admin", with the
// given token, unless an admin exists already. It is meant to run on the
// leader; on a follower it returns ErrNotLeader-like errors from the
// appender and the caller retries.
func (s *Server) BootstrapAdmin(ctx context.Context, token string) (created bool, err error) {
	if s.HasAdmins() {
		return false, nil
	}
	cmd := &fsm.Command{Op: "create", Kind: fsm.Admins, NewID: NewUUID(), Body: map[string]any{
		"username": "admin", "roles": []any{"super-admin"}, "token_hash": HashToken(token)}}
	payload, err := fsm.EncodeCommand(cmd)
	if err != nil {
		return false, err
	}
	data, err := log.Encode(&log.Event{Type: log.TypeEntity, Time: time.Now().UnixNano(), Actor: "bootstrap",
		Node: s.cfg.NodeID, RequestID: NewUUID(), Op: cmd.Op, Entity: cmd.Kind, EntityID: cmd.NewID, Payload: payload})
	if err != nil {
		return false, err
	}
	res, err := s.cfg.Appender.Apply(ctx, data)
	if err != nil {
		return false, err
	}
	if res.Err != nil {
		// Another node's bootstrap won the race (unique username).
		return false, nil
	}
	return true, nil
}

// NewToken returns a fresh random admin token.
func NewToken() string { return randomKey() }

// HasAdmins reports whether any admin exists.
func (s *Server) HasAdmins() bool {
	exists := false
	s.cfg.Store.State().Walk(fsm.Admins, "", func(*fsm.Entity) bool { exists = true; return false })
	return exists
}
