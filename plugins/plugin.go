// Package plugins is the plugin API: the phases a plugin may implement, the
// engine-neutral request context it sees, and the registry that maps Kong
// plugin names to implementations. One sub-package per plugin.
package plugins

import (
	"sort"

	"github.com/gatehouse-gw/gatehouse/fsm"
	"github.com/gatehouse-gw/gatehouse/fsm/schema"
)

// Handler is a compiled plugin instance: the plugin's parsed config. It
// implements any of the phase interfaces below; the proxy calls only the
// phases a handler has.
type Handler any

// Accessor runs in Kong's rewrite/access phase, before the request is
// proxied. It may end the request with ctx.Exit.
type Accessor interface{ Access(ctx *Context) }

// HeaderFilter runs when the response headers are known (proxied or
// produced by a plugin's exit).
type HeaderFilter interface{ HeaderFilter(ctx *Context) }

// BodyFilter runs with the complete response body.
type BodyFilter interface{ BodyFilter(ctx *Context) }

// Logger runs after the response has been sent.
type Logger interface{ Log(ctx *Context) }

// Definition describes one plugin kind.
type Definition struct {
	Name     string
	Priority int // Kong's PRIORITY: higher runs first
	Version  string
	// Config is the schema of the plugin's config record.
	Config *schema.Schema
	// Compile checks cross-field rules and parses a normalized config into
	// the handler the proxy runs. It is called once per event, never per
	// request.
	Compile func(config map[string]any) (Handler, schema.Errors)
	// Consumer false means the plugin cannot be scoped to a consumer
	// (authentication plugins).
	NoConsumer bool
}

// Registry maps plugin names to definitions. It implements
// fsm.PluginRegistry.
type Registry struct {
	defs map[string]*Definition
}

// NewRegistry returns a registry holding defs.
func NewRegistry(defs ...*Definition) *Registry {
	r := &Registry{defs: map[string]*Definition{}}
	for _, d := range defs {
		r.defs[d.Name] = d
	}
	return r
}

// Get returns the named definition.
func (r *Registry) Get(name string) (*Definition, bool) {
	d, ok := r.defs[name]
	return d, ok
}

// Names lists the registered plugin names, sorted.
func (r *Registry) Names() []string {
	out := make([]string, 0, len(r.defs))
	for n := range r.defs {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Plugin implements fsm.PluginRegistry.
func (r *Registry) Plugin(name string) (fsm.PluginDef, bool) {
	d, ok := r.defs[name]
	if !ok {
		return nil, false
	}
	return def{d}, true
}

type def struct{ d *Definition }

func (d def) ConfigSchema() *schema.Schema { return d.d.Config }

func (d def) Compile(cfg map[string]any) (any, schema.Errors) { return d.d.Compile(cfg) }

var _ fsm.PluginRegistry = (*Registry)(nil)
