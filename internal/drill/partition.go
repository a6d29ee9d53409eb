package drill

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/client"
)

// The heal window: the majority's write gap at the heal is measured over
// the sends in flight from healBefore before the heal until healAfter
// after it (or until the load stops, if that comes first).
const (
	healBefore = time.Second
	healAfter  = 15 * time.Second
)

// Probe intervals during a cut: how often the cut site's /readyz is polled
// and how often a probe write is sent to it (one at a time: a hung write
// delays the next).
const (
	readyzEvery = 100 * time.Millisecond
	probeEvery  = 200 * time.Millisecond
)

// CutStats is how the cut-off site of a partition noticed its cut, as its
// clients saw it. Times are milliseconds from the cut; -1 means it did not
// happen while the cut lasted.
type CutStats struct {
	// Cut is how the links failed: CutClose or CutSilent.
	Cut CutMode `json:"cut"`
	// CutForMS is how long the cut lasted.
	CutForMS float64 `json:"cut_for_ms"`
	// CutRefuseMS is from the cut until the site first refused a client:
	// its /readyz answered non-200 or a probe write was answered with an
	// error, whichever came first.
	CutRefuseMS float64 `json:"cut_refuse_ms"`
	// CutReadyz503MS is from the cut until /readyz (polled every 100 ms)
	// first answered non-200.
	CutReadyz503MS float64 `json:"cut_readyz_503_ms"`
	// CutWriteRefusedMS is from the cut until the first probe write was
	// answered with an error (5xx, or the connection failed).
	CutWriteRefusedMS float64 `json:"cut_write_refused_ms"`
	// CutWriteHangMSMax is the longest any probe write waited for its
	// answer (a write still waiting when the cut healed counts until then).
	CutWriteHangMSMax float64 `json:"cut_write_hang_ms_max"`
	// CutWriteProbes counts the probe writes sent to the site during the
	// cut (a user pinned to it, in a room of its own, every 200 ms one
	// after another); CutWritesAcked counts those it acknowledged, which
	// must be none: alone it holds no quorum.
	CutWriteProbes int `json:"cut_write_probes"`
	CutWritesAcked int `json:"cut_writes_acked"`
	// CutWriteErrors counts the probe writes' errors by kind.
	CutWriteErrors map[string]int `json:"cut_write_errors,omitempty"`
}

// HealStats is what the majority's clients felt when a cut healed under
// load. Times are seconds since the load started unless named _ms.
type HealStats struct {
	HealAtS float64 `json:"heal_at_s"`
	// The window the gap is measured over: from 1 s before the heal until
	// 15 s after it, or the end of the load.
	HealWindowFromS float64 `json:"heal_window_from_s"`
	HealWindowToS   float64 `json:"heal_window_to_s"`
	// HealGapMSMax is the longest any client whose preferred site is not
	// the cut one waited for an acknowledgment within the window: over the
	// sends in flight in it, from the later of the send's start and the
	// window's start to its end. A user sends one message at a time, so
	// this is the longest the user was left waiting.
	HealGapMSMax float64 `json:"heal_gap_ms_max"`
	// HealGapBaselineMSMax is the same measure over the sends that started
	// and ended in the 16 s before the cut: what a wait looks like without
	// a fault.
	HealGapBaselineMSMax float64 `json:"heal_gap_baseline_ms_max"`
	// HealSends counts the majority's sends in flight in the window,
	// HealSlowSends those that waited over a second in it.
	HealSends     int `json:"heal_sends"`
	HealSlowSends int `json:"heal_slow_sends"`
	// The slowest of them: its sender's preferred site, and when it
	// started, in seconds after the heal (negative: before).
	HealSlowestHomeSite string  `json:"heal_slowest_home_site,omitempty"`
	HealSlowestAfterS   float64 `json:"heal_slowest_started_after_s"`
}

// partition cuts one site off at FaultAt (Config.Cut says how) and watches
// how it refuses its clients. With Config.CutFor the links heal that long
// after the cut while the load runs on, and the report shows what the heal
// cost the majority's clients; the check after the load covers all three
// sites (anything the cut-off site had acknowledged without the majority
// would be missing there). Without it the cut lasts the whole load, the
// majority is checked alone, then the site is reconnected and all three
// are checked.
func (r *run) partition() error {
	probe, err := newWriteProbe(r.ctx, r.w)
	if err != nil {
		return err
	}
	defer probe.close()
	vi, err := r.victim()
	if err != nil {
		return err
	}
	victim := r.cl.Name(vi)
	// A probe write that works before the cut makes an error after it
	// mean the cut, not a room the site had not seen yet.
	if err := probe.warm(r.ctx, r.cl.URL(vi)); err != nil {
		return err
	}
	f := r.newFault(FaultCut, vi)
	cutStart := time.Now()
	if err := r.cl.cut(r.ctx, victim, r.cfg.Cut, r.cfg.CutFor); err != nil {
		return err
	}
	if r.cl.Attached() {
		// An isolation strikes when the site has taken it (see cut).
		f.at = time.Now()
		f.AtS = r.since(f.at)
		r.rep.FaultAtS = f.AtS
	}
	healed := false
	defer func() {
		if !healed {
			r.cl.heal(victim)
		}
	}()
	r.log.Info("partition", "site", victim, "cut", r.cfg.Cut)
	watch := startCutWatch(r.ctx, r.cl, vi, probe, f.at)
	heal := func() time.Time {
		now := time.Now()
		r.rep.CutStats = watch.stop(now)
		r.rep.CutStats.Cut = r.cfg.Cut
		if r.cl.Attached() {
			r.rep.CutStats.Cut = CutIsolate
		}
		r.cl.heal(victim)
		healed = true
		f.BackAtS = r.since(now)
		r.rep.ReturnAtS = f.BackAtS
		r.log.Info("reconnected", "site", victim, "refused_after_ms", int(r.rep.CutRefuseMS))
		return now
	}

	if r.cfg.CutFor <= 0 {
		if err := sleepUntil(r.ctx, r.t0.Add(r.cfg.Duration)); err != nil {
			watch.stop(time.Now())
			return err
		}
		r.stopLoad()
		r.log.Info("checking the surviving sites")
		verdict, err := checkAt(r.ctx, r.w, r.others(vi), r.recs, r.cfg.Settle)
		if err != nil {
			watch.stop(time.Now())
			return err
		}
		r.rep.MajorityCheck = &verdict
		back := heal()
		r.log.Info("checking all three sites")
		r.rep.Verdict, err = checkAt(r.ctx, r.w, allSites(r.cl), r.recs, r.cfg.Settle)
		r.rep.CatchUpMS = ms(time.Since(back))
		f.CaughtUpMS = r.rep.CatchUpMS
		return err
	}

	cutEnd := f.at.Add(r.cfg.CutFor)
	if r.cl.Attached() {
		// The site isolates itself for CutFor from the isolation record's
		// time, which lies between cutStart and f.at (when it was seen to
		// refuse): it may serve again from cutStart+CutFor on, so the
		// watch ends there rather than count a write it rightly takes
		// after its isolation as one taken while cut off.
		cutEnd = cutStart.Add(r.cfg.CutFor)
	}
	if err := sleepUntil(r.ctx, cutEnd); err != nil {
		watch.stop(time.Now())
		return err
	}
	healAt := heal()
	rctx, cancel := context.WithTimeout(r.ctx, r.cfg.Settle)
	err = r.cl.WaitReady(rctx, vi)
	if err == nil {
		f.ReadyMS = ms(time.Since(healAt))
		var at time.Time
		at, err = r.cl.WaitCaughtUp(rctx, vi, false)
		f.CaughtUpMS = ms(at.Sub(healAt))
	}
	cancel()
	if err != nil {
		return err
	}
	r.log.Info("site back under load", "site", victim, "ready_ms", int(f.ReadyMS), "caught_up_ms", int(f.CaughtUpMS))
	if err := sleepUntil(r.ctx, r.t0.Add(r.cfg.Duration)); err != nil {
		return err
	}
	end := time.Now()
	r.stopLoad()
	r.rep.HealStats = healStats(r.w, r.recs, r.t0, f.at, healAt, end, vi)
	r.log.Info("checking all three sites")
	r.rep.Verdict, err = checkAt(r.ctx, r.w, allSites(r.cl), r.recs, r.cfg.Settle)
	return err
}

// healStats measures the majority's waits for acknowledgments around the
// heal (see HealStats); end is when the load stopped.
func healStats(w *workload, recs []sendRecord, t0, cut, heal, end time.Time, cutSite int) *HealStats {
	from, to := heal.Add(-healBefore), heal.Add(healAfter)
	if end.Before(to) {
		to = end
	}
	h := &HealStats{HealAtS: heal.Sub(t0).Seconds(), HealWindowFromS: from.Sub(t0).Seconds(), HealWindowToS: to.Sub(t0).Seconds()}
	base := cut.Add(-(healBefore + healAfter))
	if base.Before(t0) {
		base = t0
	}
	for _, rec := range recs {
		home := w.users[rec.user].home
		if home == cutSite {
			continue
		}
		if !rec.start.Before(base) && rec.end.Before(cut) {
			h.HealGapBaselineMSMax = max(h.HealGapBaselineMSMax, ms(rec.end.Sub(rec.start)))
		}
		if !rec.start.Before(to) || !rec.end.After(from) {
			continue // not in flight in the window
		}
		h.HealSends++
		wait, _ := waitFrom(rec.start, rec.end, from)
		if wait > 1000 {
			h.HealSlowSends++
		}
		if wait > h.HealGapMSMax {
			h.HealGapMSMax = wait
			h.HealSlowestHomeSite = w.cl.Name(home)
			h.HealSlowestAfterS = rec.start.Sub(heal).Seconds()
		}
	}
	return h
}

// writeProbe is a user of its own with a room of its own, whose writes
// pinned to one site show when that site starts refusing them. The room is
// not one of the workload's, so the checker never looks at it.
type writeProbe struct {
	hc    *http.Client
	token string
	room  string
}

// newWriteProbe signs the probe user up and creates its room.
func newWriteProbe(ctx context.Context, w *workload) (*writeProbe, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	p := &writeProbe{hc: &http.Client{Transport: tr}}
	c, err := client.New(client.Config{Sites: w.cl.URLs(), HTTPClient: p.hc})
	if err != nil {
		return nil, fmt.Errorf("drill: write probe: %w", err)
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	name := w.prefix + "probe"
	s, err := c.SignUp(sctx, name, "Drill cut probe", fmt.Sprintf("drill-probe-pw-%s", client.NewClientID()))
	if err != nil {
		return nil, fmt.Errorf("drill: signing the write probe up: %w", err)
	}
	p.token = s.Token
	rm, err := c.CreateGroup(sctx, "drill cut probe", nil)
	if err != nil {
		return nil, fmt.Errorf("drill: creating the write probe's room: %w", err)
	}
	p.room = rm.ID
	return p, nil
}

// warm sends probe writes to site until one is acknowledged (the site may
// not have applied the probe's room yet), for up to 30 s.
func (p *writeProbe) warm(ctx context.Context, site string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var last probeResult
	err := poll(ctx, probeEvery, func() (bool, error) {
		last = p.send(ctx, site)
		return last.acked, nil
	})
	if err != nil {
		return fmt.Errorf("drill: a probe write to %s was not acknowledged before the cut (last: %s): %w", site, last.err, err)
	}
	return nil
}

// probeResult is one probe write's outcome.
type probeResult struct {
	start, end time.Time
	acked      bool
	refused    bool   // an error answer (5xx) or a failed connection
	err        string // what went wrong, if it was not acknowledged
}

// send makes one write to site over plain HTTP, without the SDK's retries
// and failover: the probe wants the site's own answer to each attempt.
func (p *writeProbe) send(ctx context.Context, site string) (res probeResult) {
	res.start = time.Now()
	defer func() { res.end = time.Now() }()
	body, _ := json.Marshal(salamander.SendRequest{ClientID: client.NewClientID(), Text: "cut probe"})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, site+"/v1/rooms/"+url.PathEscape(p.room)+"/messages", bytes.NewReader(body))
	if err != nil {
		res.err = err.Error()
		return res
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+p.token)
	resp, err := p.hc.Do(req)
	switch {
	case err != nil && ctx.Err() != nil:
		res.err = "no answer yet when the probe stopped"
		return res
	case err != nil:
		res.err, res.refused = err.Error(), true // a failed connection tells the client at once too
		return res
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	switch {
	case resp.StatusCode < 300:
		res.acked = true
	case resp.StatusCode >= 500:
		res.refused = true
		fallthrough
	default:
		res.err = fmt.Sprintf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(msg))
	}
	return res
}

func (p *writeProbe) close() { p.hc.CloseIdleConnections() }

// cutWatch polls a cut-off site's /readyz and sends it probe writes until
// stopped; it owns both goroutines.
type cutWatch struct {
	cut    time.Time
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex
	readyzBad time.Time // first non-200 /readyz answer
	probes    []probeResult
}

// startCutWatch starts watching site i, cut off at cut.
func startCutWatch(ctx context.Context, cl *Cluster, i int, probe *writeProbe, cut time.Time) *cutWatch {
	ctx, cancel := context.WithCancel(ctx)
	cw := &cutWatch{cut: cut, cancel: cancel}
	site := cl.URL(i)
	cw.wg.Go(func() {
		_ = poll(ctx, readyzEvery, func() (bool, error) {
			rctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			req, err := http.NewRequestWithContext(rctx, http.MethodGet, site+"/readyz", nil)
			if err != nil {
				return false, err
			}
			resp, err := cl.hc.Do(req)
			if err != nil {
				return false, nil // no answer is not a refusal
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				cw.mu.Lock()
				cw.readyzBad = time.Now()
				cw.mu.Unlock()
				return true, nil
			}
			return false, nil
		})
	})
	cw.wg.Go(func() {
		_ = poll(ctx, probeEvery, func() (bool, error) {
			res := probe.send(ctx, site)
			cw.mu.Lock()
			cw.probes = append(cw.probes, res)
			cw.mu.Unlock()
			return false, nil
		})
	})
	return cw
}

// stop ends the watch (a probe write still waiting is cut short and
// counts as waiting until then) and summarizes it, the cut having lasted
// until now.
func (cw *cutWatch) stop(now time.Time) *CutStats {
	cw.cancel()
	cw.wg.Wait()
	cs := &CutStats{CutForMS: ms(now.Sub(cw.cut)), CutRefuseMS: -1, CutReadyz503MS: -1, CutWriteRefusedMS: -1}
	if !cw.readyzBad.IsZero() {
		cs.CutReadyz503MS = ms(cw.readyzBad.Sub(cw.cut))
	}
	for _, p := range cw.probes {
		cs.CutWriteProbes++
		if p.acked {
			cs.CutWritesAcked++
		}
		if p.err != "" {
			if cs.CutWriteErrors == nil {
				cs.CutWriteErrors = map[string]int{}
			}
			cs.CutWriteErrors[p.err]++
		}
		if p.refused && cs.CutWriteRefusedMS < 0 {
			cs.CutWriteRefusedMS = ms(p.end.Sub(cw.cut))
		}
		cs.CutWriteHangMSMax = max(cs.CutWriteHangMSMax, ms(p.end.Sub(p.start)))
	}
	for _, t := range []float64{cs.CutReadyz503MS, cs.CutWriteRefusedMS} {
		if t >= 0 && (cs.CutRefuseMS < 0 || t < cs.CutRefuseMS) {
			cs.CutRefuseMS = t
		}
	}
	return cs
}

// text is the summary's lines on the cut.
func (cs *CutStats) text(site string) string {
	how := map[CutMode]string{CutClose: "route connections closed", CutSilent: "route bytes dropped, connections left open",
		CutIsolate: "the site told through the log to refuse its clients and pause its replicas"}[cs.Cut]
	var b strings.Builder
	fmt.Fprintf(&b, "  cut (%s: %s) lasted %s; site %s refused its clients after %s (/readyz non-200 after %s, first write refused after %s)\n",
		cs.Cut, how, sec(cs.CutForMS), site, msOrNever(cs.CutRefuseMS), msOrNever(cs.CutReadyz503MS), msOrNever(cs.CutWriteRefusedMS))
	fmt.Fprintf(&b, "    probe writes to site %s during the cut: %d, acknowledged %d, longest wait for an answer %s\n",
		site, cs.CutWriteProbes, cs.CutWritesAcked, sec(cs.CutWriteHangMSMax))
	return b.String()
}

// text is the summary's lines on the heal.
func (h *HealStats) text(site string, f *Fault) string {
	var b strings.Builder
	fmt.Fprintf(&b, "  links healed under load at %.1fs; site %s ready in %s, caught up in %s\n", h.HealAtS, site, sec(f.ReadyMS), sec(f.CaughtUpMS))
	fmt.Fprintf(&b, "  heal gap, longest wait for an ack by a client of the majority (%.1f–%.1fs, %d sends): %s (before the cut: %s); %d sends waited over 1 s",
		h.HealWindowFromS, h.HealWindowToS, h.HealSends, sec(h.HealGapMSMax), sec(h.HealGapBaselineMSMax), h.HealSlowSends)
	if h.HealSlowestHomeSite != "" {
		fmt.Fprintf(&b, "; the slowest by a client of site %s, started %+.1fs from the heal", h.HealSlowestHomeSite, h.HealSlowestAfterS)
	}
	b.WriteString("\n")
	return b.String()
}

// msOrNever formats a time in ms, -1 as "never (during the cut)".
func msOrNever(v float64) string {
	if v < 0 {
		return "never (during the cut)"
	}
	return sec(v)
}
