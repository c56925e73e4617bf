package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"

	"github.com/urfave/cli/v2"
)

// historyCommand is time travel from the command line: the configuration
// at a past point, and what changed between two points.
func historyCommand() *cli.Command {
	return &cli.Command{
		Name:  "history",
		Usage: "the configuration at a past point, and what changed between two points",
		Subcommands: []*cli.Command{
			{Name: "show", Usage: "print the configuration as it was at a point, in Kong's declarative format",
				Flags: []cli.Flag{adminFlag(), tokenFlag(),
					&cli.StringFlag{Name: "at", Usage: "log index or RFC 3339 time (default: now)"}},
				Action: func(c *cli.Context) error {
					apiToken = c.String("token")
					path := "/config"
					if at := c.String("at"); at != "" {
						path += "?at=" + url.QueryEscape(at)
					}
					var buf bytes.Buffer
					if err := call(c.String("admin"), "GET", path, nil, &buf); err != nil {
						return err
					}
					var out bytes.Buffer
					if err := json.Indent(&out, buf.Bytes(), "", "  "); err != nil {
						return fmt.Errorf("unexpected answer: %w", err)
					}
					out.WriteByte('\n')
					_, err := out.WriteTo(os.Stdout)
					return err
				}},
			{Name: "diff", Usage: "list the entities that changed between two points",
				Flags: []cli.Flag{adminFlag(), tokenFlag(),
					&cli.StringFlag{Name: "from", Required: true, Usage: "log index or RFC 3339 time"},
					&cli.StringFlag{Name: "to", Usage: "log index or RFC 3339 time (default: now)"},
					&cli.BoolFlag{Name: "json", Usage: "print the API's JSON instead of a summary"}},
				Action: func(c *cli.Context) error {
					apiToken = c.String("token")
					q := url.Values{"from": {c.String("from")}}
					if to := c.String("to"); to != "" {
						q.Set("to", to)
					}
					var buf bytes.Buffer
					if err := call(c.String("admin"), "GET", "/audit/diff?"+q.Encode(), nil, &buf); err != nil {
						return err
					}
					if c.Bool("json") {
						_, err := buf.WriteTo(os.Stdout)
						return err
					}
					return printDiff(buf.Bytes(), os.Stdout)
				}},
		},
	}
}

// printDiff writes one line per changed entity, then one per changed
// field of an update: "~ services 3c9… (example): retries 5 -> 9".
func printDiff(b []byte, out io.Writer) error {
	var d struct {
		From, To uint64
		Changes  []struct {
			EntityType string         `json:"entity_type"`
			EntityID   string         `json:"entity_id"`
			Op         string         `json:"op"`
			Name       string         `json:"name"`
			Fields     []string       `json:"fields"`
			Before     map[string]any `json:"before"`
			After      map[string]any `json:"after"`
		}
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return fmt.Errorf("unexpected answer: %w", err)
	}
	fmt.Fprintf(out, "%d change(s) from index %d to %d\n", len(d.Changes), d.From, d.To)
	mark := map[string]string{"created": "+", "deleted": "-", "updated": "~"}
	for _, c := range d.Changes {
		name := ""
		if c.Name != "" {
			name = " (" + c.Name + ")"
		}
		fmt.Fprintf(out, "%s %s %s%s\n", mark[c.Op], c.EntityType, c.EntityID, name)
		for _, f := range c.Fields {
			fmt.Fprintf(out, "    %s: %s -> %s\n", f, compact(c.Before[f]), compact(c.After[f]))
		}
	}
	return nil
}

func compact(v any) string {
	b, _ := json.Marshal(v)
	return strings.TrimSpace(string(b))
}
