package site

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/salamander-chat/salamander/internal/jsstore"
	"github.com/salamander-chat/salamander/internal/natsnode"
)

// checkDurability warns when a server of an external NATS cluster does not
// fsync every commit: an acknowledged message could then be lost when a
// quorum of servers loses power at once. A client cannot see that setting;
// the servers' HTTP monitoring (/varz) shows it, so the check needs their
// monitoring URLs (Config.NATSMonitor). Without them it says it could not
// check.
func (s *Site) checkDurability(ctx context.Context) {
	if s.node != nil {
		return // the embedded server is configured by this process
	}
	if len(s.cfg.NATSMonitor) == 0 {
		s.gw.Warn("external NATS: cannot verify that the servers fsync every commit (sync_interval: always); " +
			"give their monitoring URLs (--nats-monitor) to have it checked")
		return
	}
	hc := &http.Client{Timeout: 3 * time.Second}
	siteOf := map[string]string{} // server name -> its site tag
	for _, base := range s.cfg.NATSMonitor {
		v, err := readVarz(ctx, hc, strings.TrimSuffix(base, "/")+"/varz")
		switch {
		case err != nil:
			s.gw.Warn(fmt.Sprintf("external NATS: cannot read %s/varz to check its fsync setting: %v", base, err))
			continue
		case !v.syncAlways:
			s.gw.Warn(fmt.Sprintf("external NATS: server %s (%s) does not fsync every commit: an acknowledged message "+
				"can be lost if a quorum of servers loses power at once; set sync_interval: always", v.name, base))
		}
		siteOf[v.name] = v.site
	}
	// Every stream must have one replica per site: two at one site, and
	// the loss of that site loses a quorum's worth of copies.
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
		time.Sleep(500 * time.Millisecond)
	}
	bad, unknown := placementProblems(st, siteOf)
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
		for _, p := range peers {
			if p == "" {
				continue
			}
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

// varz is what a server's /varz tells of it.
type varz struct {
	name       string
	site       string // from its site: tag
	syncAlways bool
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
		Tags       []string `json:"tags"`
		JetStream  struct {
			Config *struct {
				SyncAlways bool `json:"sync_always"`
			} `json:"config"`
		} `json:"jetstream"`
	}
	if err := json.NewDecoder(io.LimitReader(res.Body, 4<<20)).Decode(&v); err != nil {
		return varz{}, fmt.Errorf("%s: %w", url, err)
	}
	if v.JetStream.Config == nil {
		return varz{}, fmt.Errorf("%s: JetStream is not enabled on %s", url, v.ServerName)
	}
	out := varz{name: v.ServerName, syncAlways: v.JetStream.Config.SyncAlways}
	for _, t := range v.Tags {
		if site, ok := strings.CutPrefix(t, natsnode.SiteTagPrefix); ok {
			out.site = site
		}
	}
	return out, nil
}
