package declarative

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-gw/gatehouse/fsm"
	"github.com/gatehouse-gw/gatehouse/fsm/schema"
)

type anyPlugin struct{}

func (anyPlugin) ConfigSchema() *schema.Schema {
	return &schema.Schema{Fields: []*schema.Field{{Name: "minute", Type: schema.Number}, {Name: "note", Type: schema.String}}}
}
func (anyPlugin) Compile(map[string]any) (any, schema.Errors) { return nil, nil }

type plugins struct{}

func (plugins) Plugin(string) (fsm.PluginDef, bool) { return anyPlugin{}, true }

func selfSignedPEM(t *testing.T) (string, string) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "x"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalPKCS8PrivateKey(k)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}))
}

// TestRenderJSONIsMarshalOfDump: the direct renderer writes exactly the
// bytes of the document route, for every kind and nesting, with and
// without redaction, and with enough entities for the parallel path.
func TestRenderJSONIsMarshalOfDump(t *testing.T) {
	cert, key := selfSignedPEM(t)
	var doc strings.Builder
	doc.WriteString("_format_version: \"3.0\"\nservices:\n")
	for i := 0; i < 2100; i++ {
		fmt.Fprintf(&doc, "- name: s%d\n  url: http://h%d.test/p<&>\n  tags: [t%d]\n  routes:\n  - name: r%d\n    paths: [/r%d]\n", i, i, i%3, i, i)
		if i%50 == 0 {
			fmt.Fprintf(&doc, "    plugins:\n    - name: rl\n      config: {minute: %d, note: \"<b>é\"}\n", i+1)
			fmt.Fprintf(&doc, "  plugins:\n  - name: sp\n    config: {minute: 1.5e-7}\n")
		}
	}
	doc.WriteString("routes:\n- {name: loose, paths: [/loose]}\nconsumers:\n")
	for i := 0; i < 30; i++ {
		fmt.Fprintf(&doc, "- username: c%d\n  keyauth_credentials: [{key: k%d}]\n  basicauth_credentials: [{username: b%d, password: p}]\n  jwt_secrets: [{key: j%d, secret: s%d}]\n  plugins: [{name: cp}]\n", i, i, i, i, i)
	}
	doc.WriteString("upstreams:\n- name: up\n  targets: [{target: \"127.0.0.1:1\"}, {target: \"127.0.0.1:2\", weight: 5}]\n")
	doc.WriteString("plugins:\n- name: global\n- {name: multi, service: s1, route: r2}\n")
	fmt.Fprintf(&doc, "certificates:\n- cert: %q\n  key: %q\n  snis: [{name: a.test}, {name: b.test}]\n", cert, key)

	parsed, err := Parse([]byte(doc.String()))
	if err != nil {
		t.Fatal(err)
	}
	items, _, problems := Load(parsed)
	if len(problems) > 0 {
		t.Fatalf("load: %+v", problems)
	}
	var cmds []*fsm.Command
	for _, it := range items {
		b := map[string]any{}
		for k, v := range it.Data {
			if k != "id" {
				b[k] = v
			}
		}
		id := it.Data["id"].(string)
		cmds = append(cmds, &fsm.Command{Op: "upsert", Kind: it.Kind, Key: id, NewID: id, Body: b})
	}
	f := &fsm.Fold{Plugins: plugins{}}
	s, _, ferr := f.ApplyAll(fsm.Empty(), 1, time.Now().UnixNano(), cmds)
	if ferr != nil {
		t.Fatalf("apply: %+v", ferr)
	}
	salt := []byte("0123456789abcdef")
	redact := func(kind string, d map[string]any) map[string]any { return fsm.Redact(kind, d, salt) }
	for _, withRedaction := range []bool{false, true} {
		d := Dump(s)
		var rf func(string, map[string]any) map[string]any
		if withRedaction {
			rf = redact
			// What the Admin API did to the document before.
			certs := d["certificates"].([]any)
			for i, c := range certs {
				certs[i] = fsm.Redact(fsm.Certificates, c.(map[string]any), salt)
			}
			for _, c := range d["consumers"].([]any) {
				cm := c.(map[string]any)
				for field, kind := range map[string]string{"keyauth_credentials": fsm.KeyAuths, "basicauth_credentials": fsm.BasicAuths, "jwt_secrets": fsm.JWTSecrets} {
					creds, _ := cm[field].([]any)
					for i, k := range creds {
						creds[i] = fsm.Redact(kind, k.(map[string]any), salt)
					}
				}
			}
		}
		want, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		got, err := RenderJSON(s, rf)
		if err != nil {
			t.Fatal(err)
		}
		for _, part := range []string{`"snis":[`, `"jwt_secrets":[`, `"basicauth_credentials":[`, `"targets":[`,
			`"name":"loose"`, `"name":"multi"`, `"name":"sp"`, `"name":"cp"`} {
			if !bytes.Contains(got, []byte(part)) {
				t.Errorf("the rendered document lacks %s", part)
			}
		}
		if withRedaction && bytes.Contains(got, []byte(`"key":"k1"`)) {
			t.Errorf("redacted rendering shows a key-auth key")
		}
		if !bytes.Equal(got, want) {
			i := 0
			for i < len(got) && i < len(want) && got[i] == want[i] {
				i++
			}
			t.Errorf("redaction %v: RenderJSON differs from json.Marshal(Dump) at byte %d:\n got %.200s\nwant %.200s",
				withRedaction, i, got[max(0, i-60):], want[max(0, i-60):])
		}
	}
}
