package fsm

import (
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"net"
	"strconv"
	"strings"
	"time"
)

// The typed views below are what the proxy reads on every request. They
// are derived from Entity.Data once, when the event is applied, so the hot
// path never touches a map[string]any.

// Service is the proxy's view of a service.
type Service struct {
	ID, Name       string
	Protocol, Host string
	Port           int
	Path           string // "" when unset
	Retries        int
	ConnectTimeout time.Duration
	WriteTimeout   time.Duration
	ReadTimeout    time.Duration
	Enabled        bool
	// Upstream TLS (https services): the client certificate presented,
	// whether the upstream's certificate is verified, and against which
	// CAs (ca_certificates; none means the system's).
	ClientCertificateID string
	TLSVerify           bool
	CACertificateIDs    []string
}

// Route is the proxy's view of a route.
type Route struct {
	ID, Name      string
	ServiceID     string
	Protocols     []string
	Methods       []string
	Hosts         []string
	Paths         []string
	Headers       map[string][]string
	SNIs          []string
	StripPath     bool
	PreserveHost  bool
	RegexPriority int
	PathHandling  string
	HTTPSRedirect int
}

// Consumer is the proxy's view of a consumer.
type Consumer struct {
	ID, Username, CustomID string
}

// Plugin is the proxy's view of a plugin instance. Compiled is the plugin's
// parsed config, built by the plugin registry when the event was applied.
type Plugin struct {
	ID, Name                       string
	RouteID, ServiceID, ConsumerID string
	Enabled                        bool
	Protocols                      []string
	Config                         map[string]any
	Compiled                       any
	UpdatedAt                      int64
}

// Upstream is the proxy's view of an upstream.
type Upstream struct {
	ID, Name   string
	Algorithm  string
	HostHeader string
}

// Target is the proxy's view of a target.
type Target struct {
	ID, UpstreamID string
	Host           string
	Port           int
	Weight         int
}

// KeyAuth is a key-auth credential.
type KeyAuth struct {
	ID, ConsumerID, Key string
	ExpiresAt           int64 // unix seconds; 0 = never
}

func str(m map[string]any, k string) string { s, _ := m[k].(string); return s }

func num(m map[string]any, k string) float64 { n, _ := m[k].(float64); return n }

func boolean(m map[string]any, k string) bool { b, _ := m[k].(bool); return b }

func strs(m map[string]any, k string) []string {
	l, _ := m[k].([]any)
	if l == nil {
		return nil
	}
	out := make([]string, 0, len(l))
	for _, v := range l {
		if s, ok := v.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func ref(m map[string]any, k string) string {
	r, _ := m[k].(map[string]any)
	return str(r, "id")
}

func ms(m map[string]any, k string) time.Duration {
	return time.Duration(num(m, k)) * time.Millisecond
}

func buildView(kind string, d map[string]any, compiled any) any {
	switch kind {
	case Services:
		return &Service{
			ID: str(d, "id"), Name: str(d, "name"), Protocol: str(d, "protocol"), Host: str(d, "host"),
			Port: int(num(d, "port")), Path: str(d, "path"), Retries: int(num(d, "retries")),
			ConnectTimeout: ms(d, "connect_timeout"), WriteTimeout: ms(d, "write_timeout"),
			ReadTimeout: ms(d, "read_timeout"), Enabled: boolean(d, "enabled"),
			ClientCertificateID: ref(d, "client_certificate"), TLSVerify: boolean(d, "tls_verify"),
			CACertificateIDs: strs(d, "ca_certificates"),
		}
	case Routes:
		r := &Route{
			ID: str(d, "id"), Name: str(d, "name"), ServiceID: ref(d, "service"),
			Protocols: strs(d, "protocols"), Methods: strs(d, "methods"), Hosts: strs(d, "hosts"),
			Paths: strs(d, "paths"), SNIs: strs(d, "snis"), StripPath: boolean(d, "strip_path"),
			PreserveHost: boolean(d, "preserve_host"), RegexPriority: int(num(d, "regex_priority")),
			PathHandling: str(d, "path_handling"), HTTPSRedirect: int(num(d, "https_redirect_status_code")),
		}
		if h, ok := d["headers"].(map[string]any); ok {
			r.Headers = make(map[string][]string, len(h))
			for name := range h {
				r.Headers[strings.ToLower(name)] = strs(h, name)
			}
		}
		return r
	case Consumers:
		return &Consumer{ID: str(d, "id"), Username: str(d, "username"), CustomID: str(d, "custom_id")}
	case Plugins:
		cfg, _ := d["config"].(map[string]any)
		return &Plugin{
			ID: str(d, "id"), Name: str(d, "name"), RouteID: ref(d, "route"), ServiceID: ref(d, "service"),
			ConsumerID: ref(d, "consumer"), Enabled: boolean(d, "enabled"), Protocols: strs(d, "protocols"),
			Config: cfg, Compiled: compiled, UpdatedAt: int64(num(d, "updated_at")),
		}
	case Upstreams:
		return &Upstream{ID: str(d, "id"), Name: str(d, "name"), Algorithm: str(d, "algorithm"),
			HostHeader: str(d, "host_header")}
	case Targets:
		host, port := SplitTarget(str(d, "target"))
		return &Target{ID: str(d, "id"), UpstreamID: ref(d, "upstream"), Host: host, Port: port,
			Weight: int(num(d, "weight"))}
	case Admins:
		return &Admin{ID: str(d, "id"), Username: str(d, "username"), Roles: strs(d, "roles"), Teams: strs(d, "teams")}
	case Teams:
		return &Team{ID: str(d, "id"), Name: str(d, "name"), Roles: strs(d, "roles")}
	case RBACRoles:
		r := &Role{ID: str(d, "id"), Name: str(d, "name")}
		l, _ := d["permissions"].([]any)
		for _, p := range l {
			m, _ := p.(map[string]any)
			r.Permissions = append(r.Permissions, Permission{Deny: str(m, "effect") == "deny",
				Entity: str(m, "entity"), Op: str(m, "op"), Tags: strs(m, "tags")})
		}
		return r
	case Certificates:
		c := &Certificate{ID: str(d, "id")}
		if pair, err := tls.X509KeyPair([]byte(str(d, "cert")), []byte(str(d, "key"))); err == nil {
			c.Pairs = append(c.Pairs, pair)
		}
		if pair, err := tls.X509KeyPair([]byte(str(d, "cert_alt")), []byte(str(d, "key_alt"))); err == nil {
			c.Pairs = append(c.Pairs, pair)
		}
		return c
	case SNIs:
		return &SNI{ID: str(d, "id"), Name: strings.ToLower(str(d, "name")), CertificateID: ref(d, "certificate")}
	case CACertificates:
		ca := &CACertificate{ID: str(d, "id")}
		ca.Cert, _, _ = parseCert(str(d, "cert"))
		return ca
	case JWTSecrets:
		j := &JWTSecret{ID: str(d, "id"), ConsumerID: ref(d, "consumer"), Key: str(d, "key"),
			Secret: str(d, "secret"), Algorithm: str(d, "algorithm")}
		j.PublicKey, _ = parsePublicKey(str(d, "rsa_public_key"))
		return j
	case BasicAuths:
		return &BasicAuth{ID: str(d, "id"), ConsumerID: ref(d, "consumer"), Username: str(d, "username"),
			PasswordHash: str(d, "password")}
	case KeyAuths:
		ka := &KeyAuth{ID: str(d, "id"), ConsumerID: ref(d, "consumer"), Key: str(d, "key")}
		if ttl := num(d, "ttl"); ttl > 0 {
			ka.ExpiresAt = int64(num(d, "created_at") + ttl)
		}
		return ka
	}
	return nil
}

// Certificate is a certificate entity ready for a TLS handshake: its pair
// and, when it has one, the alternative pair (another key type).
type Certificate struct {
	ID    string
	Pairs []tls.Certificate
}

// SNI names the certificate served for a server name (maybe a wildcard).
type SNI struct {
	ID, Name, CertificateID string
}

// CACertificate is a CA a service may trust for its upstream.
type CACertificate struct {
	ID   string
	Cert *x509.Certificate
}

// JWTSecret is a jwt credential: Secret verifies HS* tokens, PublicKey
// (parsed from rsa_public_key) the others.
type JWTSecret struct {
	ID, ConsumerID, Key, Secret, Algorithm string
	PublicKey                              any
}

// BasicAuth is a basic-auth credential; PasswordHash is HashPassword's.
type BasicAuth struct {
	ID, ConsumerID, Username, PasswordHash string
}

// HashPassword is how Kong stores a basic-auth password: the hex SHA-1 of
// the password followed by the consumer's id. (Weak, but it is what a
// credential exported from Kong holds, and what its users' tooling sends.)
func HashPassword(password, consumerID string) string {
	sum := sha1.Sum([]byte(password + consumerID))
	return hex.EncodeToString(sum[:])
}

// Admin is an Admin API user.
type Admin struct {
	ID, Username string
	Roles, Teams []string
}

// Team is a group of admins sharing roles.
type Team struct {
	ID, Name string
	Roles    []string
}

// Permission is one rule of a custom role.
type Permission struct {
	Deny       bool
	Entity, Op string   // "*" matches any
	Tags       []string // when set, the rule covers only entities with one of these tags
}

// Role is a custom role.
type Role struct {
	ID, Name    string
	Permissions []Permission
}

// Expired reports whether the credential's TTL has run out at unix time now.
func (k *KeyAuth) Expired(now int64) bool { return k.ExpiresAt != 0 && now >= k.ExpiresAt }

// SplitTarget splits "host:port" (port defaulting to 8000, Kong's target
// default) and handles bracketed IPv6.
func SplitTarget(t string) (string, int) {
	host, p, err := net.SplitHostPort(t)
	if err != nil {
		return strings.Trim(t, "[]"), 8000
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return host, 8000
	}
	return host, port
}

// normalizeTarget appends Kong's default port 8000 when none is given.
func normalizeTarget(t string) string {
	if _, _, err := net.SplitHostPort(t); err == nil {
		return t
	}
	if ip := net.ParseIP(strings.Trim(t, "[]")); ip != nil && ip.To4() == nil {
		return "[" + strings.Trim(t, "[]") + "]:8000"
	}
	return t + ":8000"
}

func checkTarget(v any) string {
	host, p, err := net.SplitHostPort(v.(string))
	if err != nil || host == "" {
		return "Invalid target ('" + v.(string) + "'); not a valid hostname or ip address"
	}
	if n, err := strconv.Atoi(p); err != nil || n < 0 || n > 65535 {
		return "Invalid target ('" + v.(string) + "'); not a valid port number"
	}
	if !isIP(host) && !hostRe.MatchString(host) {
		return "Invalid target ('" + v.(string) + "'); not a valid hostname or ip address"
	}
	return ""
}
