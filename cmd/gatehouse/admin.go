package main

import (
	"errors"
	"os"
	"strings"

	"github.com/urfave/cli/v2"
)

// adminCommand manages Admin API users, teams and custom roles through a
// node's /rbac endpoints.
func adminCommand() *cli.Command {
	flags := func(extra ...cli.Flag) []cli.Flag { return append([]cli.Flag{adminFlag(), tokenFlag()}, extra...) }
	one := func(c *cli.Context, what string) (string, error) {
		apiToken = c.String("token")
		if c.NArg() != 1 {
			return "", errors.New("usage: gatehouse admin " + what + " [flags] NAME (flags before the name)")
		}
		return c.Args().First(), nil
	}
	list := func(kind string) *cli.Command {
		return &cli.Command{Name: "list-" + kind, Usage: "list " + kind, Flags: flags(),
			Action: func(c *cli.Context) error {
				apiToken = c.String("token")
				return call(c.String("admin"), "GET", "/rbac/"+kind, nil, os.Stdout)
			}}
	}
	return &cli.Command{
		Name:  "admin",
		Usage: "manage admins, teams and roles (RBAC)",
		Subcommands: []*cli.Command{
			{
				Name: "create", Usage: "create an admin and print its token (shown once)", ArgsUsage: "NAME",
				Flags: flags(&cli.StringSliceFlag{Name: "role", Usage: "role to grant (repeatable)"},
					&cli.StringSliceFlag{Name: "team", Usage: "team to join (repeatable)"}),
				Action: func(c *cli.Context) error {
					name, err := one(c, "create")
					if err != nil {
						return err
					}
					return call(c.String("admin"), "POST", "/rbac/admins", map[string]any{"username": name,
						"roles": nonNil(c.StringSlice("role")), "teams": nonNil(c.StringSlice("team"))}, os.Stdout)
				},
			},
			{
				Name: "token", Usage: "issue a new token for an admin (the old one stops working)", ArgsUsage: "NAME",
				Flags: flags(),
				Action: func(c *cli.Context) error {
					name, err := one(c, "token")
					if err != nil {
						return err
					}
					return call(c.String("admin"), "POST", "/rbac/admins/"+name+"/token", nil, os.Stdout)
				},
			},
			{
				Name: "delete", Usage: "delete an admin", ArgsUsage: "NAME", Flags: flags(),
				Action: func(c *cli.Context) error {
					name, err := one(c, "delete")
					if err != nil {
						return err
					}
					return call(c.String("admin"), "DELETE", "/rbac/admins/"+name, nil, os.Stdout)
				},
			},
			{
				Name: "team", Usage: "create or replace a team", ArgsUsage: "NAME",
				Flags: flags(&cli.StringSliceFlag{Name: "role", Usage: "role the team holds (repeatable)"}),
				Action: func(c *cli.Context) error {
					name, err := one(c, "team")
					if err != nil {
						return err
					}
					return call(c.String("admin"), "PUT", "/rbac/teams/"+name,
						map[string]any{"roles": nonNil(c.StringSlice("role"))}, os.Stdout)
				},
			},
			{
				Name: "role", Usage: "create or replace a custom role", ArgsUsage: "NAME",
				Flags: flags(
					&cli.StringSliceFlag{Name: "allow", Usage: "entity:op to allow, e.g. services:create or routes:* (repeatable)"},
					&cli.StringSliceFlag{Name: "deny", Usage: "entity:op to deny; a deny wins (repeatable)"}),
				Action: func(c *cli.Context) error {
					name, err := one(c, "role")
					if err != nil {
						return err
					}
					var perms []any
					for _, effect := range []string{"allow", "deny"} {
						for _, r := range c.StringSlice(effect) {
							entity, op, ok := strings.Cut(r, ":")
							if !ok {
								op = "*"
							}
							perms = append(perms, map[string]any{"effect": effect, "entity": entity, "op": op})
						}
					}
					if perms == nil {
						perms = []any{}
					}
					return call(c.String("admin"), "PUT", "/rbac/roles/"+name, map[string]any{"permissions": perms}, os.Stdout)
				},
			},
			list("admins"), list("teams"), list("roles"),
		},
	}
}

func nonNil(l []string) []string {
	if l == nil {
		return []string{}
	}
	return l
}
