package proxy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"strings"
	"time"

	"github.com/gatehouse-gw/gatehouse/fsm"
)

// ServeTLS accepts TLS connections on ln until Shutdown: Kong's 8443. The
// certificate is chosen per handshake from the current configuration, by
// the SNI the client sent (exact name, then a leading or trailing
// wildcard), else the node's own self-signed default, as Kong does.
func (p *Proxy) ServeTLS(ln net.Listener) error {
	def, err := selfSigned()
	if err != nil {
		return fmt.Errorf("default proxy certificate: %w", err)
	}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"http/1.1"},
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if c := p.certificateFor(hello); c != nil {
				return c, nil
			}
			return &def, nil
		},
	}
	return p.server.Serve(tls.NewListener(ln, cfg))
}

// certificateFor is the configured certificate for the handshake's server
// name, nil when none applies.
func (p *Proxy) certificateFor(hello *tls.ClientHelloInfo) *tls.Certificate {
	name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
	if name == "" {
		return nil
	}
	st := p.rt.load().state
	sni := st.FindUnique(fsm.SNIs, "name", name)
	if sni == nil {
		if i := strings.IndexByte(name, '.'); i > 0 {
			sni = st.FindUnique(fsm.SNIs, "name", "*"+name[i:])
		}
	}
	if sni == nil {
		if i := strings.LastIndexByte(name, '.'); i > 0 {
			sni = st.FindUnique(fsm.SNIs, "name", name[:i]+".*")
		}
	}
	if sni == nil {
		return nil
	}
	ce := st.Get(fsm.Certificates, sni.View.(*fsm.SNI).CertificateID)
	if ce == nil {
		return nil
	}
	pairs := ce.View.(*fsm.Certificate).Pairs
	// With an alternative pair (another key type), the first the client
	// can verify.
	for i := range pairs {
		if hello.SupportsCertificate(&pairs[i]) == nil {
			return &pairs[i]
		}
	}
	if len(pairs) > 0 {
		return &pairs[0]
	}
	return nil
}

// selfSigned makes the certificate served when no SNI matches: like
// Kong's default, it only lets clients that skip verification through.
func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: "localhost", Organization: []string{"Gatehouse"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(10, 0, 0),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// upstreamTLS is the TLS a service's connections use: Kong's defaults
// (no verification unless tls_verify), its client certificate, and its
// CA certificates as the roots when it names any.
func upstreamTLS(svc *fsm.Service, key clientKey, cas []*fsm.CACertificate) *tls.Config {
	cfg := &tls.Config{ServerName: svc.Host, InsecureSkipVerify: !key.verify, MinVersion: tls.VersionTLS12}
	if key.cert != nil && len(key.cert.Pairs) > 0 {
		cfg.Certificates = []tls.Certificate{key.cert.Pairs[0]}
	}
	if len(cas) > 0 {
		pool := x509.NewCertPool()
		for _, ca := range cas {
			if ca.Cert != nil {
				pool.AddCert(ca.Cert)
			}
		}
		cfg.RootCAs = pool
	}
	return cfg
}
