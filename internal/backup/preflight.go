package backup

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
)

// What can refuse a restore is asked before anything is deleted or
// restored: a stream that --replace deletes is gone if its restore is then
// refused. The JetStream API has no dry run of a restore, and a restore
// request for a stream that exists is refused, so the refusals are asked
// one by one:
//
//   - the server's version, which reads snapshots of its own version and
//     older ones only (a newer one may use a layout it does not know):
//     compared with every server the restore learns of;
//   - the stream's configuration (fields this server does not know, an API
//     level above its own, more replicas than it has servers, placement it
//     cannot meet, limits it refuses): a stream is created with it under a
//     scratch name and subject, and deleted again — the same check the
//     server makes of a restore request's configuration.
//
// What only the upload itself can find (bytes that changed since they were
// checked, a record the server refuses, a store that fills up) is not
// known before; a replaced stream whose upload fails is then absent, and
// restoreStream says so and what to do.

// ErrServerTooOld is returned (wrapped) when a nats-server of the cluster is
// older than the one the backup was taken from.
var ErrServerTooOld = errors.New("backup: the cluster's nats-server is older than the backup's")

// ErrRefused is returned (wrapped) when the cluster refuses a stream's
// configuration from the backup; nothing has been deleted or restored.
var ErrRefused = errors.New("backup: the cluster refuses the backup's stream configuration")

// serverVersion is a nats-server version, major.minor.patch.
type serverVersion [3]int

// parseServerVersion reads "2.15.2" (a "v" before it, and a pre-release
// or build after "-" or "+", are ignored).
func parseServerVersion(s string) (serverVersion, bool) {
	s = strings.TrimPrefix(s, "v")
	if i := strings.IndexAny(s, "-+"); i >= 0 {
		s = s[:i]
	}
	parts := strings.Split(s, ".")
	var v serverVersion
	if len(parts) != 3 {
		return v, false
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return v, false
		}
		v[i] = n
	}
	return v, true
}

func (v serverVersion) less(w serverVersion) bool {
	for i := range v {
		if v[i] != w[i] {
			return v[i] < w[i]
		}
	}
	return false
}

// checkServerVersions refuses servers (name → version) older than the
// backup's; a version it cannot read is warned of and passed over.
func checkServerVersions(backup string, servers map[string]string, log *slog.Logger) error {
	want, ok := parseServerVersion(backup)
	if !ok {
		log.Warn("the backup does not say which nats-server it was taken from; its version is not checked", "server_version", backup)
		return nil
	}
	names := make([]string, 0, len(servers))
	for name := range servers {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		got, ok := parseServerVersion(servers[name])
		if !ok {
			log.Warn("a nats-server's version is unknown; not checked", "server", name, "version", servers[name])
			continue
		}
		if got.less(want) {
			return fmt.Errorf("%w: the backup was taken from nats-server %s and %s runs %s; a snapshot can be "+
				"restored only into the same or a later version: upgrade every server of the cluster first (nothing "+
				"was deleted or restored)", ErrServerTooOld, backup, name, servers[name])
		}
	}
	return nil
}

// trialCreate creates a stream with s's configuration under a scratch name
// and subject, and deletes it again: the server checks the configuration
// as it checks a restore request's.
func trialCreate(ctx context.Context, nc *nats.Conn, s Stream, log *slog.Logger) error {
	var cfg map[string]any
	if err := json.Unmarshal(s.Config, &cfg); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrCorrupt, s.Name, err)
	}
	id := make([]byte, 6)
	rand.Read(id)
	scratch := "SAL_RESTORE_CHECK_" + strings.ToUpper(hex.EncodeToString(id))
	cfg["name"] = scratch
	cfg["subjects"] = []string{"sal-restore-check." + hex.EncodeToString(id) + ".>"}
	// Republishing names the stream's own subjects; it is the one setting
	// not tried (the server that took the backup accepted it).
	delete(cfg, "republish")
	b, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	msg := nats.NewMsg(apiCreate + scratch)
	msg.Data = b
	setRequiredLevel(msg, s)
	var created createResponse
	if err := requestMsg(ctx, nc, msg, apiTimeout, &created); err != nil {
		return fmt.Errorf("try %s's configuration: %w", s.Name, err)
	}
	if created.Error != nil {
		return fmt.Errorf("%w: %s: %v (nothing was deleted or restored)", ErrRefused, s.Name, created.Error)
	}
	var deleted struct {
		Error   *apiError `json:"error,omitempty"`
		Success bool      `json:"success"`
	}
	err = requestRaw(ctx, nc, apiDelete+scratch, nil, apiTimeout, &deleted)
	if err == nil && deleted.Error != nil {
		err = deleted.Error
	}
	if err != nil {
		// Harmless but for the space it reserves: say so.
		log.Warn("a stream made to try a configuration was not deleted; delete it by hand", "stream", scratch, "err", err)
	}
	return nil
}

// setRequiredLevel asks the server to refuse msg if its JetStream API level
// is below the one the stream's configuration needs (nats-server 2.11 on
// records it in the configuration's metadata, _nats.req.level).
func setRequiredLevel(msg *nats.Msg, s Stream) {
	var cfg struct {
		Metadata map[string]string `json:"metadata"`
	}
	if json.Unmarshal(s.Config, &cfg) != nil {
		return
	}
	if l := cfg.Metadata["_nats.req.level"]; l != "" && l != "0" {
		msg.Header.Set("Nats-Required-Api-Level", l)
	}
}
