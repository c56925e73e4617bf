package fsm

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"sort"
	"strings"

	"github.com/google/uuid"

	"github.com/gatehouse-gw/gatehouse/fsm/schema"
)

// TLS entities, as Kong has them: a certificate with its key (and an
// alternative pair of another key type), the SNIs that select it on the
// proxy's TLS listener, and CA certificates that services trust upstream.

var certificateSchema = &schema.Schema{Name: Certificates, Fields: []*schema.Field{
	idField(), tsField("created_at"), tsField("updated_at"),
	{Name: "cert", Type: schema.String, Required: true, Check: checkCertPEM},
	{Name: "key", Type: schema.String, Required: true, Secret: true, Check: checkKeyPEM},
	{Name: "cert_alt", Type: schema.String, Check: checkCertPEM},
	{Name: "key_alt", Type: schema.String, Secret: true, Check: checkKeyPEM},
	tagsField(),
}}

var sniSchema = &schema.Schema{Name: SNIs, Fields: []*schema.Field{
	idField(), tsField("created_at"), tsField("updated_at"),
	{Name: "name", Type: schema.String, Required: true, Unique: true, Check: checkRouteHost},
	foreign("certificate", Certificates, true),
	tagsField(),
}}

var caCertificateSchema = &schema.Schema{Name: CACertificates, Fields: []*schema.Field{
	idField(), tsField("created_at"), tsField("updated_at"),
	{Name: "cert", Type: schema.String, Required: true, Check: checkCACertPEM},
	{Name: "cert_digest", Type: schema.String, Auto: true, Unique: true},
	tagsField(),
}}

func parseCert(s string) (*x509.Certificate, []byte, string) {
	b, rest := pem.Decode([]byte(s))
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, rest, "invalid certificate: not a PEM certificate"
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil, rest, "invalid certificate: " + err.Error()
	}
	return c, rest, ""
}

func checkCertPEM(v any) string {
	_, _, msg := parseCert(v.(string))
	return msg
}

func checkKeyPEM(v any) string {
	b, _ := pem.Decode([]byte(v.(string)))
	if b == nil {
		return "invalid key: not a PEM private key"
	}
	if _, err := x509.ParsePKCS8PrivateKey(b.Bytes); err == nil {
		return ""
	}
	if _, err := x509.ParsePKCS1PrivateKey(b.Bytes); err == nil {
		return ""
	}
	if _, err := x509.ParseECPrivateKey(b.Bytes); err == nil {
		return ""
	}
	return "invalid key: unsupported or malformed private key"
}

func checkCACertPEM(v any) string {
	c, rest, msg := parseCert(v.(string))
	if msg != "" {
		return msg
	}
	if b, _ := pem.Decode(rest); b != nil {
		return "please submit only one certificate at a time"
	}
	if !c.BasicConstraintsValid || !c.IsCA {
		return `certificate does not appear to be a CA because it is missing the "CA" basic constraint`
	}
	return ""
}

// certChecks are the checks across a certificate's fields: each key must
// match its certificate, the alternative pair comes whole and with another
// key type.
func certChecks(d map[string]any, errs schema.Errors) {
	if len(errs) > 0 {
		return
	}
	main, err := tls.X509KeyPair([]byte(str(d, "cert")), []byte(str(d, "key")))
	if err != nil {
		errs.AddEntity("certificate does not match key")
		return
	}
	ca, ka := str(d, "cert_alt"), str(d, "key_alt")
	if (ca == "") != (ka == "") {
		errs.AddEntity("all or none of these fields must be set: 'cert_alt', 'key_alt'")
		return
	}
	if ca == "" {
		return
	}
	alt, err := tls.X509KeyPair([]byte(ca), []byte(ka))
	if err != nil {
		errs.AddEntity("alternative certificate does not match key")
		return
	}
	if keyType(main.PrivateKey) == keyType(alt.PrivateKey) {
		errs.AddEntity("certificate and alternative certificate need to have different type (e.g. RSA and ECDSA), " +
			"the provided certificates were both of the same type")
	}
}

func keyType(k any) string {
	switch k.(type) {
	case *rsa.PrivateKey:
		return "rsa"
	case *ecdsa.PrivateKey:
		return "ecdsa"
	case ed25519.PrivateKey:
		return "ed25519"
	}
	return fmt.Sprintf("%T", k)
}

// parsePublicKey reads a PEM public key (PKIX, or PKCS#1 RSA), or the key
// of a PEM certificate.
func parsePublicKey(s string) (any, error) {
	b, _ := pem.Decode([]byte(s))
	if b == nil {
		return nil, fmt.Errorf("not PEM")
	}
	switch b.Type {
	case "CERTIFICATE":
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		return c.PublicKey, nil
	case "RSA PUBLIC KEY":
		return x509.ParsePKCS1PublicKey(b.Bytes)
	}
	return x509.ParsePKIXPublicKey(b.Bytes)
}

// jwtChecks: a public-key algorithm needs a valid rsa_public_key (Kong's
// field name, whatever the key type).
func jwtChecks(d map[string]any, errs schema.Errors) {
	alg := str(d, "algorithm")
	if strings.HasPrefix(alg, "HS") {
		return
	}
	pk := str(d, "rsa_public_key")
	if pk == "" {
		errs["rsa_public_key"] = "required field missing"
		return
	}
	if _, err := parsePublicKey(pk); err != nil {
		errs.AddEntity("'rsa_public_key' format is invalid")
	}
}

// caDigest fills a CA certificate's cert_digest: the hex SHA-256 of its DER
// bytes, which Kong keeps unique.
func caDigest(d map[string]any) {
	c, _, msg := parseCert(str(d, "cert"))
	if msg != "" {
		return
	}
	sum := sha256.Sum256(c.Raw)
	d["cert_digest"] = hex.EncodeToString(sum[:])
}

// takeDerived removes from data what is not stored as sent: a
// certificate's transient snis (returned, when present), a CA
// certificate's cert_digest (always derived from its cert).
func takeDerived(kind string, data map[string]any) (snis []string, hasSNIs bool, errs schema.Errors) {
	switch kind {
	case Certificates:
		return takeSNIs(data)
	case CACertificates:
		delete(data, "cert_digest")
	}
	return nil, false, nil
}

// takeSNIs removes a certificate's transient snis field from data: Kong
// accepts the names on the certificate and keeps them as SNI entities.
// ok is false when the field is absent (the SNIs stay as they are).
func takeSNIs(data map[string]any) (names []string, ok bool, errs schema.Errors) {
	v, ok := data["snis"]
	delete(data, "snis")
	if !ok || v == nil {
		return nil, ok, nil
	}
	l, isList := v.([]any)
	if !isList {
		return nil, true, schema.Errors{"snis": "expected an array"}
	}
	seen := map[string]bool{}
	for _, el := range l {
		s, isStr := el.(string)
		if !isStr {
			return nil, true, schema.Errors{"snis": "expected a string"}
		}
		if msg := checkRouteHost(s); msg != "" {
			return nil, true, schema.Errors{"snis": msg}
		}
		if seen[s] {
			return nil, true, schema.Errors{"snis": s + " is duplicated"}
		}
		seen[s] = true
		names = append(names, s)
	}
	return names, true, nil
}

// syncSNIs makes cert's SNIs exactly names: the ones it lacks are created
// (with ids derived from the certificate and the name, the same on every
// node), the others deleted.
func (f *Fold) syncSNIs(t *txn, now int64, cert *Entity, names []string) *Error {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	view := t.view()
	var drop []*Entity
	have := map[string]bool{}
	view.Children(Certificates, cert.ID, SNIs, func(e *Entity) bool {
		if want[str(e.Data(), "name")] {
			have[str(e.Data(), "name")] = true
		} else {
			drop = append(drop, e)
		}
		return true
	})
	for _, e := range drop {
		if err := f.delete(t, t.view(), e); err != nil {
			return err
		}
	}
	sort.Strings(names)
	for _, n := range names {
		if have[n] {
			continue
		}
		id := uuid.NewSHA1(sniNamespace, []byte(cert.ID+"\x00"+n)).String()
		cmd := &Command{Op: "create", Kind: SNIs, NewID: id,
			Body: map[string]any{"name": n, "certificate": map[string]any{"id": cert.ID}}}
		if err := f.exec(t, t.view(), now, cmd); err != nil {
			return err
		}
	}
	return nil
}

var sniNamespace = uuid.MustParse("6a1f6d2c-5b0e-4c3e-9a57-2f0d1f3b7c11")

// SNINames lists the names of a certificate's SNIs, sorted: what Kong
// shows as the certificate's snis field.
func (s *State) SNINames(certID string) []any {
	names := []string{}
	s.Children(Certificates, certID, SNIs, func(e *Entity) bool {
		names = append(names, str(e.Data(), "name"))
		return true
	})
	sort.Strings(names)
	out := make([]any, len(names))
	for i, n := range names {
		out[i] = n
	}
	return out
}
