package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/salamander-chat/salamander/internal/backup"
	"github.com/salamander-chat/salamander/internal/jsstore"
	"github.com/salamander-chat/salamander/internal/secrets"
)

const backupUsage = `usage: salamander backup --dir DIR [--nats URL,…] [--creds admin.json]

Takes an online backup of the replicated log while the sites keep serving: a
JetStream snapshot of every stream (SAL_ACCT, SAL_P0…) and of the bucket
SAL_CLUSTER, each consistent up to the last sequence its manifest records.
DIR must not exist; it is created with mode 0700 and its files 0600. It holds
every account, password hash and message: keep it off the cluster's hosts,
encrypted at rest.
`

const restoreUsage = `usage: salamander restore --dir DIR [--nats URL,…] [--creds admin.json] [--streams LIST] [--replace LIST] [--other-cluster]

Restores streams from a backup, with their sequences, records and
configuration. NO SITE MAY SERVE MEANWHILE: with an external NATS cluster,
stop every 'serve' process; with NATS embedded in 'serve', take every site
out of the load balancer instead (stopping 'serve' would stop its NATS
server). Then restart the sites one by one with their view.db deleted (see
README, Backups). Records acknowledged after the backup was taken are lost.

By default it restores every stream of the backup that is absent from the
cluster (or exists but was never written: a purged stream keeps its sequence)
and leaves the others alone; it refuses if a stream holding records was
created after the backup (a cluster set up afresh writes its bucket and
accounts at once: name them with --replace). --streams restores only the
named ones (p0 or SAL_P0, acct, SAL_CLUSTER) and refuses if one of them holds
records. --replace deletes the named streams and restores them although they
hold records (those are lost). A standby (s3) is restored without its
partition (p3) only if the backup's holds every record the partition's merges
place. A backup whose files do not match its manifest is refused before
anything is touched, and so is one the cluster would refuse: a nats-server
older than the backup's, or settings the cluster refuses (each stream is
created under a scratch name with them first, and deleted). A backup is
restored into another cluster than the one it was taken from (their
SAL_CLUSTER ids differ) only if every stream of it that holds records is
replaced (a cluster set up afresh: --replace acct,SAL_CLUSTER), or with
--other-cluster: its records kept beside the backup's would not match them.
`

func runBackup(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("backup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, backupUsage); fs.PrintDefaults() }
	dir := fs.String("dir", "", "directory to create for the backup (required; must not exist)")
	c := addConnFlags(fs, 30*time.Minute)
	if err := fs.Parse(args); err != nil {
		return flagError(err)
	}
	if *dir == "" || fs.NArg() > 0 {
		fs.Usage()
		return errors.New("backup: --dir is required")
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	store, err := c.open(ctx, "salamander-backup")
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer store.Close()
	m, err := backup.Backup(ctx, store.Conn(), *dir, warnings(stderr))
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "backed up %d streams (%d partitions) to %s at %s\n",
		len(m.Streams), m.Partitions, *dir, m.Created.Format(time.RFC3339))
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STREAM\tLAST SEQ\tRECORDS\tBYTES")
	for _, s := range m.Streams {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\n", s.Name, s.LastSeq, s.Records, s.Bytes)
	}
	return tw.Flush()
}

func runRestore(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("restore", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, restoreUsage); fs.PrintDefaults() }
	dir := fs.String("dir", "", "the backup's directory (required)")
	streams := fs.String("streams", "", "comma-separated streams to restore (default: every one that is absent)")
	replace := fs.String("replace", "", "comma-separated streams to delete and restore although they hold records (those are lost)")
	otherCluster := fs.Bool("other-cluster", false, "restore into a cluster other than the backup's although it keeps records of its own")
	c := addConnFlags(fs, 30*time.Minute)
	if err := fs.Parse(args); err != nil {
		return flagError(err)
	}
	if *dir == "" || fs.NArg() > 0 {
		fs.Usage()
		return errors.New("restore: --dir is required")
	}
	fmt.Fprintln(stdout, "restore: every site's gateway must be stopped; start them again when this is done")
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	store, err := c.open(ctx, "salamander-restore")
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer store.Close()
	out, err := backup.Restore(ctx, store.Conn(), *dir, backup.RestoreOptions{Streams: splitList(*streams),
		Replace: splitList(*replace), OtherCluster: *otherCluster, Logger: warnings(stderr), MergedTo: func(ctx context.Context, partition string) (uint64, error) {
			_, last, err := store.LastMerge(ctx, strings.ToLower(strings.TrimPrefix(partition, "SAL_")))
			return last.To, err
		}})
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	if len(out) > 0 {
		fmt.Fprintln(tw, "STREAM\tLAST SEQ\tRECORDS\t")
	}
	for _, o := range out {
		what := "restored"
		switch {
		case o.Kept:
			what = "present: left alone"
		case o.Replaced && o.ReplacedRecords == 0:
			what = "restored (replaced an empty stream)"
		case o.Replaced:
			what = fmt.Sprintf("restored (replaced a stream of %d records)", o.ReplacedRecords)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\n", o.Stream, o.LastSeq, o.Records, what)
	}
	if ferr := tw.Flush(); err == nil {
		err = ferr
	}
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, "restore: done; records acknowledged after the backup are lost. Start the sites' gateways.")
	return nil
}

// connFlags are the flags with which admin, backup and restore reach the
// cluster as its operator.
type connFlags struct {
	urls, creds *string
	timeout     time.Duration
}

func addConnFlags(fs *flag.FlagSet, timeout time.Duration) *connFlags {
	c := &connFlags{
		urls: fs.String("nats", "nats://127.0.0.1:4221,nats://127.0.0.1:4222,nats://127.0.0.1:4223",
			"comma-separated NATS URLs of any sites (the dev cluster's by default)"),
		creds: fs.String("creds", filepath.Join("salamander-data", "secrets", "admin.json"),
			"the admin credential (admin.json from salamander certs; the dev cluster's by default)"),
	}
	fs.DurationVar(&c.timeout, "timeout", timeout, "give up after this long")
	return c
}

// open connects with the admin credential and waits until connected, so
// that a refused credential or an unreachable cluster is reported as such.
// It creates nothing in the cluster.
func (c *connFlags) open(ctx context.Context, name string) (*jsstore.Store, error) {
	store, _, err := c.openAdmin(ctx, name)
	return store, err
}

// openAdmin is open that also returns the admin credential (it carries
// the log key that seals signing keys).
func (c *connFlags) openAdmin(ctx context.Context, name string) (*jsstore.Store, *secrets.Admin, error) {
	cfg, admin, err := jsstore.AdminConfig(*c.creds, name, splitList(*c.urls)...)
	if err != nil {
		return nil, nil, err
	}
	store, err := jsstore.Open(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !store.Conn().IsConnected() {
		select {
		case <-cctx.Done():
			err := store.Conn().LastError()
			store.Close()
			return nil, nil, fmt.Errorf("connect to %s: %v", *c.urls, err)
		case <-tick.C:
		}
	}
	return store, admin, nil
}

// warnings is a logger of warnings and errors to w: what a backup or a
// restore says along the way that the operator must see (a site that does
// not answer and is asked again, a restored stream not serving yet); the
// progress is in the summary it prints.
func warnings(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
}
