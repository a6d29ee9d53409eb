package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/internal/gateway"
	"github.com/salamander-chat/salamander/internal/jsstore"
	"github.com/salamander-chat/salamander/internal/secrets"
)

const adminUsage = `usage: salamander admin [--nats URL,…] <command> [args]

Operator actions, taken on the replicated log directly through any site's
NATS server, so they work while any site is down:

  revoke-user NAME   revoke every session of NAME at every site (they must log in again)
  leaders            list every stream's leader, its followers and last sequence
  step-down STREAM [SITE]
                     move a stream's leadership to another site, or to the named one
  drain SITE         take a site out of service: its readiness fails, its clients move,
                     its stream leaders move away and no site hands it one until undrained
  undrain SITE       put a drained site back in service
  incident announce --impact minor|major|critical --services messaging,login,history
                     --title TEXT [--title-ko TEXT] --message TEXT [--message-ko TEXT]
                     announce an incident: every site's status page shows it and every
                     connected client gets it as a banner
  incident update ID --state investigating|identified|monitoring|resolved --message TEXT [--message-ko TEXT]
                     add to an incident's timeline; the state resolved resolves it
  drill end ID --reason TEXT
                     end a drill whose runner died (recorded as failed, with the reason):
                     while a drill runs no site may be drained and no other drill start
  suspend NAME       suspend an account: it can neither log in nor use its sessions
  set-password [--bcrypt-cost N] NAME
                     reset the password of NAME, who forgot theirs: read from a prompt (not
                     shown), or the first line of stdin when it is not a terminal, never from
                     the command line; every session of NAME ends at every site
  restore NAME       end a suspension
  set-role NAME ROLE make NAME a user, operator or admin (how the first admin is made;
                     admins then promote others from the API)
  rotate-key [--revoke-previous]
                     make a new session-signing key current at every site; sessions signed
                     with the previous key stay valid until they expire (routine rotation),
                     or with --revoke-previous (after a suspected leak) end at once: every
                     earlier key is revoked and its users log in again
`

// adminCommands are the commands runAdmin knows: anything else is refused
// before it connects.
var adminCommands = []string{"revoke-user", "suspend", "restore", "set-role", "set-password", "rotate-key", "leaders", "step-down",
	"drain", "undrain", "incident", "drill"}

// adminEnsureWait bounds how long an admin command waits for every stream
// to answer before it goes on with those it needs.
const adminEnsureWait = 3 * time.Second

func runAdmin(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("admin", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, adminUsage); fs.PrintDefaults() }
	conn := addConnFlags(fs, 15*time.Second)
	if err := fs.Parse(args); err != nil {
		return flagError(err)
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return flag.ErrHelp
	}
	if !slices.Contains(adminCommands, fs.Arg(0)) {
		fs.Usage()
		fmt.Fprintf(stderr, "admin: unknown command %q\n", fs.Arg(0))
		return exitCode(2) // a usage error, as an unknown command of salamander's
	}
	ctx, cancel := context.WithTimeout(ctx, conn.timeout)
	defer cancel()
	store, admin, err := conn.openAdmin(ctx, "salamander-admin")
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	defer store.Close()
	// UpgradeStreams upgrades streams an older version created (only the
	// admin credential may) and creates nothing (a command run on a
	// damaged cluster must not set up a new one over it), but waits while
	// any stream elects a leader: in a fire, an admin action must not
	// wait for that.
	ectx, ecancel := context.WithTimeout(ctx, adminEnsureWait)
	err = store.UpgradeStreams(ectx)
	ecancel()
	if err != nil {
		if lerr := store.LearnPartitions(ctx); lerr != nil {
			return fmt.Errorf("admin: %w; nor could the partition count be read: %v", err, lerr)
		}
		if errors.Is(err, jsstore.ErrStreamMissing) {
			fmt.Fprintf(stderr, "admin: %v; going on\n", err)
		} else {
			fmt.Fprintf(stderr, "admin: not every stream answered within %s (one may be electing a leader): %v; going on\n", adminEnsureWait, err)
		}
	}
	switch cmd := fs.Arg(0); cmd {
	case "revoke-user":
		if fs.NArg() != 2 {
			return fmt.Errorf("admin: usage: revoke-user NAME")
		}
		name := fs.Arg(1)
		if err := adminUserExists(ctx, store, name); err != nil {
			return err
		}
		at := time.Now().UTC()
		pos, err := adminAppend(ctx, store, "sess."+name, salamander.Record{Type: salamander.RecUserRevoked, User: name, At: at})
		if err != nil {
			return fmt.Errorf("admin: revoke %s: %w", name, err)
		}
		fmt.Fprintf(stdout, "revoked every session of %s signed so far (every site refuses those signed before it applied log position %s:%d)\n",
			name, pos.Stream, pos.Seq)
		return nil
	case "suspend", "restore":
		if fs.NArg() != 2 {
			return fmt.Errorf("admin: usage: %s NAME", cmd)
		}
		name := fs.Arg(1)
		if err := adminUserExists(ctx, store, name); err != nil {
			return err
		}
		typ := salamander.RecUserSuspended
		if cmd == "restore" {
			typ = salamander.RecUserRestored
		}
		pos, err := adminAppend(ctx, store, "suspend."+name, salamander.Record{Type: typ, User: name})
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
		if salamander.RoleRank(role) == 0 {
			return fmt.Errorf("admin: role must be user, operator or admin")
		}
		if err := adminUserExists(ctx, store, name); err != nil {
			return err
		}
		pos, err := adminAppend(ctx, store, "role."+name, salamander.Record{Type: salamander.RecRoleSet, User: name, Role: role})
		if err != nil {
			return fmt.Errorf("admin: set the role of %s: %w", name, err)
		}
		fmt.Fprintf(stdout, "%s is %s at every site once applied (log position %s:%d)\n", name, role, pos.Stream, pos.Seq)
		return nil
	case "set-password":
		return adminSetPassword(ctx, store, fs.Args()[1:], stdin, stdout, stderr)
	case "rotate-key":
		return adminRotateKey(ctx, store, admin, fs.Args()[1:], stdout, stderr)
	case "leaders":
		// Every stream is listed, also when some cannot be read (in a fire,
		// those electing): the command then fails after the table.
		st, err := store.Status(ctx)
		// The partitions' standbys too: their leaders are kept at another
		// site than their partitions' (sends are held there during an
		// election).
		standbys, serr := store.StandbyStatus(ctx)
		st = append(st, standbys...)
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "STREAM\tLEADER\tFOLLOWERS\tUNHEALTHY\tLAST SEQ")
		for _, s := range st {
			if s.Error != "" {
				fmt.Fprintf(tw, "%s\t(not read)\t\t\t\n", s.Stream)
				continue
			}
			fmt.Fprintf(tw, "%s\t%s\t%v\t%v\t%d\n", s.Stream, s.Leader, s.Replicas, s.Unhealthy, s.LastSeq)
		}
		if ferr := tw.Flush(); ferr != nil {
			return ferr
		}
		return errors.Join(err, serr)
	case "step-down":
		if fs.NArg() != 2 && fs.NArg() != 3 {
			return fmt.Errorf("admin: usage: step-down STREAM [SITE]")
		}
		return adminStepDown(ctx, store, fs.Arg(1), fs.Arg(2), stdout)
	case "drain", "undrain":
		if fs.NArg() != 2 {
			return fmt.Errorf("admin: usage: %s SITE", cmd)
		}
		return adminDrain(ctx, store, fs.Arg(1), cmd == "drain", stdout)
	case "incident":
		return adminIncident(ctx, store, fs.Args()[1:], stdout, stderr)
	case "drill":
		return adminDrill(ctx, store, fs.Args()[1:], stdout, stderr)
	default:
		fs.Usage()
		return fmt.Errorf("admin: unknown command %q", cmd)
	}
}

// adminUserExists refuses a name the log holds no account of: the log
// ignores an action on an unknown account, which must not be reported as
// done.
func adminUserExists(ctx context.Context, store *jsstore.Store, name string) error {
	if err := salamander.ValidateUserName(name); err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	_, _, found, err := store.LastRecord(ctx, jsstore.AccountsStream, "user."+name)
	if err != nil {
		return fmt.Errorf("admin: look up %s: %w", name, err)
	}
	if !found {
		return fmt.Errorf("admin: no user %q", name)
	}
	return nil
}

// adminDrill ends a drill whose runner died.
func adminDrill(ctx context.Context, store *jsstore.Store, args []string, stdout, stderr io.Writer) error {
	if len(args) < 2 || args[0] != "end" || !salamander.ValidOpsID(args[1]) {
		return fmt.Errorf("admin: usage: drill end ID --reason TEXT")
	}
	id := args[1]
	fs := flag.NewFlagSet("drill end", flag.ContinueOnError)
	fs.SetOutput(stderr)
	reason := fs.String("reason", "", "why it is ended (kept in its record), e.g. its runner was killed")
	if err := fs.Parse(args[2:]); err != nil {
		return flagError(err)
	}
	if fs.NArg() > 0 { // the flag package stops at the first word: flags after it would be dropped unread
		return fmt.Errorf("admin: usage: drill end ID --reason TEXT (unexpected %q)", fs.Arg(0))
	}
	req := salamander.DrillEndRequest{Reason: *reason}
	if err := req.Validate(); err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	_, last, found, err := store.LastRecord(ctx, jsstore.AccountsStream, "drill."+id)
	switch {
	case err != nil:
		return fmt.Errorf("admin: read drill %s: %w", id, err)
	case !found:
		return fmt.Errorf("admin: no drill %q", id)
	case last.Type == salamander.RecDrillEnded:
		return fmt.Errorf("admin: drill %s is over", id)
	}
	rec := salamander.Record{Type: salamander.RecDrillEnded, Drill: &salamander.Drill{ID: id, State: salamander.DrillFailed,
		Summary: salamander.DrillEndedBy("an admin (cli)", req.Reason)}}
	pos, err := adminAppend(ctx, store, "drill."+id, rec)
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	fmt.Fprintf(stdout, "drill %s: ended, as failed, at every site once applied (log position %s:%d)\n", id, pos.Stream, pos.Seq)
	return nil
}

// adminAppend appends an ops record taken with the admin credential.
func adminAppend(ctx context.Context, store *jsstore.Store, key string, rec salamander.Record) (salamander.Position, error) {
	rec.Site = "cli"
	if rec.At.IsZero() {
		rec.At = time.Now().UTC()
	}
	pos, _, err := store.Append(ctx, jsstore.AccountsStream, key, rec,
		jsstore.AppendOptions{MsgID: "admin-" + string(rec.Type) + ":" + key + ":" + rec.At.Format(time.RFC3339Nano)})
	return pos, err
}

// adminRotateKey appends a new sealed session-signing key, current at
// every site once applied. With --revoke-previous it then appends the
// record that revokes every other key (the new key's id, no key material):
// every session they signed ends, also one a thief of an old key signs
// with whatever claims.
func adminRotateKey(ctx context.Context, store *jsstore.Store, admin *secrets.Admin, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("rotate-key", flag.ContinueOnError)
	fs.SetOutput(stderr)
	revoke := fs.Bool("revoke-previous", false,
		"after a suspected leak: revoke every earlier key, ending every session it signed (users log in again)")
	if err := fs.Parse(args); err != nil {
		return flagError(err)
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("admin: usage: rotate-key [--revoke-previous]")
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
		"applied it\n", id, pos.Stream, pos.Seq)
	if !*revoke {
		fmt.Fprintln(stdout, "sessions signed with the previous key stay valid until they expire; after a suspected leak,\n"+
			"rotate with --revoke-previous instead")
		return nil
	}
	rec = salamander.Record{Type: salamander.RecSigningKey, KeyID: id, Rotate: true, At: time.Now().UTC()}
	pos, _, err = store.Append(ctx, jsstore.AccountsStream, "key."+id, rec, jsstore.AppendOptions{MsgID: "key-revoke:" + id})
	if err != nil {
		return fmt.Errorf("admin: signing key %s is current, but the previous keys are not revoked (run rotate-key "+
			"--revoke-previous again): %w", id, err)
	}
	fmt.Fprintf(stdout, "every earlier signing key is revoked (log position %s:%d): every session it signed ends at\n"+
		"each site once it has applied this; those users log in again\n", pos.Stream, pos.Seq)
	return nil
}

// adminStepDown moves a stream's leader away, or to the replica at site.
// Both are recorded in the audit trail once done (a move-leader record,
// whose target is "any" for a plain step-down).
func adminStepDown(ctx context.Context, store *jsstore.Store, stream, site string, stdout io.Writer) error {
	record := func(target string) error {
		if _, err := adminAppend(ctx, store, "leader."+stream, salamander.Record{Type: salamander.RecLeaderMoved, Name: stream,
			Target: target}); err != nil {
			return fmt.Errorf("admin: the leader moved, but recording the move in the audit trail failed: %w", err)
		}
		return nil
	}
	if site == "" {
		if err := store.StepDown(ctx, stream, ""); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: leader stepped down; a new one is elected among its replicas\n", stream)
		return record("any")
	}
	// The ops API's rules (gateway.handleMoveLeader): not to a drained
	// site, and a site that leads already is where the leader is. The
	// drains are read from the accounts stream's leader: in a fire, while
	// it is elected, the move goes on without that check, saying so.
	if _, drained, err := drainState(ctx, store); err != nil {
		fmt.Fprintf(stdout, "admin: the sites' drains could not be read (%v); make sure site %s is not drained\n", err, site)
	} else if slices.Contains(drained, site) {
		return fmt.Errorf("admin: site %s is drained; undrain it first", site)
	}
	st, err := store.StatusOf(ctx, stream)
	if err != nil {
		return err
	}
	if st.Leader != "" && jsstore.ServerSite(st.Leader) == site {
		fmt.Fprintf(stdout, "%s: already led by %s (site %s); nothing moved\n", stream, st.Leader, site)
		return nil
	}
	target := ""
	for _, r := range st.Replicas {
		if jsstore.ServerSite(r) == site && !slices.Contains(st.Unhealthy, r) {
			target = r
		}
	}
	if target == "" {
		return fmt.Errorf("admin: %s has no healthy replica at site %s (replicas %v, unhealthy %v)", stream, site, st.Replicas, st.Unhealthy)
	}
	if err := store.StepDown(ctx, stream, target); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: leadership handed to %s (site %s)\n", stream, target, site)
	return record(site)
}

// adminDrain drains a site (or ends its drain) and, draining, moves its
// stream leaders away at once (its own site keeps moving any it is
// handed later).
func adminDrain(ctx context.Context, store *jsstore.Store, site string, drain bool, stdout io.Writer) error {
	if !salamander.ValidSiteName(site) {
		return fmt.Errorf("admin: %q is not a site name", site)
	}
	// The same rules as the ops API (gateway.CheckDrain), on the log as
	// its leader holds it now.
	sites, drained, err := drainState(ctx, store)
	if err != nil {
		return fmt.Errorf("admin: read the sites' drains: %w", err)
	}
	if err := gateway.CheckDrain(site, sites, drained, drain); err != nil {
		return fmt.Errorf("admin: %s", salamander.ErrorMessage(err))
	}
	if drain {
		// A site a running drill cuts off counts like a drained one: as
		// the ops API, no drain while a drill runs.
		if err := refuseWhileDrillRuns(ctx, store, "drain"); err != nil {
			return fmt.Errorf("admin: %w", err)
		}
	}
	rec := salamander.Record{Type: salamander.RecSiteUndrained, Target: site}
	if drain {
		// Every site's name, for the log's own majority check.
		rec.Type, rec.Members = salamander.RecSiteDrained, sites
	}
	pos, err := adminAppend(ctx, store, "site."+site, rec)
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	if !drain {
		fmt.Fprintf(stdout, "site %s: back in service once applied (log position %s:%d)\n", site, pos.Stream, pos.Seq)
		return nil
	}
	moved, err := store.MoveLeadersOff(ctx, jsstore.ServerSite, func(server string) bool { return jsstore.ServerSite(server) == site })
	fmt.Fprintf(stdout, "site %s: drained once applied (log position %s:%d), unless another drain or a drill reached the log "+
		"first (the console's sites say); leaders moved off it: %v\n", site, pos.Stream, pos.Seq, moved)
	if err != nil {
		fmt.Fprintf(stdout, "some leaders stay for now (the site moves them itself): %v\n", err)
	}
	return nil
}

// drainState returns the cluster's sites (one replica of every stream is
// at each: the sites of the accounts stream's servers) and the drained
// ones (a site is drained while its newest drain record says so).
func drainState(ctx context.Context, store *jsstore.Store) (sites, drained []string, err error) {
	st, err := store.StatusOf(ctx, jsstore.AccountsStream)
	if err != nil {
		return nil, nil, err
	}
	for _, p := range st.Peers {
		if site := jsstore.ServerSite(p.Server); !slices.Contains(sites, site) {
			sites = append(sites, site)
		}
	}
	if len(sites) == 0 {
		return nil, nil, fmt.Errorf("the accounts stream lists no servers (electing?)")
	}
	slices.Sort(sites)
	for _, site := range sites {
		_, rec, found, err := store.LastRecord(ctx, jsstore.AccountsStream, "site."+site)
		if err != nil {
			return nil, nil, err
		}
		if found && rec.Type == salamander.RecSiteDrained {
			drained = append(drained, site)
		}
	}
	return sites, drained, nil
}

// adminIncident announces or updates an incident.
func adminIncident(ctx context.Context, store *jsstore.Store, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "announce" && args[0] != "update") {
		return fmt.Errorf("admin: usage: incident announce|update …")
	}
	verb := args[0]
	fs := flag.NewFlagSet("incident "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	impact := fs.String("impact", "", "minor, major or critical")
	services := fs.String("services", "", "comma-separated: messaging, login, history")
	state := fs.String("state", "", "investigating, identified, monitoring or resolved")
	var title, msg salamander.Localized
	fs.StringVar(&title.EN, "title", "", "the title in English")
	fs.StringVar(&title.KO, "title-ko", "", "the title in Korean")
	fs.StringVar(&msg.EN, "message", "", "what users should know, in English")
	fs.StringVar(&msg.KO, "message-ko", "", "what users should know, in Korean")
	id := ""
	rest := args[1:]
	if verb == "update" {
		if len(rest) == 0 || !salamander.ValidOpsID(rest[0]) {
			return fmt.Errorf("admin: usage: incident update ID --state STATE --message TEXT")
		}
		id, rest = rest[0], rest[1:]
	}
	if err := fs.Parse(rest); err != nil {
		return flagError(err)
	}
	if fs.NArg() > 0 { // the flag package stops at the first word: flags after it would be dropped unread
		return fmt.Errorf("admin: usage: incident %s: unexpected %q (quote a text of several words)", verb, fs.Arg(0))
	}
	var rec salamander.Record
	if verb == "announce" {
		req := salamander.IncidentRequest{Title: title, Message: msg, State: *state, Impact: *impact, Services: splitList(*services)}
		if err := req.Validate(); err != nil {
			return fmt.Errorf("admin: %w", err)
		}
		id = salamander.NewOpsID("inc")
		rec = salamander.Record{Type: salamander.RecIncidentOpened, Incident: &salamander.IncidentChange{ID: id, Title: req.Title,
			State: req.State, Impact: req.Impact, Services: req.Services, Message: req.Message}}
	} else {
		req := salamander.IncidentUpdateRequest{State: *state, Message: msg, Impact: *impact, Services: splitList(*services)}
		if err := req.Validate(); err != nil {
			return fmt.Errorf("admin: %w", err)
		}
		// The log ignores an update of an unknown or resolved incident:
		// say so rather than "updated".
		_, last, found, err := store.LastRecord(ctx, jsstore.AccountsStream, "incident."+id)
		switch {
		case err != nil:
			return fmt.Errorf("admin: read incident %s: %w", id, err)
		case !found || last.Incident == nil:
			return fmt.Errorf("admin: no incident %q", id)
		case last.Incident.State == salamander.IncidentResolved:
			return fmt.Errorf("admin: incident %s is resolved; announce a new one", id)
		}
		rec = salamander.Record{Type: salamander.RecIncidentUpdated, Incident: &salamander.IncidentChange{ID: id,
			State: req.State, Impact: req.Impact, Services: req.Services, Message: req.Message}}
	}
	pos, err := adminAppend(ctx, store, "incident."+id, rec)
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	fmt.Fprintf(stdout, "incident %s: %s at every site once applied (log position %s:%d)\n", id, verb+"d", pos.Stream, pos.Seq)
	return nil
}

// adminSetPassword resets a user's password with the admin credential:
// a user.password record (by "", at "cli", in the audit trail) that every
// site applies as a new hash and the end of every session and device
// token issued before it. The password is read from a prompt with echo
// off when stdin is a terminal (twice, to catch a typo), else from the
// first line of stdin, and never from the arguments: those are seen by
// every user of the host (ps) and kept in shell histories. It is hashed
// here, at --bcrypt-cost (the sites' --bcrypt-cost, 10 by default).
func adminSetPassword(ctx context.Context, store *jsstore.Store, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("set-password", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cost := fs.Int("bcrypt-cost", bcrypt.DefaultCost, "password hashing cost, 4-31 (as the sites' serve --bcrypt-cost)")
	if err := fs.Parse(args); err != nil {
		return flagError(err)
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("admin: usage: set-password [--bcrypt-cost N] NAME (the password is read from stdin or a prompt)")
	}
	if *cost < bcrypt.MinCost || *cost > bcrypt.MaxCost {
		return fmt.Errorf("admin: --bcrypt-cost must be %d-%d", bcrypt.MinCost, bcrypt.MaxCost)
	}
	name := fs.Arg(0)
	if err := adminUserExists(ctx, store, name); err != nil {
		return err
	}
	pw, err := readNewPassword(stdin, stderr, name)
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	if err := salamander.ValidatePassword(pw); err != nil {
		return fmt.Errorf("admin: %s", salamander.ErrorMessage(err))
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(pw), *cost)
	if err != nil {
		return fmt.Errorf("admin: hash the password: %w", err)
	}
	pos, err := adminAppend(ctx, store, "pw."+name, salamander.Record{Type: salamander.RecPasswordSet, User: name,
		PasswordHash: string(hash)})
	if err != nil {
		return fmt.Errorf("admin: set the password of %s: %w", name, err)
	}
	fmt.Fprintf(stdout, "password of %s set (log position %s:%d): every site takes only the new one once it has applied this,\n"+
		"and every session of %s signed before it ends there\n", name, pos.Stream, pos.Seq, name)
	return nil
}

// readNewPassword reads a new password for name: from a prompt on stderr,
// not echoed and asked twice, when stdin is a terminal; else the first
// line of stdin (without its line ending).
func readNewPassword(stdin io.Reader, stderr io.Writer, name string) (string, error) {
	if f, ok := stdin.(*os.File); ok && isTerminal(f) {
		fmt.Fprintf(stderr, "new password for %s: ", name)
		pw, err := readHidden(f)
		fmt.Fprintln(stderr)
		if err != nil {
			return "", err
		}
		fmt.Fprint(stderr, "again: ")
		again, err := readHidden(f)
		fmt.Fprintln(stderr)
		if err != nil {
			return "", err
		}
		if pw != again {
			return "", errors.New("the two passwords differ; nothing changed")
		}
		return pw, nil
	}
	line, err := bufio.NewReader(io.LimitReader(stdin, salamander.MaxBodyBytes)).ReadString('\n')
	if err != nil && !(errors.Is(err, io.EOF) && line != "") {
		return "", fmt.Errorf("read the new password from stdin: %w", err)
	}
	return strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r"), nil
}
