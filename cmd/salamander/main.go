// Command salamander is the Salamander messenger: the server (serve, dev),
// the terminal client (chat), the fire drill (drill), the load generator
// (bench), the load balancer in front of a site's gateways (lb) and the
// operators' tools (admin, certs, backup, restore), in one binary.
//
// Only this package reads flags, files and the environment; it turns them
// into the Config structs of the internal packages and wires them together.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
)

const usage = `salamander — a messenger that keeps talking when a data center burns

usage: salamander <command> [flags]

commands:
  dev      run a three-site cluster (a, b, c) on this machine
  serve    run one site (embedded NATS, or --nats for an existing cluster)
  chat     terminal chat client that fails over between sites
  drill    burn a site under live load and prove nothing was lost
  bench    load a cluster and report latency, throughput, loss, memory per connection, catch-up
  admin    operator actions on the log: roles, suspend, revoke, drain a site, incidents, stream leaders, key rotation
  lb       balance a site's public URL over its gateways (several serve --nats per site)
  certs    create a deployment's certificates and credentials
  backup   take an online backup of every stream of the log to a directory
  restore  restore streams from a backup into a cluster where they are absent
  version  print the version

Run 'salamander <command> -h' for a command's flags.
`

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// versionLine is what `salamander version` prints: the version, and from
// the build information Go records in the binary the commit it was built
// from (vcs.revision, "+modified" when the tree had uncommitted changes)
// and the Go release, e.g. "salamander dev 1792dd2c0a5e+modified go1.26.8".
// A binary built outside a repository (or with -buildvcs=false) names no
// commit.
func versionLine() string {
	line := "salamander " + version
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return line
	}
	rev, modified := "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if rev != "" {
		line += " " + rev[:min(12, len(rev))]
		if modified {
			line += "+modified"
		}
	}
	return line + " " + bi.GoVersion
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	status := exitStatus(err)
	if status == 1 {
		fmt.Fprintln(os.Stderr, "salamander:", err)
	}
	os.Exit(status)
}

// exitStatus is the process's exit status for run's error: 0, 2 for a
// usage error (help asked of a command, exitCode(2)), exitCode's own, or
// 1 for any other error, which main prints.
func exitStatus(err error) int {
	var ec exitCode
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 2
	case errors.As(err, &ec):
		return int(ec)
	}
	return 1
}

// exitCode is an error that only sets the process's exit status (the
// command has already said what went wrong).
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return flag.ErrHelp
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "dev":
		return runDev(ctx, rest, stdout, stderr)
	case "serve":
		return runServe(ctx, rest, stdout, stderr)
	case "chat":
		return runChat(ctx, rest, stdin, stdout, stderr)
	case "drill":
		return runDrill(ctx, rest, stdout, stderr)
	case "admin":
		return runAdmin(ctx, rest, stdin, stdout, stderr)
	case "lb":
		return runLB(ctx, rest, stdout, stderr)
	case "certs":
		return runCerts(ctx, rest, stdout, stderr)
	case "bench":
		return runBench(ctx, rest, stdout, stderr)
	case "backup":
		return runBackup(ctx, rest, stdout, stderr)
	case "restore":
		return runRestore(ctx, rest, stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, versionLine())
		return nil
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprintf(stderr, "salamander: unknown command %q\n\n%s", cmd, usage)
		return flag.ErrHelp
	}
}

// newLogger returns a text logger at the named level.
func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(level))); err != nil {
		return nil, fmt.Errorf("bad log level %q (debug, info, warn, error)", level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// flagError is what a command returns when its flags do not parse: the
// flag package has already said what was wrong and printed the usage, so
// the process only exits with status 2, a usage error's (-h is
// flag.ErrHelp, also 2).
func flagError(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return err
	}
	return exitCode(2)
}
