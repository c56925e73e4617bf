package fsm

import (
	"regexp"
	"strings"

	"github.com/gatehouse-gw/gatehouse/fsm/schema"
)

// Entity kinds, named as Kong names its DAOs.
const (
	Services     = "services"
	Routes       = "routes"
	Consumers    = "consumers"
	Plugins      = "plugins"
	Upstreams    = "upstreams"
	Targets      = "targets"
	KeyAuths     = "keyauth_credentials"
	BasicAuths   = "basicauth_credentials"
	JWTSecrets   = "jwt_secrets"
	Certificates = "certificates"
	SNIs         = "snis"
	// CACertificates is Kong's ca_certificates: CAs a service trusts.
	CACertificates = "ca_certificates"
	Admins         = "admins"
	Teams          = "teams"
	RBACRoles      = "rbac_roles"
	maxTimeoutMs   = 2147483646
)

// Kinds lists every entity kind in dependency order: a kind only references
// kinds before it. Snapshots and declarative exports use this order.
var Kinds = []string{Certificates, CACertificates, SNIs, Services, Routes, Consumers, Upstreams, Targets, KeyAuths, BasicAuths,
	JWTSecrets, Plugins, RBACRoles, Teams, Admins}

var (
	nameRe   = regexp.MustCompile(`^[\w.\-~\x{80}-\x{10FFFF}]+$`)
	methodRe = regexp.MustCompile(`^[A-Z]+$`)
	hostRe   = regexp.MustCompile(`^[A-Za-z0-9*]([A-Za-z0-9\-.*_]*[A-Za-z0-9*])?$`)
)

func between(lo, hi float64) *[2]float64 { return &[2]float64{lo, hi} }

func idField() *schema.Field {
	return &schema.Field{Name: "id", Type: schema.String, Auto: true, Check: checkUUID}
}

func tsField(n string) *schema.Field { return &schema.Field{Name: n, Type: schema.Integer, Auto: true} }

func nameField(unique bool) *schema.Field {
	return &schema.Field{Name: "name", Type: schema.String, Unique: unique, Match: nameRe,
		MatchEr: "invalid value: must only contain alphanumeric and '., -, _, ~' characters"}
}

func tagsField() *schema.Field {
	return &schema.Field{Name: "tags", Type: schema.Set, Elements: &schema.Field{Type: schema.String, Check: checkTag}}
}

func foreign(n, ref string, required bool) *schema.Field {
	return &schema.Field{Name: n, Type: schema.Foreign, Reference: ref, Required: required}
}

func timeout(n string) *schema.Field {
	return &schema.Field{Name: n, Type: schema.Integer, Default: 60000.0, Between: between(1, maxTimeoutMs)}
}

func checkTag(v any) string {
	s := v.(string)
	if s == "" || strings.ContainsAny(s, ",/") {
		return "invalid tag '" + s + "': expected printable ascii (except `,` and `/`) or valid utf-8 sequences"
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return "invalid tag '" + s + "': expected printable ascii (except `,` and `/`) or valid utf-8 sequences"
		}
	}
	return ""
}

func checkUUID(v any) string {
	if !IsUUID(v.(string)) {
		return "expected a valid UUID"
	}
	return ""
}

func checkHost(v any) string {
	s := v.(string)
	if strings.Contains(s, ":") && !strings.Contains(s, "[") && strings.Count(s, ":") == 1 {
		return "must not have a port"
	}
	if !hostRe.MatchString(s) || strings.Contains(s, "*") {
		if isIP(s) {
			return ""
		}
		return "invalid value: " + s
	}
	return ""
}

func checkServicePath(v any) string {
	s := v.(string)
	if !strings.HasPrefix(s, "/") {
		return "should start with: /"
	}
	if strings.Contains(s, "//") {
		return "must not have empty segments"
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '%' {
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return "invalid url-encoded value: '" + s[i:min(i+3, len(s))] + "'"
			}
			continue
		}
		if !isPathChar(c) {
			return "invalid path: '" + s + "' (characters outside of the reserved list of RFC 3986 found)"
		}
	}
	return ""
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func isPathChar(c byte) bool {
	if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
		return true
	}
	return strings.IndexByte("-._~:/?#[]@!$&'()*+,;=", c) >= 0
}

var serviceSchema = &schema.Schema{Name: Services, Fields: []*schema.Field{
	idField(), tsField("created_at"), tsField("updated_at"),
	nameField(true),
	{Name: "retries", Type: schema.Integer, Default: 5.0, Between: between(0, 32767)},
	{Name: "protocol", Type: schema.String, Default: "http", Required: true,
		OneOf: []string{"grpc", "grpcs", "http", "https", "tcp", "tls", "tls_passthrough", "udp"}},
	{Name: "host", Type: schema.String, Required: true, Check: checkHost},
	{Name: "port", Type: schema.Integer, Default: 80.0, Required: true, Between: between(0, 65535)},
	{Name: "path", Type: schema.String, Check: checkServicePath},
	timeout("connect_timeout"), timeout("write_timeout"), timeout("read_timeout"),
	tagsField(),
	foreign("client_certificate", "certificates", false),
	{Name: "tls_verify", Type: schema.Boolean},
	{Name: "tls_verify_depth", Type: schema.Integer, Between: between(0, 64)},
	{Name: "ca_certificates", Type: schema.Array, Elements: &schema.Field{Type: schema.String, Check: checkUUID}},
	{Name: "enabled", Type: schema.Boolean, Default: true, Required: true},
}}

var protocolsAll = []string{"grpc", "grpcs", "http", "https", "tcp", "tls", "tls_passthrough", "udp", "ws", "wss"}

var routeSchema = &schema.Schema{Name: Routes, Fields: []*schema.Field{
	idField(), tsField("created_at"), tsField("updated_at"),
	nameField(true),
	{Name: "protocols", Type: schema.Set, Default: []any{"http", "https"}, Required: true,
		Elements: &schema.Field{Type: schema.String, OneOf: protocolsAll}},
	{Name: "methods", Type: schema.Set, Elements: &schema.Field{Type: schema.String, Match: methodRe,
		MatchEr: "invalid value: must be uppercase"}},
	{Name: "hosts", Type: schema.Array, Elements: &schema.Field{Type: schema.String, Check: checkRouteHost}},
	{Name: "paths", Type: schema.Array, Elements: &schema.Field{Type: schema.String}},
	{Name: "headers", Type: schema.Map, Keys: &schema.Field{Type: schema.String, Check: checkHeaderName},
		Values: &schema.Field{Type: schema.Array, Elements: &schema.Field{Type: schema.String}}},
	{Name: "https_redirect_status_code", Type: schema.Integer, Default: 426.0, Required: true,
		Check: func(v any) string {
			switch v.(float64) {
			case 426, 301, 302, 307, 308:
				return ""
			}
			return "expected one of: 426, 301, 302, 307, 308"
		}},
	{Name: "regex_priority", Type: schema.Integer, Default: 0.0},
	{Name: "strip_path", Type: schema.Boolean, Default: true, Required: true},
	{Name: "path_handling", Type: schema.String, Default: "v0", OneOf: []string{"v0", "v1"}},
	{Name: "preserve_host", Type: schema.Boolean, Default: false, Required: true},
	{Name: "request_buffering", Type: schema.Boolean, Default: true, Required: true},
	{Name: "response_buffering", Type: schema.Boolean, Default: true, Required: true},
	{Name: "snis", Type: schema.Set, Elements: &schema.Field{Type: schema.String, Check: checkRouteHost}},
	{Name: "sources", Type: schema.Set, Elements: &schema.Field{Type: schema.Record, Fields: []*schema.Field{
		{Name: "ip", Type: schema.String}, {Name: "port", Type: schema.Integer, Between: between(0, 65535)}}}},
	{Name: "destinations", Type: schema.Set, Elements: &schema.Field{Type: schema.Record, Fields: []*schema.Field{
		{Name: "ip", Type: schema.String}, {Name: "port", Type: schema.Integer, Between: between(0, 65535)}}}},
	tagsField(),
	foreign("service", Services, false),
}}

func checkHeaderName(v any) string {
	if strings.EqualFold(v.(string), "host") {
		return "cannot contain 'host' header, which must be specified in the 'hosts' attribute"
	}
	return ""
}

func checkRouteHost(v any) string {
	s := v.(string)
	h := s
	if i := strings.LastIndexByte(s, ':'); i > 0 && !strings.Contains(s, "]") {
		h = s[:i]
	}
	if n := strings.Count(h, "*"); n > 1 {
		return "invalid wildcard: must have at most one wildcard"
	} else if n == 1 && !strings.HasPrefix(h, "*.") && !strings.HasSuffix(h, ".*") {
		return "invalid wildcard: must be placed at leftmost or rightmost label"
	}
	if h == "" || !hostRe.MatchString(h) && !isIP(h) {
		return "invalid hostname: " + s
	}
	return ""
}

var consumerSchema = &schema.Schema{Name: Consumers, Fields: []*schema.Field{
	idField(), tsField("created_at"), tsField("updated_at"),
	{Name: "username", Type: schema.String, Unique: true},
	{Name: "custom_id", Type: schema.String, Unique: true},
	tagsField(),
}}

var pluginSchema = &schema.Schema{Name: Plugins, Fields: []*schema.Field{
	idField(), tsField("created_at"), tsField("updated_at"),
	{Name: "name", Type: schema.String, Required: true},
	{Name: "instance_name", Type: schema.String, Unique: true, Match: nameRe,
		MatchEr: "invalid value: must only contain alphanumeric and '., -, _, ~' characters"},
	foreign("route", Routes, false),
	foreign("service", Services, false),
	foreign("consumer", Consumers, false),
	{Name: "config", Type: schema.Record, Nullable: true},
	{Name: "protocols", Type: schema.Set, Default: []any{"grpc", "grpcs", "http", "https"}, Required: true,
		Elements: &schema.Field{Type: schema.String, OneOf: protocolsAll}},
	{Name: "enabled", Type: schema.Boolean, Default: true, Required: true},
	tagsField(),
	{Name: "ordering", Type: schema.Record, Nullable: true},
}}

var statuses = func(l ...float64) []any {
	out := make([]any, len(l))
	for i, s := range l {
		out[i] = s
	}
	return out
}

func statusList(def []any) *schema.Field {
	return &schema.Field{Name: "http_statuses", Type: schema.Array, Default: def,
		Elements: &schema.Field{Type: schema.Integer, Between: between(100, 999)}}
}

func counter(n string) *schema.Field {
	return &schema.Field{Name: n, Type: schema.Integer, Default: 0.0, Between: between(0, 255)}
}

var healthchecksField = &schema.Field{Name: "healthchecks", Type: schema.Record, Fields: []*schema.Field{
	{Name: "active", Type: schema.Record, Fields: []*schema.Field{
		{Name: "type", Type: schema.String, Default: "http", OneOf: []string{"tcp", "http", "https", "grpc", "grpcs"}},
		{Name: "timeout", Type: schema.Number, Default: 1.0, Between: between(0, 65535)},
		{Name: "concurrency", Type: schema.Integer, Default: 10.0, Between: between(1, 2147483648)},
		{Name: "http_path", Type: schema.String, Default: "/"},
		{Name: "https_sni", Type: schema.String},
		{Name: "https_verify_certificate", Type: schema.Boolean, Default: true},
		{Name: "headers", Type: schema.Map, Keys: &schema.Field{Type: schema.String},
			Values: &schema.Field{Type: schema.Array, Elements: &schema.Field{Type: schema.String}}},
		{Name: "healthy", Type: schema.Record, Fields: []*schema.Field{
			{Name: "interval", Type: schema.Number, Default: 0.0, Between: between(0, 65535)},
			statusList(statuses(200, 302)),
			counter("successes"),
		}},
		{Name: "unhealthy", Type: schema.Record, Fields: []*schema.Field{
			{Name: "interval", Type: schema.Number, Default: 0.0, Between: between(0, 65535)},
			statusList(statuses(429, 404, 500, 501, 502, 503, 504, 505)),
			counter("tcp_failures"), counter("timeouts"), counter("http_failures"),
		}},
	}},
	{Name: "passive", Type: schema.Record, Fields: []*schema.Field{
		{Name: "type", Type: schema.String, Default: "http", OneOf: []string{"tcp", "http", "https", "grpc", "grpcs"}},
		{Name: "healthy", Type: schema.Record, Fields: []*schema.Field{
			statusList(statuses(200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303, 304, 305, 306, 307, 308)),
			counter("successes"),
		}},
		{Name: "unhealthy", Type: schema.Record, Fields: []*schema.Field{
			statusList(statuses(429, 500, 503)),
			counter("tcp_failures"), counter("timeouts"), counter("http_failures"),
		}},
	}},
	{Name: "threshold", Type: schema.Number, Default: 0.0, Between: between(0, 100)},
}}

var hashOn = []string{"none", "consumer", "ip", "header", "cookie", "path", "query_arg", "uri_capture"}

var upstreamSchema = &schema.Schema{Name: Upstreams, Fields: []*schema.Field{
	idField(), tsField("created_at"), tsField("updated_at"),
	{Name: "name", Type: schema.String, Required: true, Unique: true, Check: checkUpstreamName},
	{Name: "algorithm", Type: schema.String, Default: "round-robin",
		OneOf: []string{"consistent-hashing", "least-connections", "round-robin", "latency"}},
	{Name: "hash_on", Type: schema.String, Default: "none", OneOf: hashOn},
	{Name: "hash_fallback", Type: schema.String, Default: "none", OneOf: hashOn},
	{Name: "hash_on_header", Type: schema.String},
	{Name: "hash_fallback_header", Type: schema.String},
	{Name: "hash_on_cookie", Type: schema.String},
	{Name: "hash_on_cookie_path", Type: schema.String, Default: "/"},
	{Name: "hash_on_query_arg", Type: schema.String},
	{Name: "hash_fallback_query_arg", Type: schema.String},
	{Name: "hash_on_uri_capture", Type: schema.String},
	{Name: "hash_fallback_uri_capture", Type: schema.String},
	{Name: "slots", Type: schema.Integer, Default: 10000.0, Between: between(10, 65536)},
	healthchecksField,
	tagsField(),
	{Name: "host_header", Type: schema.String},
	foreign("client_certificate", "certificates", false),
	{Name: "use_srv_name", Type: schema.Boolean, Default: false},
}}

func checkUpstreamName(v any) string {
	s := v.(string)
	if isIP(s) {
		return "Invalid name ('" + s + "'); no ip addresses allowed"
	}
	if strings.Contains(s, ":") {
		return "Invalid name ('" + s + "'); no port allowed"
	}
	if !hostRe.MatchString(s) || strings.Contains(s, "*") {
		return "Invalid name ('" + s + "'); must be a valid hostname"
	}
	return ""
}

var targetSchema = &schema.Schema{Name: Targets, Fields: []*schema.Field{
	idField(),
	{Name: "created_at", Type: schema.Number, Auto: true},
	{Name: "updated_at", Type: schema.Number, Auto: true},
	foreign("upstream", Upstreams, true),
	{Name: "target", Type: schema.String, Required: true, Check: checkTarget},
	{Name: "weight", Type: schema.Integer, Default: 100.0, Between: between(0, 65535)},
	tagsField(),
}}

var keyAuthSchema = &schema.Schema{Name: KeyAuths, Fields: []*schema.Field{
	idField(), tsField("created_at"),
	foreign("consumer", Consumers, true),
	{Name: "key", Type: schema.String, Unique: true, Auto: true, MinLen: 1, Secret: true},
	{Name: "ttl", Type: schema.Integer, Between: between(0, 100000000)},
	tagsField(),
}}

// basicAuthSchema is Kong's basic-auth credential. The password is stored
// as Kong stores it, sha1_hex(password .. consumer_id) (see HashPassword),
// so credentials move between Kong and Gatehouse unchanged.
var basicAuthSchema = &schema.Schema{Name: BasicAuths, Fields: []*schema.Field{
	idField(), tsField("created_at"),
	foreign("consumer", Consumers, true),
	{Name: "username", Type: schema.String, Required: true, Unique: true, MinLen: 1},
	{Name: "password", Type: schema.String, Required: true, MinLen: 1, Secret: true},
	tagsField(),
}}

// jwtSecretSchema is Kong's jwt credential: the key a token names (in its
// iss claim by default) and what verifies its signature, a shared secret
// or a public key.
var jwtSecretSchema = &schema.Schema{Name: JWTSecrets, Fields: []*schema.Field{
	idField(), tsField("created_at"),
	foreign("consumer", Consumers, true),
	{Name: "key", Type: schema.String, Unique: true, MinLen: 1},
	{Name: "secret", Type: schema.String, Secret: true},
	{Name: "rsa_public_key", Type: schema.String},
	{Name: "algorithm", Type: schema.String, Default: "HS256", OneOf: []string{"HS256", "HS384", "HS512",
		"RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "EdDSA"}},
	tagsField(),
}}

// Roles are the predefined admin roles (Konnect's model).
var Roles = []string{"super-admin", "admin", "operator", "read-only", "auditor"}

// adminSchema describes who may use the Admin API. Only a hash of each
// token is stored (and replicated, and kept in the history); the token
// itself is shown once, when created.
var adminSchema = &schema.Schema{Name: Admins, Fields: []*schema.Field{
	idField(), tsField("created_at"), tsField("updated_at"),
	{Name: "username", Type: schema.String, Required: true, Unique: true, Match: nameRe,
		MatchEr: "invalid value: must only contain alphanumeric and '., -, _, ~' characters"},
	{Name: "token_hash", Type: schema.String, Required: true, Unique: true, Secret: true},
	{Name: "roles", Type: schema.Set, Default: []any{}, Required: true, Elements: &schema.Field{Type: schema.String}},
	{Name: "teams", Type: schema.Set, Default: []any{}, Required: true, Elements: &schema.Field{Type: schema.String}},
	tagsField(),
}}

// teamSchema groups admins; a team holds roles its members inherit.
var teamSchema = &schema.Schema{Name: Teams, Fields: []*schema.Field{
	idField(), tsField("created_at"), tsField("updated_at"),
	nameField(true),
	{Name: "roles", Type: schema.Set, Default: []any{}, Required: true, Elements: &schema.Field{Type: schema.String}},
	tagsField(),
}}

// roleSchema is a custom role: allow/deny rules on an entity type and an
// operation; a matching deny wins over any allow.
var roleSchema = &schema.Schema{Name: RBACRoles, Fields: []*schema.Field{
	idField(), tsField("created_at"), tsField("updated_at"),
	nameField(true),
	{Name: "permissions", Type: schema.Array, Default: []any{}, Required: true, Elements: &schema.Field{
		Type: schema.Record, Fields: []*schema.Field{
			{Name: "effect", Type: schema.String, Default: "allow", OneOf: []string{"allow", "deny"}},
			{Name: "entity", Type: schema.String, Required: true},
			{Name: "op", Type: schema.String, Default: "*", OneOf: []string{"read", "create", "update", "delete", "*"}},
			// tags narrows the rule to entities carrying one of them.
			{Name: "tags", Type: schema.Set, Elements: &schema.Field{Type: schema.String}},
		}}},
	tagsField(),
}}

// Schemas maps each kind to its schema.
var Schemas = map[string]*schema.Schema{
	Services: serviceSchema, Routes: routeSchema, Consumers: consumerSchema, Plugins: pluginSchema,
	Upstreams: upstreamSchema, Targets: targetSchema, KeyAuths: keyAuthSchema, Admins: adminSchema,
	Teams: teamSchema, RBACRoles: roleSchema, BasicAuths: basicAuthSchema,
	Certificates: certificateSchema, SNIs: sniSchema, CACertificates: caCertificateSchema,
	JWTSecrets: jwtSecretSchema,
}

// endpointKeys is the field a non-UUID URL key is looked up by.
var endpointKeys = map[string]string{
	Services: "name", Routes: "name", Consumers: "username", Plugins: "instance_name",
	Upstreams: "name", Targets: "target", KeyAuths: "key", Admins: "username",
	Teams: "name", RBACRoles: "name", BasicAuths: "username", SNIs: "name", JWTSecrets: "key",
}

// EndpointKey returns the field a non-UUID URL key of kind is matched against.
func EndpointKey(kind string) string { return endpointKeys[kind] }

// uniqueFields lists single-field unique constraints per kind.
var uniqueFields = map[string][]string{
	Services: {"name"}, Routes: {"name"}, Consumers: {"username", "custom_id"}, Plugins: {"instance_name"},
	Upstreams: {"name"}, KeyAuths: {"key"}, Admins: {"username", "token_hash"},
	Teams: {"name"}, RBACRoles: {"name"}, BasicAuths: {"username"}, SNIs: {"name"},
	CACertificates: {"cert_digest"}, JWTSecrets: {"key"},
}

// foreignFields lists each kind's references, and what happens to the
// referencing entity when its parent is deleted.
type foreignRef struct {
	field, kind string
	cascade     bool
}

var foreignFields = map[string][]foreignRef{
	Routes:     {{"service", Services, false}},
	Plugins:    {{"route", Routes, true}, {"service", Services, true}, {"consumer", Consumers, true}},
	Targets:    {{"upstream", Upstreams, true}},
	KeyAuths:   {{"consumer", Consumers, true}},
	BasicAuths: {{"consumer", Consumers, true}},
	JWTSecrets: {{"consumer", Consumers, true}},
	SNIs:       {{"certificate", Certificates, true}},
	Services:   {{"client_certificate", Certificates, false}},
}

// ForeignField is a reference from one kind to another.
type ForeignField struct{ Field, Kind string }

// ForeignFields lists kind's references to other entities.
func ForeignFields(kind string) []ForeignField {
	var out []ForeignField
	for _, fr := range foreignFields[kind] {
		out = append(out, ForeignField{fr.field, fr.kind})
	}
	return out
}
