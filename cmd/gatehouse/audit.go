package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
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
