package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/test/echo"
	"github.com/gatehouse-gw/gatehouse/test/harness"
)

// testCA issues certificates for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  string
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "gatehouse test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &testCA{cert: c, key: key, pem: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))}
}

// issue returns a PEM certificate and key for names (DNS names or IPs);
// rsaKey picks the key type.
func (ca *testCA) issue(t *testing.T, cn string, rsaKey bool, names ...string) (string, string) {
	t.Helper()
	var pub, priv any
	if rsaKey {
		k, _ := rsa.GenerateKey(rand.Reader, 2048)
		pub, priv = &k.PublicKey, k
	} else {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		pub, priv = &k.PublicKey, k
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalPKCS8PrivateKey(priv)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}))
}

// tlsGet sends GET path over TLS to addr with the given server name.
func tlsGet(t *testing.T, addr, serverName, path string, roots *x509.CertPool) (*http.Response, string, error) {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: &tls.Config{ServerName: serverName, RootCAs: roots, InsecureSkipVerify: roots == nil}}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	req, _ := http.NewRequest("GET", "https://"+addr+path, nil)
	req.Host = serverName
	resp, err := c.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b), nil
}

// TestTLSCertificatesAndSNIs covers Kong's certificates, snis and
// ca_certificates: their checks, the transient snis field, the proxy's
// TLS listener choosing a certificate by SNI (exact, wildcard, default),
// https-only routes, and a service presenting a client certificate to an
// upstream that verifies it, while verifying the upstream in turn.
func TestTLSCertificatesAndSNIs(t *testing.T) {
	ports, err := harness.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	tlsAddr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	n := harness.Start(t, harness.Options{NodeID: "tls", Args: []string{"--proxy-tls-listen", tlsAddr}})
	a := admin{n}
	ca := newTestCA(t)
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)

	apiCert, apiKey := ca.issue(t, "api", false, "api.example.test")
	otherCert, otherKey := ca.issue(t, "other", false, "other.test")
	rsaCert, rsaKey := ca.issue(t, "api-rsa", true, "api.example.test")

	// Checks, in Kong's words.
	r := a.json(t, http.MethodPost, "/certificates", map[string]any{"cert": "bar", "key": "foo"})
	harness.ExpectStatus(t, r, http.StatusBadRequest)
	if !strings.Contains(r.String(), "invalid certificate") || !strings.Contains(r.String(), "invalid key") {
		t.Errorf("bad PEM: %s", r)
	}
	r = a.json(t, http.MethodPost, "/certificates", map[string]any{"cert": apiCert, "key": otherKey})
	harness.ExpectStatus(t, r, http.StatusBadRequest)
	if !strings.Contains(r.String(), "certificate does not match key") {
		t.Errorf("mismatched key: %s", r)
	}
	r = a.json(t, http.MethodPost, "/certificates", map[string]any{"cert": apiCert, "key": apiKey, "cert_alt": otherCert, "key_alt": otherKey})
	harness.ExpectStatus(t, r, http.StatusBadRequest)
	if !strings.Contains(r.String(), "different type") {
		t.Errorf("alternative of the same key type: %s", r)
	}

	// A certificate with its SNIs given inline (Kong's transient field),
	// and an RSA alternative.
	cert := a.create(t, "/certificates", map[string]any{"cert": apiCert, "key": apiKey, "cert_alt": rsaCert, "key_alt": rsaKey,
		"snis": []string{"api.example.test"}, "tags": []string{"edge"}})
	certID := cert["id"].(string)
	if s, _ := cert["snis"].([]any); len(s) != 1 || s[0] != "api.example.test" {
		t.Errorf("created certificate snis = %v", cert["snis"])
	}
	if got := a.get(t, "/certificates/api.example.test").JSON(t)["id"]; got != certID {
		t.Errorf("GET /certificates/{sni name} = %v, want %s", got, certID)
	}
	wild := a.create(t, "/certificates", map[string]any{"cert": otherCert, "key": otherKey})
	a.create(t, "/certificates/"+wild["id"].(string)+"/snis", map[string]any{"name": "*.wild.test"})
	r = a.json(t, http.MethodPost, "/snis", map[string]any{"name": "api.example.test", "certificate": map[string]any{"id": wild["id"]}})
	harness.ExpectStatus(t, r, http.StatusConflict)
	if got := len(a.get(t, "/snis").Data(t)); got != 2 {
		t.Errorf("GET /snis lists %d, want 2", got)
	}

	up := echo.StartT(t, "echo-tls")
	a.create(t, "/services", map[string]any{"name": "plain", "url": up.URL})
	a.create(t, "/services/plain/routes", map[string]any{"name": "secure", "paths": []string{"/secure"}, "protocols": []string{"https"}})

	// Exact SNI: the configured certificate, verified against the CA.
	var resp *http.Response
	var body string
	harness.Eventually(t, 5*time.Second, 50*time.Millisecond, "https route served", func() (bool, string) {
		resp, body, err = tlsGet(t, tlsAddr, "api.example.test", "/secure", roots)
		if err != nil {
			return false, err.Error()
		}
		return resp.StatusCode == 200, body
	})
	if cn := resp.TLS.PeerCertificates[0].Subject.CommonName; cn != "api" && cn != "api-rsa" {
		t.Errorf("api.example.test served the certificate of %q", cn)
	}
	var er echo.Request
	if err := json.Unmarshal([]byte(body), &er); err != nil {
		t.Fatalf("echo body: %v", err)
	}
	if got := er.Header("X-Forwarded-Proto"); got != "https" {
		t.Errorf("X-Forwarded-Proto over TLS = %q, want https", got)
	}
	// The https-only route over plain HTTP: Kong's 426.
	if r := proxyGet(t, n, "/secure"); r.Status != 426 {
		t.Errorf("https-only route over HTTP: %s, want 426", r)
	}
	// A wildcard SNI.
	if resp, _, err := tlsGet(t, tlsAddr, "x.wild.test", "/secure", nil); err != nil {
		t.Errorf("wildcard SNI: %v", err)
	} else if cn := resp.TLS.PeerCertificates[0].Subject.CommonName; cn != "other" {
		t.Errorf("x.wild.test served the certificate of %q, want other", cn)
	}
	// No SNI matches: the node's own default, which the CA does not sign.
	if _, _, err := tlsGet(t, tlsAddr, "nobody.test", "/secure", roots); err == nil {
		t.Errorf("an unknown server name was served a certificate the test CA verifies")
	}
	// A client that accepts only RSA gets the RSA alternative pair.
	rsaOnly := &tls.Config{ServerName: "api.example.test", RootCAs: roots, MaxVersion: tls.VersionTLS12,
		CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}}
	if c, err := tls.Dial("tcp", tlsAddr, rsaOnly); err != nil {
		t.Errorf("RSA-only client: %v", err)
	} else {
		if cn := c.ConnectionState().PeerCertificates[0].Subject.CommonName; cn != "api-rsa" {
			t.Errorf("RSA-only client was served %q, want the RSA alternative", cn)
		}
		c.Close()
	}

	// CA certificates.
	r = a.json(t, http.MethodPost, "/ca_certificates", map[string]any{"cert": otherCert})
	harness.ExpectStatus(t, r, http.StatusBadRequest)
	if !strings.Contains(r.String(), `missing the \"CA\" basic constraint`) {
		t.Errorf("non-CA as a CA certificate: %s", r)
	}
	caEnt := a.create(t, "/ca_certificates", map[string]any{"cert": ca.pem})
	if d, _ := caEnt["cert_digest"].(string); len(d) != 64 {
		t.Errorf("cert_digest = %v", caEnt["cert_digest"])
	}
	harness.ExpectStatus(t, a.json(t, http.MethodPost, "/ca_certificates", map[string]any{"cert": ca.pem}), http.StatusConflict)

	// Upstream mutual TLS: the upstream requires a client certificate
	// from the CA; the service presents one and verifies the upstream.
	srvCert, srvKey := ca.issue(t, "upstream", false, "127.0.0.1")
	pair, _ := tls.X509KeyPair([]byte(srvCert), []byte(srvKey))
	mtls := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "client=%s", r.TLS.PeerCertificates[0].Subject.CommonName)
	}))
	mtls.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: roots}
	mtls.StartTLS()
	defer mtls.Close()
	host, portStr, _ := net.SplitHostPort(strings.TrimPrefix(mtls.URL, "https://"))
	port, _ := strconv.Atoi(portStr)
	clientCert, clientKey := ca.issue(t, "gatehouse-client", false, "gatehouse.test")
	cc := a.create(t, "/certificates", map[string]any{"cert": clientCert, "key": clientKey})
	a.create(t, "/services", map[string]any{"name": "mtls", "protocol": "https", "host": host, "port": port,
		"client_certificate": map[string]any{"id": cc["id"]}, "tls_verify": true, "ca_certificates": []string{caEnt["id"].(string)}})
	a.create(t, "/services/mtls/routes", map[string]any{"name": "mtls", "paths": []string{"/mtls"}})
	rr := waitProxy(t, n, "mutual TLS upstream", "/mtls", func(r *harness.Response) bool { return r.Status == 200 })
	if got := rr.Text(); got != "client=gatehouse-client" {
		t.Errorf("the upstream saw %q, want the service's client certificate", got)
	}
	// Without the client certificate the upstream refuses the handshake.
	a.json(t, http.MethodPatch, "/services/mtls", map[string]any{"client_certificate": nil})
	waitProxy(t, n, "no client certificate", "/mtls", func(r *harness.Response) bool { return r.Status == 502 })

	// A certificate a service uses cannot go; deleting one takes its SNIs.
	a.json(t, http.MethodPatch, "/services/mtls", map[string]any{"client_certificate": map[string]any{"id": cc["id"]}})
	harness.ExpectStatus(t, a.del(t, "/certificates/"+cc["id"].(string), true), http.StatusBadRequest)
	harness.ExpectStatus(t, a.del(t, "/certificates/"+certID, true), http.StatusNoContent)
	harness.ExpectStatus(t, a.get(t, "/snis/api.example.test"), http.StatusNotFound)
	// Replacing a certificate's snis list adds and removes SNIs.
	r = a.json(t, http.MethodPatch, "/certificates/"+wild["id"].(string), map[string]any{"snis": []string{"a.test", "b.test"}})
	harness.ExpectStatus(t, r, http.StatusOK)
	if s, _ := r.JSON(t)["snis"].([]any); len(s) != 2 || s[0] != "a.test" || s[1] != "b.test" {
		t.Errorf("PATCH snis answered %v", r.JSON(t)["snis"])
	}
	harness.ExpectStatus(t, a.get(t, "/snis/*.wild.test"), http.StatusNotFound)

	// The declarative dump nests SNIs in their certificate, and posting
	// it back changes nothing.
	dumped := a.get(t, "/config")
	doc := dumped.JSON(t)
	c := findNamed(t, doc["certificates"], "id", wild["id"].(string))
	if names := fmt.Sprint(c["snis"]); !strings.Contains(names, "a.test") || !strings.Contains(names, "b.test") {
		t.Errorf("dumped certificate snis %v", c["snis"])
	}
	if cas, _ := doc["ca_certificates"].([]any); len(cas) != 1 {
		t.Errorf("dumped ca_certificates %v", doc["ca_certificates"])
	}
	r = harness.Raw(t, http.MethodPost, n.Admin("/config?check_hash=1"), "application/json", []byte(dumped.Text()))
	if r.Status != http.StatusNotModified {
		t.Errorf("posting the dump back: %s, want 304 (no change)", r)
	}
}
