package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/hashicorp/raft"
)

// ErrUntrustedPeer is returned when a node's cluster address does not
// present a certificate from the cluster CA.
var ErrUntrustedPeer = errors.New("peer's cluster certificate is not trusted")

// TLSFiles names the PEM files for mutual TLS on the Raft transport.
type TLSFiles struct {
	Cert, Key, CA string
}

func (f TLSFiles) enabled() bool { return f.Cert != "" || f.Key != "" || f.CA != "" }

// tlsConfigs builds the server and client sides of the cluster's mutual
// TLS. Peers are identified by certificates from the cluster CA; host names
// are not checked, because Raft addresses are often bare IPs and every
// holder of a CA-signed certificate is a cluster member by definition
// (Consul's verify_incoming / verify_outgoing without verify_server_hostname).
func (f TLSFiles) tlsConfigs() (server, client *tls.Config, err error) {
	if f.Cert == "" || f.Key == "" || f.CA == "" {
		return nil, nil, errors.New("cluster TLS needs --cluster-tls-cert, --cluster-tls-key and --cluster-ca")
	}
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("load cluster certificate: %w", err)
	}
	caPEM, err := os.ReadFile(f.CA)
	if err != nil {
		return nil, nil, fmt.Errorf("read cluster CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, nil, fmt.Errorf("no certificate in %s", f.CA)
	}
	verify := func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) == 0 {
			return errors.New("peer sent no certificate")
		}
		leaf, err := x509.ParseCertificate(raw[0])
		if err != nil {
			return err
		}
		inter := x509.NewCertPool()
		for _, r := range raw[1:] {
			if c, err := x509.ParseCertificate(r); err == nil {
				inter.AddCert(c)
			}
		}
		_, err = leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
		return err
	}
	server = &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAndVerifyClientCert,
		ClientCAs: pool, MinVersion: tls.VersionTLS13}
	client = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13,
		// The chain is verified by VerifyPeerCertificate, without the
		// host name check (see above).
		InsecureSkipVerify: true, VerifyPeerCertificate: verify}
	return server, client, nil
}

// tlsStream is a raft.StreamLayer speaking mutual TLS.
type tlsStream struct {
	net.Listener
	advertise net.Addr
	client    *tls.Config
}

var _ raft.StreamLayer = (*tlsStream)(nil)

func newTLSStream(bind string, advertise net.Addr, server, client *tls.Config) (*tlsStream, error) {
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("listen on cluster address %s: %w", bind, err)
	}
	return &tlsStream{Listener: tls.NewListener(ln, server), advertise: advertise, client: client}, nil
}

func (s *tlsStream) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout}
	conn, err := tls.DialWithDialer(d, "tcp", string(addr), s.client)
	if err != nil {
		return nil, err
	}
	return conn, nil
}

func (s *tlsStream) Addr() net.Addr { return s.advertise }

// probe checks that a peer's cluster address presents a certificate from
// the cluster CA, before the leader adds it as a voter: a node the others
// cannot talk to must not become part of the quorum.
func (s *tlsStream) probe(addr string) error {
	conn, err := s.Dial(raft.ServerAddress(addr), 3*time.Second)
	if err != nil {
		return fmt.Errorf("%w: handshake with %s: %v", ErrUntrustedPeer, addr, err)
	}
	defer conn.Close()
	return nil
}
