package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/internal/gateway"
	"github.com/salamander-chat/salamander/internal/jsstore"
)

const adminUsage = `usage: salamander admin [--nats URL,…] <command> [args]

Operator actions, taken on the replicated log directly through any site's
NATS server, so they work while any site is down:

  revoke-user NAME   revoke every session of NAME at every site (they must log in again)
  leaders            list every stream's leader, replicas and last sequence
  step-down STREAM   move a stream's leadership to another site (e.g. before maintenance)
  suspend NAME       suspend an account: it can neither log in nor use its sessions
  restore NAME       end a suspension
  set-role NAME ROLE make NAME a user, operator or admin (how the first admin is made;
                     admins then promote others from the API)
  rotate-key         make a new session-signing key current at every site; sessions signed
                     with the previous key stay valid until they expire
`

func runAdmin(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("admin", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, adminUsage); fs.PrintDefaults() }
	conn := addConnFlags(fs, 15*time.Second)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return flag.ErrHelp
	}
	ctx, cancel := context.WithTimeout(ctx, conn.timeout)
	defer cancel()
	store, admin, err := conn.openAdmin(ctx, "salamander-admin")
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	defer store.Close()
	if err := store.EnsureStreams(ctx); err != nil {
		return err
	}
	switch cmd := fs.Arg(0); cmd {
	case "revoke-user":
		if fs.NArg() != 2 {
			return fmt.Errorf("admin: usage: revoke-user NAME")
		}
		name := fs.Arg(1)
		if err := salamander.ValidateUserName(name); err != nil {
			return fmt.Errorf("admin: %w", err)
		}
		rec := salamander.Record{Type: salamander.RecUserRevoked, User: name, Site: "cli", At: time.Now().UTC()}
		pos, _, err := store.Append(ctx, jsstore.AccountsStream, "sess."+name, rec,
			jsstore.AppendOptions{MsgID: "admin-revoke:" + name + ":" + rec.At.Format(time.RFC3339Nano)})
		if err != nil {
			return fmt.Errorf("admin: revoke %s: %w", name, err)
		}
		fmt.Fprintf(stdout, "revoked every session of %s issued before %s (log position %s:%d)\n",
			name, rec.At.Format(time.RFC3339), pos.Stream, pos.Seq)
		return nil
	case "suspend", "restore":
		if fs.NArg() != 2 {
			return fmt.Errorf("admin: usage: %s NAME", cmd)
		}
		name := fs.Arg(1)
		if err := salamander.ValidateUserName(name); err != nil {
			return fmt.Errorf("admin: %w", err)
		}
		typ := salamander.RecUserSuspended
		if cmd == "restore" {
			typ = salamander.RecUserRestored
		}
		rec := salamander.Record{Type: typ, User: name, Site: "cli", At: time.Now().UTC()}
		pos, _, err := store.Append(ctx, jsstore.AccountsStream, "suspend."+name, rec,
			jsstore.AppendOptions{MsgID: "admin-" + cmd + ":" + name + ":" + rec.At.Format(time.RFC3339Nano)})
		if err != nil {
			return fmt.Errorf("admin: %s %s: %w", cmd, name, err)
		}
		fmt.Fprintf(stdout, "%s: %s at every site once applied (log position %s:%d)\n", name, cmd, pos.Stream, pos.Seq)
		return nil
	case "set-role":
		if fs.NArg() != 3 {
			return fmt.Errorf("admin: usage: set-role NAME user|operator|admin")
		}
		name, role := fs.Arg(1), fs.Arg(2)
		if err := salamander.ValidateUserName(name); err != nil {
			return fmt.Errorf("admin: %w", err)
		}
		if salamander.RoleRank(role) == 0 {
			return fmt.Errorf("admin: role must be user, operator or admin")
		}
		rec := salamander.Record{Type: salamander.RecRoleSet, User: name, Role: role, Site: "cli", At: time.Now().UTC()}
		pos, _, err := store.Append(ctx, jsstore.AccountsStream, "role."+name, rec,
			jsstore.AppendOptions{MsgID: "admin-role:" + name + ":" + rec.At.Format(time.RFC3339Nano)})
		if err != nil {
			return fmt.Errorf("admin: set the role of %s: %w", name, err)
		}
		fmt.Fprintf(stdout, "%s is %s at every site once applied (log position %s:%d)\n", name, role, pos.Stream, pos.Seq)
		return nil
	case "rotate-key":
		if fs.NArg() != 1 {
			return fmt.Errorf("admin: usage: rotate-key")
		}
		id := gateway.NewKeyID()
		sealed, err := admin.SealKey(id, gateway.NewSigningKey())
		if err != nil {
			return fmt.Errorf("admin: %w", err)
		}
		rec := salamander.Record{Type: salamander.RecSigningKey, KeyID: id, Key: sealed, Rotate: true, At: time.Now().UTC()}
		pos, _, err := store.Append(ctx, jsstore.AccountsStream, "key."+id, rec,
			jsstore.AppendOptions{ExpectNew: true, MsgID: "key-rotate:" + id})
		if err != nil {
			return fmt.Errorf("admin: rotate the signing key: %w", err)
		}
		fmt.Fprintf(stdout, "signing key %s is current (log position %s:%d): every site signs new sessions with it once it has\n"+
			"applied it; sessions signed with the previous key stay valid until they expire\n", id, pos.Stream, pos.Seq)
		return nil
	case "leaders":
		st, err := store.Status(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "STREAM\tLEADER\tREPLICAS\tUNHEALTHY\tLAST SEQ")
		for _, s := range st {
			fmt.Fprintf(tw, "%s\t%s\t%v\t%v\t%d\n", s.Stream, s.Leader, s.Replicas, s.Unhealthy, s.LastSeq)
		}
		return tw.Flush()
	case "step-down":
		if fs.NArg() != 2 {
			return fmt.Errorf("admin: usage: step-down STREAM")
		}
		if err := store.StepDown(ctx, fs.Arg(1), ""); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: leader stepped down; a new one is elected among its replicas\n", fs.Arg(1))
		return nil
	default:
		fs.Usage()
		return fmt.Errorf("admin: unknown command %q", cmd)
	}
}
