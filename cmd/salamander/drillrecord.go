package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/internal/drill"
	"github.com/salamander-chat/salamander/internal/gateway"
	"github.com/salamander-chat/salamander/internal/jsstore"
)

// drillRecorder keeps a `salamander drill` run in a cluster's replicated
// log, for the regulator's yearly count: its start, its fault (which,
// for a cluster the drill attached to, is how the site is told to
// isolate itself) and its end with the report. It writes with the admin
// credential, so the records are the cluster's own, shown by every
// site's console.
type drillRecorder struct {
	store *jsstore.Store
	id    string
	drill salamander.Drill
	sites []string // every site's name, for a drill that cuts one off
}

// drillKind is how regulators count a drill: one that takes a site down
// and brings service back is a recovery drill, one that cuts a site off
// or only loads the cluster a simulation.
func drillKind(scenarios []string) string {
	for _, s := range scenarios {
		if s == drill.ScenarioFire || s == drill.ScenarioReturn || s == drill.ScenarioFireMerge || s == drill.ScenarioRolling ||
			s == drill.ScenarioUpgrade {
			return salamander.DrillRecovery
		}
	}
	return salamander.DrillSimulation
}

// startDrillRecord opens the log with conn's admin credential and records
// the drill's start, after the same checks as a console drill's: no other
// drill running, and a drill that cuts a site off leaves a majority of the
// sites serving with the drained ones.
func startDrillRecord(ctx context.Context, conn *connFlags, cfg drill.Config) (*drillRecorder, error) {
	store, err := conn.open(ctx, "salamander-drill")
	if err != nil {
		return nil, fmt.Errorf("drill: --record: %w", err)
	}
	scenarios := strings.Split(cfg.Scenario, ",")
	cuts := slices.Contains(scenarios, drill.ScenarioPartition) && len(cfg.Sites) > 0
	sites, err := checkDrillMayStart(ctx, store, cfg.Site, cuts)
	if err != nil {
		store.Close()
		return nil, err
	}
	r := &drillRecorder{store: store, id: salamander.NewOpsID("drl"), sites: sites}
	r.drill = salamander.Drill{ID: r.id, Scenario: cfg.Scenario, Kind: drillKind(scenarios), Site: cfg.Site,
		State: salamander.DrillRunning}
	if cuts {
		r.drill.Seconds = int(cfg.CutFor.Round(time.Second) / time.Second)
	}
	if err := r.append(ctx, salamander.RecDrillStarted, &r.drill, "start"); err != nil {
		store.Close()
		return nil, err
	}
	return r, nil
}

func (r *drillRecorder) append(ctx context.Context, typ salamander.RecordType, d *salamander.Drill, step string) error {
	rec := salamander.Record{Type: typ, Drill: d, Site: "cli", At: time.Now().UTC()}
	if typ == salamander.RecDrillStarted {
		rec.Members = r.sites // the log's own majority check
	}
	_, _, err := r.store.Append(ctx, jsstore.AccountsStream, "drill."+r.id, rec,
		jsstore.AppendOptions{MsgID: "drill-" + step + ":" + r.id})
	if err != nil {
		return fmt.Errorf("drill: recording the drill's %s: %w", step, err)
	}
	return nil
}

// Isolate tells site, through the log, to isolate itself for d: the
// drill's fault on a cluster it attached to.
func (r *drillRecorder) Isolate(ctx context.Context, site string, d time.Duration) error {
	return r.append(ctx, salamander.RecDrillFault, &salamander.Drill{ID: r.id, Site: site,
		Seconds: int(d.Round(time.Second) / time.Second)}, "fault")
}

// end records how the drill went (failed when runErr is set) and closes
// the log.
func (r *drillRecorder) end(ctx context.Context, suite *drill.Suite, runErr error) error {
	defer r.store.Close()
	end := &salamander.Drill{ID: r.id, State: salamander.DrillFailed}
	if runErr != nil {
		end.Summary = "the drill could not run: " + runErr.Error()
	} else {
		if suite.OK {
			end.State = salamander.DrillPassed
		}
		end.Summary = fmt.Sprintf("%s: %d messages acknowledged, %d lost, %d duplicated, %d reordered; converged: %v",
			suite.Scenario, suite.Acked, suite.Lost, suite.Duplicated, suite.Reordered, suite.Converged)
		if len(suite.Failures) > 0 {
			end.Summary += "; failures: " + strings.Join(suite.Failures, "; ")
		}
		var buf bytes.Buffer
		if suite.WriteJSON(&buf) == nil && buf.Len() <= salamander.MaxDrillReportBytes {
			end.Report = bytes.TrimSpace(buf.Bytes())
		}
	}
	return r.append(ctx, salamander.RecDrillEnded, end, "end")
}

// runningDrillsInLog lists the drills the log holds as running (started,
// no end recorded, not abandoned: salamander.Drill.Live), for a tool
// without a read model; Started is their newest record's time.
func runningDrillsInLog(ctx context.Context, store *jsstore.Store) ([]salamander.Drill, error) {
	recs, err := store.LastRecords(ctx, jsstore.AccountsStream, "drill.")
	if err != nil {
		return nil, fmt.Errorf("read the drills: %w", err)
	}
	var out []salamander.Drill
	now := time.Now()
	for _, rec := range recs {
		if rec.Drill == nil || (rec.Type != salamander.RecDrillStarted && rec.Type != salamander.RecDrillFault) {
			continue
		}
		// Only the newest record is read: a fault's time stands for the
		// start (at most the drill's --fault-at later than the sites'
		// reckoning), and its isolation counts as the sites count it.
		d := salamander.Drill{ID: rec.Drill.ID, Site: rec.Drill.Site, Started: rec.At, State: salamander.DrillRunning}
		if rec.Type == salamander.RecDrillFault {
			d.FaultAt, d.Seconds = rec.At, rec.Drill.Seconds
		}
		if d.Live(now) {
			out = append(out, d)
		}
	}
	slices.SortFunc(out, func(a, b salamander.Drill) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// refuseWhileDrillRuns refuses what (a drain, another drill) while the log
// holds a drill as running, as the ops API does (gateway.DrillRunningError).
func refuseWhileDrillRuns(ctx context.Context, store *jsstore.Store, what string) error {
	running, err := runningDrillsInLog(ctx, store)
	if err != nil {
		return err
	}
	if len(running) > 0 {
		return errors.New(salamander.ErrorMessage(gateway.DrillRunningError(running[0], what)))
	}
	return nil
}

// checkDrillMayStart refuses a drill while another runs, and one that
// cuts site off (cuts: any site, when site is "") unless that leaves a
// majority of the sites serving with those drained: the console's rules
// (gateway.handleStartDrill), on the log as its leader holds it.
// For a drill that cuts a site off it returns every site's name, for the
// log's own majority check (the record's Members).
func checkDrillMayStart(ctx context.Context, store *jsstore.Store, site string, cuts bool) (sites []string, err error) {
	if err := refuseWhileDrillRuns(ctx, store, "start another"); err != nil {
		return nil, fmt.Errorf("drill: %w", err)
	}
	if !cuts {
		return nil, nil
	}
	sites, drained, err := drainState(ctx, store)
	if err != nil {
		return nil, fmt.Errorf("drill: read the sites' drains: %w", err)
	}
	if site != "" && slices.Contains(drained, site) {
		return nil, fmt.Errorf("drill: site %s is drained", site)
	}
	if !salamander.OneMoreOutLeavesMajority(len(drained), len(sites)) {
		return nil, fmt.Errorf("drill: cutting a site off while %v is drained would leave less than a majority of the %d sites serving; undrain first",
			drained, len(sites))
	}
	return sites, nil
}
