package site

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
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
	for _, base := range s.cfg.NATSMonitor {
		name, always, err := varzSyncAlways(ctx, hc, strings.TrimSuffix(base, "/")+"/varz")
		switch {
		case err != nil:
			s.gw.Warn(fmt.Sprintf("external NATS: cannot read %s/varz to check its fsync setting: %v", base, err))
		case !always:
			s.gw.Warn(fmt.Sprintf("external NATS: server %s (%s) does not fsync every commit: an acknowledged message "+
				"can be lost if a quorum of servers loses power at once; set sync_interval: always", name, base))
		}
	}
}

// varzSyncAlways reads a server's name and whether JetStream fsyncs every
// write from its /varz.
func varzSyncAlways(ctx context.Context, hc *http.Client, url string) (name string, always bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", false, err
	}
	res, err := hc.Do(req)
	if err != nil {
		return "", false, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return "", false, fmt.Errorf("%s answered %s", url, res.Status)
	}
	var v struct {
		ServerName string `json:"server_name"`
		JetStream  struct {
			Config *struct {
				SyncAlways bool `json:"sync_always"`
			} `json:"config"`
		} `json:"jetstream"`
	}
	if err := json.NewDecoder(io.LimitReader(res.Body, 4<<20)).Decode(&v); err != nil {
		return "", false, fmt.Errorf("%s: %w", url, err)
	}
	if v.JetStream.Config == nil {
		return v.ServerName, false, fmt.Errorf("%s: JetStream is not enabled on %s", url, v.ServerName)
	}
	return v.ServerName, v.JetStream.Config.SyncAlways, nil
}
