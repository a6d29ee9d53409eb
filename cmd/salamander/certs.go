package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/salamander-chat/salamander/internal/secrets"
)

const certsUsage = `usage: salamander certs --dir DIR --sites a,b,c [--hosts a=HOST|IP,b=…] [--plain]

Creates a deployment's secrets in DIR (a new directory, mode 0700):

  ca.pem, ca-key.pem        the deployment's certificate authority (keep ca-key.pem offline)
  site-SITE/site.json       what site SITE's 'serve --secrets' needs: its gateway's NATS
                            credential, the users its NATS server admits, the route password
  site-SITE/cert.pem, key.pem, ca.pem
                            its certificate (routes both ways, NATS clients), for HOSTs
  admin.json                the operators' credential for 'salamander admin --creds'

Copy each site-SITE directory to its site only. Every certificate also names localhost
and 127.0.0.1. --plain writes credentials without certificates (links unencrypted:
loopback only, as 'salamander dev' does).
`

func runCerts(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("certs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, certsUsage); fs.PrintDefaults() }
	dir := fs.String("dir", "", "directory to create (required; must not hold secrets already)")
	sites := fs.String("sites", "a,b,c", "comma-separated site names")
	hosts := fs.String("hosts", "", "per site, the names and addresses its servers are reached at: a=db1.example|10.0.0.1,b=…")
	plain := fs.Bool("plain", false, "credentials only, no certificates (loopback development)")
	if err := fs.Parse(args); err != nil {
		return flagError(err)
	}
	if *dir == "" {
		fs.Usage()
		return fmt.Errorf("certs: --dir is required")
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("certs: unexpected %q", fs.Arg(0))
	}
	o := secrets.Options{Sites: splitList(*sites), TLS: !*plain, Hosts: map[string][]string{}}
	// A deployment keeps each stream's three replicas at three sites: with
	// fewer, its sites could not start.
	if len(o.Sites) < 3 {
		return fmt.Errorf("certs: a deployment has three sites or more (--sites %s)", *sites)
	}
	for _, item := range splitList(*hosts) {
		name, list, ok := strings.Cut(item, "=")
		if !ok || name == "" || list == "" {
			return fmt.Errorf("certs: --hosts item %q is not SITE=HOST|HOST…", item)
		}
		o.Hosts[name] = append(o.Hosts[name], strings.Split(list, "|")...)
	}
	for name := range o.Hosts {
		if !slices.Contains(o.Sites, name) {
			return fmt.Errorf("certs: --hosts names site %q, which is not in --sites", name)
		}
	}
	if err := secrets.Generate(*dir, o); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote the secrets of sites %s to %s\n", strings.Join(o.Sites, ", "), *dir)
	for _, s := range o.Sites {
		fmt.Fprintf(stdout, "  site %s: salamander serve --site %s --secrets %s …\n", s, s, secrets.SiteFile(*dir, s))
	}
	fmt.Fprintf(stdout, "  operators: salamander admin --creds %s …\n", secrets.AdminFile(*dir))
	return nil
}
