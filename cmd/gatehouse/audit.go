package main

import (
	"bufio"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/gatehouse-gw/gatehouse/log"
)

// auditCommand reads the event history of any node (all nodes hold the
// same history) as JSON lines.
func auditCommand() *cli.Command {
	filters := []cli.Flag{adminFlag(), tokenFlag(),
		&cli.StringFlag{Name: "since", Usage: "first event: log index or RFC 3339 time"},
		&cli.StringFlag{Name: "until", Usage: "last event: log index or RFC 3339 time"},
		&cli.StringFlag{Name: "actor"}, &cli.StringFlag{Name: "entity-type"}, &cli.StringFlag{Name: "entity-id"},
		&cli.StringFlag{Name: "op"}, &cli.StringFlag{Name: "outcome", Usage: "applied, rejected or denied"},
	}
	run := func(c *cli.Context, out io.Writer) error {
		apiToken = c.String("token")
		q := url.Values{"size": {"1000"}}
		for _, f := range []string{"since", "until", "actor", "entity-type", "entity-id", "op", "outcome"} {
			if v := c.String(f); v != "" {
				q.Set(strings.ReplaceAll(f, "-", "_"), v)
			}
		}
		return streamEvents(c.String("admin"), "/audit/events?"+q.Encode(), out)
	}
	return &cli.Command{
		Name:  "audit",
		Usage: "read the event history",
		Subcommands: []*cli.Command{
			{Name: "events", Usage: "print events as JSON lines", Flags: filters,
				Action: func(c *cli.Context) error { return run(c, os.Stdout) }},
			{Name: "export", Usage: "write events as JSON lines to a file",
				Flags: append(filters, &cli.StringFlag{Name: "out", Required: true, Usage: "output file"}),
				Action: func(c *cli.Context) error {
					f, err := os.Create(c.String("out"))
					if err != nil {
						return err
					}
					if err := run(c, f); err != nil {
						f.Close()
						return err
					}
					return f.Close()
				}},
			verifyCommand(),
			replayCommand(),
		},
	}
}

// streamEvents follows the pages of /audit/events, writing one JSON object
// per line.
func streamEvents(admin, path string, out io.Writer) error {
	client := &http.Client{Timeout: 30 * time.Second}
	for page := 0; path != "" && page < 1_000_000; page++ {
		req, err := http.NewRequest("GET", strings.TrimRight(admin, "/")+path, nil)
		if err != nil {
			return err
		}
		if apiToken != "" {
			req.Header.Set("Kong-Admin-Token", apiToken)
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		var body struct {
			Data []json.RawMessage `json:"data"`
			Next *string           `json:"next"`
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != 200 || err != nil {
			return fmt.Errorf("GET %s: %s", path, resp.Status)
		}
		for _, e := range body.Data {
			if _, err := fmt.Fprintf(out, "%s\n", e); err != nil {
				return err
			}
		}
		path = ""
		if body.Next != nil {
			path = *body.Next
		}
	}
	return nil
}

func verifyCommand() *cli.Command {
	return &cli.Command{
		Name:      "verify",
		Usage:     "check the hash chain and signatures of an export; names the first bad index",
		ArgsUsage: "FILE",
		Flags: []cli.Flag{adminFlag(), tokenFlag(),
			&cli.StringFlag{Name: "jwks", Usage: "signing keys: a file or URL (default: the node's /audit/jwks.json)"}},
		Action: func(c *cli.Context) error {
			apiToken = c.String("token")
			if c.NArg() != 1 {
				return errors.New("usage: gatehouse audit verify [flags] FILE")
			}
			src := c.String("jwks")
			if src == "" {
				src = strings.TrimRight(c.String("admin"), "/") + "/audit/jwks.json"
			}
			keys, err := loadJWKS(src)
			if err != nil {
				return fmt.Errorf("signing keys: %w", err)
			}
			f, err := os.Open(c.Args().First())
			if err != nil {
				return err
			}
			defer f.Close()
			n, first, last, err := verifyExport(f, keys)
			if err != nil {
				return err
			}
			fmt.Printf("%d events verified: chain and signatures intact from index %d to %d\n", n, first, last)
			return nil
		},
	}
}

type exportedRow struct {
	log.Row
	Signature string `json:"signature"`
	KeyID     string `json:"kid"`
}

// verifyExport checks every line of an export: the hash matches the row,
// each row links to the one before, and the signature is valid.
func verifyExport(r io.Reader, keys map[string]ed25519.PublicKey) (n int, first, last uint64, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	prev := ""
	for sc.Scan() {
		var row exportedRow
		if err := json.Unmarshal(sc.Bytes(), &row); err != nil {
			return n, first, last, fmt.Errorf("line %d: not an audit row: %w", n+1, err)
		}
		bad := func(why string) error { return fmt.Errorf("first bad index %d: %s", row.Index, why) }
		if row.Hash != row.Row.ComputeHash() {
			return n, first, last, bad("content does not match its hash")
		}
		if n > 0 && row.PrevHash != prev {
			return n, first, last, bad("does not follow the previous event (chain broken: an event was removed, added or reordered)")
		}
		key, ok := keys[row.KeyID]
		if !ok {
			return n, first, last, bad("signed by unknown key " + strconv.Quote(row.KeyID))
		}
		sig, err := base64.RawURLEncoding.DecodeString(row.Signature)
		if err != nil || !ed25519.Verify(key, []byte(row.Hash), sig) {
			return n, first, last, bad("signature does not verify")
		}
		if n == 0 {
			first = row.Index
		}
		last, prev = row.Index, row.Hash
		n++
	}
	return n, first, last, sc.Err()
}

func loadJWKS(src string) (map[string]ed25519.PublicKey, error) {
	var raw []byte
	var err error
	if strings.HasPrefix(src, "http://") || strings.HasPrefix(src, "https://") {
		req, _ := http.NewRequest("GET", src, nil)
		if apiToken != "" {
			req.Header.Set("Kong-Admin-Token", apiToken)
		}
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		raw, err = io.ReadAll(resp.Body)
		if err != nil {
			return nil, err
		}
	} else if raw, err = os.ReadFile(src); err != nil {
		return nil, err
	}
	var set struct {
		Keys []struct {
			Kid, Crv, X string
		} `json:"keys"`
	}
	if err := json.Unmarshal(raw, &set); err != nil {
		return nil, err
	}
	out := map[string]ed25519.PublicKey{}
	for _, k := range set.Keys {
		b, err := base64.RawURLEncoding.DecodeString(k.X)
		if err == nil && k.Crv == "Ed25519" && len(b) == ed25519.PublicKeySize {
			out[k.Kid] = b
		}
	}
	return out, nil
}
