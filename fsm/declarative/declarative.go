// Package declarative reads and writes Kong's declarative configuration
// format: the document decK and kong.yaml use, with services holding their
// routes and plugins, consumers their credentials and plugins, upstreams
// their targets.
package declarative

import (
	"github.com/gatehouse-gw/gatehouse/fsm"
)

// FormatVersion is the declarative format version RenderJSON writes.
const FormatVersion = "3.0"

// owner is the single entity a plugin is nested under ("service", "route"
// or "consumer"), or "" for a global plugin or one scoped to several
// entities at once, which stays at the top level.
func owner(p *fsm.Entity) string {
	found, d := "", p.Data()
	for _, f := range []string{"service", "route", "consumer"} {
		if d[f] != nil {
			if found != "" {
				return ""
			}
			found = f
		}
	}
	return found
}
