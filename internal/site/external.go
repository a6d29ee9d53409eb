package site

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/salamander-chat/salamander/internal/jsstore"
	"github.com/salamander-chat/salamander/internal/natsnode"
)

// An external NATS cluster is the operators', so a site checks it before
// it serves: what breaks a promise is refused (the site raises its log
// alarm and serves nothing), what weakens one is warned about in
// GET /v1/ops/site and in the log. A client connection shows only its own
// server's name and version; the rest comes from the servers' HTTP
// monitoring (/varz), which the site reads when told where it is
// (Config.NATSMonitor).

// errExternalNATS is wrapped by what checkServers refuses.
var errExternalNATS = errors.New("external NATS cluster refused")

// checkServers checks an external cluster's servers before the site
// creates or uses any stream: their versions (refused below
// jsstore.MinServerVersion), JetStream clustering (refused without), their
// site: tags and unique_tag, and their fsync setting (warned about). It
// learns each server's site from its tag for the site's later decisions
// (placement, balancing, moving back home).
func (s *Site) checkServers(ctx context.Context) error {
	if s.node != nil {
		return nil // the embedded server is configured by this process
	}
	nc := s.store.Conn()
	for !nc.IsConnected() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	if err := jsstore.CheckVersion(nc.ConnectedServerName(), nc.ConnectedServerVersion()); err != nil {
		return fmt.Errorf("%w: %w", errExternalNATS, err)
	}
	if len(s.cfg.NATSMonitor) == 0 {
		s.gw.Warn("external NATS: cannot verify that the servers fsync every commit (sync_interval: always), " +
			"run nats-server 2.11 or later, are clustered and tagged by site; " +
			"give their monitoring URLs (--nats-monitor) to have it checked")
		return nil
	}
	hc := &http.Client{Timeout: 3 * time.Second}
	var refused []string
	read, atSite := 0, map[string]bool{}
	for _, base := range s.cfg.NATSMonitor {
		v, err := readVarz(ctx, hc, strings.TrimSuffix(base, "/")+"/varz")
		if err != nil {
			s.gw.Warn(fmt.Sprintf("external NATS: cannot read %s/varz to check the server: %v", base, err))
			continue
		}
		read++
		if v.site != "" {
			s.servers.learn(v.name, v.site)
			atSite[v.site] = true
		}
		if err := jsstore.CheckVersion(v.name, v.version); err != nil {
			refused = append(refused, err.Error())
		}
		if !v.clustered && !s.becomesClustered(ctx, hc, base) {
			refused = append(refused, fmt.Sprintf("NATS server %s (%s) does not run JetStream clustered: "+
				"a stream needs one replica per site", v.name, base))
		}
		if v.site == "" {
			s.gw.Warn(fmt.Sprintf("external NATS: server %s (%s) has no %sNAME tag: JetStream cannot place one replica "+
				"per site on it, and this site cannot tell where it is", v.name, base, natsnode.SiteTagPrefix))
		}
		if v.uniqueTag != natsnode.SiteTagPrefix {
			s.gw.Warn(fmt.Sprintf("external NATS: server %s (%s) has unique_tag %q, not %q: JetStream may place two "+
				"replicas of a new stream at one site", v.name, base, v.uniqueTag, natsnode.SiteTagPrefix))
		}
		if !v.syncAlways {
			s.gw.Warn(fmt.Sprintf("external NATS: server %s (%s) does not fsync every commit: an acknowledged message "+
				"can be lost if a quorum of servers loses power at once; set sync_interval: always", v.name, base))
		}
	}
	s.checkSites(read, atSite)
	if len(refused) > 0 {
		return fmt.Errorf("%w: %s", errExternalNATS, strings.Join(refused, "; "))
	}
	return nil
}

// checkSites warns when the servers read (read of them, at the sites
// atSite by their tags) are at fewer sites than a stream has replicas —
// with unique_tag no stream can then be placed, and creating the log's
// streams would only wait — or none of them is at this site, whose
// servers the site then cannot tell (it balances no leaders, and never
// moves its connection back home). Only warned: the list may name some
// of the cluster's servers only.
func (s *Site) checkSites(read int, atSite map[string]bool) {
	if read == 0 {
		return
	}
	if replicas := s.cfg.Replicas; len(atSite) < replicas {
		s.gw.Warn(fmt.Sprintf("external NATS: the servers of --nats-monitor are at %d sites (%s): one replica per "+
			"site needs servers at %d, tagged %sNAME; until there are, the log's streams cannot be placed",
			len(atSite), strings.Join(slices.Sorted(maps.Keys(atSite)), ", "), replicas, natsnode.SiteTagPrefix))
	}
	if !atSite[s.cfg.Site] {
		s.gw.Warn(fmt.Sprintf("external NATS: no server of --nats-monitor has this site's %s%s tag: this site "+
			"cannot tell its own servers (it balances no leaders and never moves its connection back to them); "+
			"check --site and the servers' server_tags", natsnode.SiteTagPrefix, s.cfg.Site))
	}
}

// becomesClustered re-reads a server's /varz until it shows JetStream
// clustered, for at most Config.ClusterFormWait: a server that has just
// started shows no meta group until its routes are up.
func (s *Site) becomesClustered(ctx context.Context, hc *http.Client, base string) bool {
	wait := s.cfg.ClusterFormWait
	if wait <= 0 {
		wait = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(500 * time.Millisecond):
		}
		if v, err := readVarz(ctx, hc, strings.TrimSuffix(base, "/")+"/varz"); err == nil && v.clustered {
			return true
		}
	}
}

// checkPlacement raises the log alarm when a stream of an external
// cluster has two replicas at one site: the loss of that site would lose
// a quorum's worth of copies.
func (s *Site) checkPlacement(ctx context.Context) {
	if s.node != nil || len(s.cfg.NATSMonitor) == 0 {
		return
	}
	var st []jsstore.StreamStatus
	for attempt := 0; attempt < 10 && ctx.Err() == nil; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		var err error
		st, err = s.store.Status(cctx)
		cancel()
		if err == nil {
			break
		}
		st = nil
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
	bad, unknown := placementProblems(st, s.servers.tagged())
	for _, u := range unknown {
		s.gw.Warn("external NATS: cannot check where " + u)
	}
	if len(bad) > 0 {
		s.gw.SetLogAlarm("replicas not one per site: " + strings.Join(bad, "; ") +
			" (an acknowledged message would not survive the loss of a site; set unique_tag: \"site:\" and move the replicas)")
	}
}

// placementProblems lists the streams whose replicas are not at distinct
// sites, and what could not be checked (servers not among those read).
func placementProblems(streams []jsstore.StreamStatus, siteOf map[string]string) (bad, unknown []string) {
	for _, st := range streams {
		peers := append([]string{st.Leader}, st.Replicas...)
		at := map[string]string{}
		seen := map[string]bool{}
		for _, p := range peers {
			// A stream's info taken while its leader changes can list the
			// new leader among the replicas too: one server is one replica.
			if p == "" || seen[p] {
				continue
			}
			seen[p] = true
			site, ok := siteOf[p]
			if !ok || site == "" {
				unknown = append(unknown, fmt.Sprintf("stream %s's replica on %s is (not among --nats-monitor, or no site: tag)", st.Stream, p))
				continue
			}
			if other, dup := at[site]; dup {
				bad = append(bad, fmt.Sprintf("stream %s has replicas on %s and %s, both at site %s", st.Stream, other, p, site))
			}
			at[site] = p
		}
	}
	return bad, unknown
}

// serverSites knows the site of each NATS server: from its site: tag when
// its monitoring was read, else from its name (jsstore.ServerSite).
type serverSites struct {
	mu  sync.Mutex
	tag map[string]string // server name -> site, from its tag
}

func (m *serverSites) learn(server, site string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.tag == nil {
		m.tag = map[string]string{}
	}
	m.tag[server] = site
}

// site is the site of server.
func (m *serverSites) site(server string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if site, ok := m.tag[server]; ok {
		return site
	}
	return jsstore.ServerSite(server)
}

// tagged is a copy of what the servers' tags said.
func (m *serverSites) tagged() map[string]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]string, len(m.tag))
	for k, v := range m.tag {
		out[k] = v
	}
	return out
}

// varz is what a server's /varz tells of it.
type varz struct {
	name       string
	version    string
	site       string // from its site: tag
	uniqueTag  string
	syncAlways bool
	clustered  bool // JetStream runs clustered (a meta group)
}

func readVarz(ctx context.Context, hc *http.Client, url string) (varz, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return varz{}, err
	}
	res, err := hc.Do(req)
	if err != nil {
		return varz{}, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return varz{}, fmt.Errorf("%s answered %s", url, res.Status)
	}
	var v struct {
		ServerName string   `json:"server_name"`
		Version    string   `json:"version"`
		Tags       []string `json:"tags"`
		JetStream  struct {
			Config *struct {
				SyncAlways bool   `json:"sync_always"`
				UniqueTag  string `json:"unique_tag"`
			} `json:"config"`
			Meta *struct{} `json:"meta"`
		} `json:"jetstream"`
	}
	if err := json.NewDecoder(io.LimitReader(res.Body, 4<<20)).Decode(&v); err != nil {
		return varz{}, fmt.Errorf("%s: %w", url, err)
	}
	if v.JetStream.Config == nil {
		return varz{}, fmt.Errorf("%s: JetStream is not enabled on %s", url, v.ServerName)
	}
	out := varz{name: v.ServerName, version: v.Version, syncAlways: v.JetStream.Config.SyncAlways,
		uniqueTag: v.JetStream.Config.UniqueTag, clustered: v.JetStream.Meta != nil}
	for _, t := range v.Tags {
		if site, ok := strings.CutPrefix(t, natsnode.SiteTagPrefix); ok {
			out.site = site
		}
	}
	return out, nil
}
