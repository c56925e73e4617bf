package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"

	"github.com/urfave/cli/v2"
	"go.yaml.in/yaml/v3"
)

// configCommand is kong.yaml in and out: apply (after showing what it
// changes), dump, diff. The work is the node's (POST /config, GET
// /config); these only carry files.
func configCommand() *cli.Command {
	fileArg := func(c *cli.Context) ([]byte, error) {
		if c.NArg() != 1 {
			return nil, fmt.Errorf("usage: gatehouse config %s FILE (kong.yaml or .json; - for stdin)", c.Command.Name)
		}
		if c.Args().First() == "-" {
			return io.ReadAll(os.Stdin)
		}
		return os.ReadFile(c.Args().First())
	}
	plan := func(c *cli.Context, doc []byte) (int, error) {
		resp, err := request(c.String("admin"), "POST", "/config?dry_run=1", bytes.NewReader(doc), int64(len(doc)))
		if err != nil {
			return 0, fmt.Errorf("diff: %w", err)
		}
		defer resp.Body.Close()
		var out struct {
			Changes []struct {
				Op         string   `json:"op"`
				EntityType string   `json:"entity_type"`
				EntityID   string   `json:"entity_id"`
				EntityName string   `json:"entity_name"`
				Fields     []string `json:"fields"`
			} `json:"changes"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			return 0, fmt.Errorf("diff: %w", err)
		}
		for _, ch := range out.Changes {
			name := ch.EntityName
			if name == "" {
				name = ch.EntityID
			}
			sign := map[string]string{"created": "+", "deleted": "-", "updated": "~"}[ch.Op]
			fmt.Printf("%s %s %s", sign, ch.EntityType, name)
			if len(ch.Fields) > 0 {
				fmt.Printf(" %v", ch.Fields)
			}
			fmt.Println()
		}
		fmt.Printf("%d changes\n", len(out.Changes))
		return len(out.Changes), nil
	}
	return &cli.Command{
		Name:  "config",
		Usage: "declarative configuration (Kong's kong.yaml): apply, dump, diff",
		Subcommands: []*cli.Command{
			{
				Name: "apply", Usage: "make FILE the whole configuration (one event), after showing what changes",
				ArgsUsage: "FILE",
				Flags: []cli.Flag{adminFlag(), tokenFlag(),
					&cli.BoolFlag{Name: "dry-run", Usage: "only show what would change"}},
				Action: func(c *cli.Context) error {
					apiToken = c.String("token")
					doc, err := fileArg(c)
					if err != nil {
						return err
					}
					n, err := plan(c, doc)
					if err != nil || n == 0 || c.Bool("dry-run") {
						return err
					}
					resp, err := request(c.String("admin"), "POST", "/config", bytes.NewReader(doc), int64(len(doc)))
					if err != nil {
						return fmt.Errorf("apply: %w", err)
					}
					resp.Body.Close()
					fmt.Printf("applied at config index %s\n", resp.Header.Get("X-Gatehouse-Config-Index"))
					return nil
				},
			},
			{
				Name: "diff", Usage: "show what applying FILE would change", ArgsUsage: "FILE",
				Flags: []cli.Flag{adminFlag(), tokenFlag()},
				Action: func(c *cli.Context) error {
					apiToken = c.String("token")
					doc, err := fileArg(c)
					if err != nil {
						return err
					}
					_, err = plan(c, doc)
					return err
				},
			},
			{
				Name: "dump", Usage: "print the configuration (now, or --at a past point) as kong.yaml",
				Flags: []cli.Flag{adminFlag(), tokenFlag(),
					&cli.StringFlag{Name: "at", Usage: "log index or RFC 3339 time"},
					&cli.BoolFlag{Name: "json", Usage: "JSON instead of YAML"}},
				Action: func(c *cli.Context) error {
					apiToken = c.String("token")
					path := "/config"
					if at := c.String("at"); at != "" {
						path += "?at=" + url.QueryEscape(at)
					}
					resp, err := request(c.String("admin"), "GET", path, nil, 0)
					if err != nil {
						return fmt.Errorf("dump: %w", err)
					}
					defer resp.Body.Close()
					if c.Bool("json") {
						_, err := io.Copy(os.Stdout, resp.Body)
						return err
					}
					var doc map[string]any
					if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
						return fmt.Errorf("dump: %w", err)
					}
					enc := yaml.NewEncoder(os.Stdout)
					enc.SetIndent(2)
					return enc.Encode(doc)
				},
			},
		},
	}
}
