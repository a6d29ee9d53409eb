package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/internal/jsstore"
)

// The ops console's data: GET /v1/ops/site (this site, in technical
// detail) and GET /v1/ops/stream (every site's, pushed as Server-Sent
// Events). Both are for operators and admins only; the page that shows
// them is served by handleConsole (console_assets.go).

// siteDetail is one site's technical status, as GET /v1/ops/site answers:
// its readiness and why, its gateway processes and their users, how far
// its read model has applied the log, every stream with its leader and
// every replica's lag, the NATS server the site is connected to, its
// counters and the warnings and errors it logged lately. The public GET
// /v1/status shows none of it (publicStatus), nor does this answer to a
// caller the site could not confirm as an operator (limitedSite).
type siteDetail struct {
	readiness
	At time.Time `json:"at"`
	// Instance names the gateway process that answered; SiteGateways
	// lists every one of the site's, with the users connected to each.
	Instance       string            `json:"instance"`
	SiteGateways   []SiteGateway     `json:"site_gateways"`
	UptimeSeconds  int               `json:"uptime_seconds"`
	NotServing     string            `json:"not_serving,omitempty"`
	NATSServer     string            `json:"nats_server"`
	NATS           natsLink          `json:"nats"`
	Applied        map[string]uint64 `json:"applied"`
	EntriesApplied uint64            `json:"entries_applied"`
	WebSockets     int               `json:"websockets"`
	Warnings       []string          `json:"warnings,omitempty"`
	clusterStreams
	Counters     siteCounters `json:"counters"`
	RecentErrors []LogRecord  `json:"recent_errors"`
	Sites        []SiteInfo   `json:"sites"`
}

// clusterStreams is every stream's state as the cluster reports it now,
// as GET /v1/ops/site shows it; while the cluster elects
// a leader, a list may be partial and its error set.
type clusterStreams struct {
	Streams      []jsstore.StreamStatus `json:"streams"`
	StreamsError string                 `json:"streams_error,omitempty"`
	// Standbys are the partitions' standby streams, each naming its
	// partition (standby_of).
	Standbys      []jsstore.StreamStatus `json:"standbys"`
	StandbysError string                 `json:"standbys_error,omitempty"`
}

// streamsFresh is how long one reading of the cluster's streams answers
// every request for them.
const streamsFresh = time.Second

// streamsWait is how long after a reading of the cluster's streams began
// a request still waits for it; later ones are answered at once with the
// reading before it, saying so. A cut-off site's reading goes unanswered
// for streamsReadTimeout, and a poller of GET /v1/ops/site must not wait
// that long for what the site knows by itself.
const streamsWait = 200 * time.Millisecond

// streamsCache shares one reading of the cluster's streams among the
// requests of a second, and one reading in progress among the requests
// that wait for it. Reading them is a JetStream API request per stream,
// which every server of the cluster receives; uncached, a few consoles and
// tools polling GET /v1/ops/site would flood the API that the sites' own
// appends, merges and leader moves depend on.
type streamsCache struct {
	mu      sync.Mutex
	at      time.Time // when val was read (zero before the first reading)
	val     clusterStreams
	reading chan struct{} // closed when the reading in progress ends
	began   time.Time     // when the reading in progress began
}

// clusterStreams returns every stream's and standby's state, read at most
// streamsFresh ago, or else the reading before, with why it is not newer
// (see streamsWait). A reading runs on its own, for every request: the
// end of the one that started it does not cut it short.
func (g *Gateway) clusterStreams(ctx context.Context) clusterStreams {
	c := &g.streams
	c.mu.Lock()
	if !c.at.IsZero() && time.Since(c.at) < streamsFresh {
		v := c.val
		c.mu.Unlock()
		return v
	}
	if c.reading == nil {
		reading := make(chan struct{})
		if !g.background(func() { g.readStreams(reading) }) {
			c.mu.Unlock()
			return clusterStreams{StreamsError: "the gateway is closing", StandbysError: "the gateway is closing"}
		}
		c.reading, c.began = reading, time.Now()
	}
	reading, began := c.reading, c.began
	c.mu.Unlock()
	wait := time.NewTimer(time.Until(began.Add(streamsWait)))
	defer wait.Stop()
	select {
	case <-reading:
	case <-wait.C:
	case <-ctx.Done():
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.reading != reading {
		return c.val // it ended (or a later one did)
	}
	v := c.val
	why := fmt.Sprintf("the cluster has not answered for %s (still asking)", time.Since(began).Round(time.Millisecond))
	if !c.at.IsZero() {
		why += "; these lists were read at " + c.at.UTC().Format(time.RFC3339Nano)
	}
	v.StreamsError, v.StandbysError = joinWhy(why, v.StreamsError), joinWhy(why, v.StandbysError)
	return v
}

// joinWhy is why, followed by the error of the reading shown, if any.
func joinWhy(why, old string) string {
	if old == "" {
		return why
	}
	return why + "; then: " + old
}

// readStreams reads the cluster's streams into the cache and then closes
// reading, also if the reading panics (its waiters go on).
func (g *Gateway) readStreams(reading chan struct{}) {
	var v clusterStreams
	defer func() {
		c := &g.streams
		c.mu.Lock()
		c.val, c.at, c.reading = v, time.Now(), nil
		c.mu.Unlock()
		close(reading)
	}()
	ctx, cancel := context.WithTimeout(g.life, streamsReadTimeout)
	defer cancel()
	v = g.readClusterStreams(ctx)
}

// streamsReadTimeout bounds one reading of the cluster's streams.
const streamsReadTimeout = 5 * time.Second

// readClusterStreams asks the cluster for every stream's and standby's
// state.
func (g *Gateway) readClusterStreams(ctx context.Context) clusterStreams {
	var cs clusterStreams
	var err error
	if cs.Streams, err = g.cfg.Store.Status(ctx); err != nil {
		cs.StreamsError = err.Error()
	}
	if cs.Standbys, err = g.cfg.Store.StandbyStatus(ctx); err != nil {
		cs.StandbysError = err.Error()
	}
	return cs
}

// natsLink is the NATS server a site's log connection is on.
type natsLink struct {
	Connected bool    `json:"connected"`
	Server    string  `json:"server"`
	ServerID  string  `json:"server_id"`
	Version   string  `json:"version"`
	Cluster   string  `json:"cluster"`
	URL       string  `json:"url"`
	RTTMS     float64 `json:"rtt_ms"`
	RTTError  string  `json:"rtt_error,omitempty"`
}

// siteCounters are running totals since the process started; the console
// turns two snapshots into rates.
type siteCounters struct {
	MessagesSent    uint64 `json:"messages_sent"`
	HTTPRequests    uint64 `json:"http_requests"`
	HTTPServerError uint64 `json:"http_5xx"`
	LogAppends      uint64 `json:"log_appends"`
	LogAppendErrors uint64 `json:"log_append_errors"`
	Goroutines      int    `json:"goroutines"`
}

// opsStreamEvery is how often GET /v1/ops/stream sends an overview.
const opsStreamEvery = 2 * time.Second

// handleOpsSite answers GET /v1/ops/site (see authedDiagnostics): in
// full, or, to a caller this site could not confirm as an operator, only
// what anyone may read (limitedSite).
func (g *Gateway) handleOpsSite(w http.ResponseWriter, r *http.Request, _ claims, confirmed bool) {
	if !confirmed {
		writeJSON(w, http.StatusOK, g.limitedSite())
		return
	}
	writeJSON(w, http.StatusOK, g.siteDetail(r.Context()))
}

// limitedSite is GET /v1/ops/site's answer to a caller this site could
// not confirm as an operator: what the public GET /v1/status shows
// anyone, why the site refuses its users in the words every refused
// request is answered with, and limited, which says why there is no more.
// Nothing of the site's internals (gateways, log positions, streams, its
// NATS server, counters, warnings, errors): a session revoked or demoted
// a moment ago at another site may be the one asking.
type limitedSite struct {
	publicStatus
	At         time.Time `json:"at"`
	NotServing string    `json:"not_serving,omitempty"`
	Limited    string    `json:"limited"`
}

// limitedWhy is limitedSite's limited.
const limitedWhy = "not confirmed as an operator here: this site refuses its users and could not check your session " +
	"against the log's newest accounts records, so it shows only what GET /v1/status shows; ask another site, " +
	"or again once this one serves"

func (g *Gateway) limitedSite() limitedSite {
	l := limitedSite{publicStatus: g.publicStatus(), At: time.Now().UTC(), Limited: limitedWhy}
	if err := g.serving(); err != nil {
		l.NotServing = salamander.ErrorMessage(err)
	}
	return l
}

// siteDetail is this site's technical status. What it asks the cluster
// (its NATS server's round trip, the streams) it waits for at most
// streamsWait: the rest comes from memory.
func (g *Gateway) siteDetail(ctx context.Context) siteDetail {
	ctx, cancel := context.WithTimeout(ctx, streamsWait)
	defer cancel()
	nc := g.cfg.Store.Conn()
	d := siteDetail{
		readiness:      g.readiness(),
		At:             time.Now().UTC(),
		Instance:       g.cfg.Instance,
		SiteGateways:   g.eph.siteGateways(time.Now()),
		UptimeSeconds:  int(time.Since(g.started).Seconds()),
		NATSServer:     nc.ConnectedServerName(),
		Applied:        appliedRecords(g.cfg.View),
		EntriesApplied: g.cfg.View.EntriesApplied(),
		WebSockets:     g.hub.users(),
		Warnings:       g.Warnings(),
		RecentErrors:   g.cfg.RecentLog.Recent(),
		Sites:          g.cfg.Sites,
		NATS: natsLink{Connected: nc.IsConnected(), Server: nc.ConnectedServerName(), ServerID: nc.ConnectedServerId(),
			Version: nc.ConnectedServerVersion(), Cluster: nc.ConnectedClusterName(), URL: nc.ConnectedUrlRedacted()},
		Counters: siteCounters{
			MessagesSent:    counterTotal(g.metrics.messages, nil),
			HTTPRequests:    counterTotal(g.metrics.requests, nil),
			HTTPServerError: counterTotal(g.metrics.requests, func(l map[string]string) bool { return strings.HasPrefix(l["code"], "5") }),
			LogAppends:      counterTotal(g.metrics.appends, func(l map[string]string) bool { return l["result"] == "ok" }),
			LogAppendErrors: counterTotal(g.metrics.appends, func(l map[string]string) bool { return l["result"] == "error" }),
			Goroutines:      runtime.NumGoroutine(),
		},
	}
	d.NotServing, _ = g.notServing()
	if d.NATS.Connected {
		start := time.Now()
		if err := nc.FlushWithContext(ctx); err != nil {
			d.NATS.RTTError = err.Error()
		} else {
			d.NATS.RTTMS = float64(time.Since(start).Microseconds()) / 1000
		}
	}
	d.clusterStreams = g.clusterStreams(ctx)
	return d
}

// handleOpsStream sends, as Server-Sent Events, an "overview" at once and
// then every opsStreamEvery: every site's GET /v1/ops/site answer, asked
// in parallel with the caller's own credentials (a site that does not
// answer within 2 s is listed as unreachable, with why). It ends when the
// client goes away, when the gateway closes, and — with an "end" event
// saying why — when the caller's session or role no longer allows it.
//
// Browsers read it with fetch(), which can send the Authorization header
// (EventSource cannot).
func (g *Gateway) handleOpsStream(w http.ResponseWriter, r *http.Request, c claims) {
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // tell reverse proxies not to buffer
	w.WriteHeader(http.StatusOK)
	auth := r.Header.Get("Authorization")
	token := bearerToken(auth)
	t := time.NewTicker(opsStreamEvery)
	defer t.Stop()
	for {
		if err := g.stillOperator(r.Context(), token); err != nil {
			b, _ := json.Marshal(&salamander.Error{Code: salamander.ErrorCode(err), Message: salamander.ErrorMessage(err)})
			_, _ = fmt.Fprintf(w, "event: end\ndata: %s\n\n", b)
			_ = rc.Flush()
			return
		}
		ov := g.overview(r.Context(), auth)
		b, err := json.Marshal(ov)
		if err != nil {
			g.log.Error("ops stream: encode overview", "err", err)
			return
		}
		if _, err := fmt.Fprintf(w, "event: overview\ndata: %s\n\n", b); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-g.streamsDone:
			return
		case <-t.C:
		}
	}
}

// stillOperator checks, before each event, that the session is still
// valid and still an operator's (roles change, accounts are suspended).
func (g *Gateway) stillOperator(ctx context.Context, token string) error {
	c, err := g.authenticate(ctx, token)
	if err != nil {
		return err
	}
	if salamander.RoleRank(g.cfg.View.Role(c.User)) < salamander.RoleRank(salamander.RoleOperator) {
		return salamander.Errorf(salamander.CodeForbidden, "this needs the %s role", salamander.RoleOperator)
	}
	return nil
}

// overview is one event of GET /v1/ops/stream.
type overview struct {
	Site  string    `json:"site"` // the site that answered
	At    time.Time `json:"at"`
	Sites []opsSite `json:"sites"`
}

func (g *Gateway) overview(ctx context.Context, auth string) overview {
	return overview{Site: g.cfg.Site, At: time.Now().UTC(), Sites: g.askSites(ctx, g.probeSite(auth))}
}

// CloseStreams ends every GET /v1/ops/stream (they never go idle, so a
// server shutting down must end them); Close does it too.
func (g *Gateway) CloseStreams() {
	g.streamsOnce.Do(func() { close(g.streamsDone) })
}

// counterTotal sums the series of a counter or counter vector, those whose
// labels match when match is set.
func counterTotal(c prometheus.Collector, match func(labels map[string]string) bool) uint64 {
	ch := make(chan prometheus.Metric)
	done := make(chan struct{})
	var sum float64
	go func() {
		defer close(done)
		for m := range ch {
			var pb dto.Metric
			if m.Write(&pb) != nil || pb.Counter == nil {
				continue
			}
			if match != nil {
				labels := map[string]string{}
				for _, lp := range pb.Label {
					labels[lp.GetName()] = lp.GetValue()
				}
				if !match(labels) {
					continue
				}
			}
			sum += pb.Counter.GetValue()
		}
	}()
	c.Collect(ch)
	close(ch)
	<-done
	return uint64(sum)
}
