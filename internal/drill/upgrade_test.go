package drill

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestUpgradeDrill runs the upgrade scenario on real `salamander serve`
// processes: the sites start on one binary and are restarted in turn, under
// the checked load, on another. In CI the two are the same build, copied to
// two paths (a real upgrade, from the last release, is run by hand: see
// BENCHMARKS.md); the test tells them apart by path, and checks that after
// the drill every site's process runs the new path, that the report names
// both binaries per site with their stop, ready and catch-up times, that
// the read model was kept (same schema), that no follower was told a user
// went offline (runDrill fails a report with a presence flap), and what
// the sites logged.
func TestUpgradeDrill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three server processes and upgrades each under a 16 s load")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	dir := t.TempDir()
	oldBin, newBin := filepath.Join(dir, "salamander-old"), filepath.Join(dir, "salamander-new")
	for _, p := range []string{oldBin, newBin} {
		copyFile(t, binary, p)
	}
	cl, err := StartCluster(ctx, ClusterConfig{Binary: oldBin, Dir: dir, Logger: log, Partitions: 3})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)

	cfg := DefaultConfig()
	cfg.Scenario = ScenarioUpgrade
	cfg.Binary, cfg.UpgradeBinary = oldBin, newBin
	cfg.Users = 20
	cfg.Duration = 16 * time.Second
	cfg.FaultAt = 4 * time.Second
	cfg.Pause = time.Second
	cfg.Settle = 45 * time.Second
	cfg.Partitions = 3
	cfg.Logger = log
	rep := runDrill(ctx, t, cl, cfg)

	if len(rep.Faults) != 3 {
		t.Fatalf("faults: %+v, want an upgrade of each site", rep.Faults)
	}
	for i, f := range rep.Faults {
		if f.Kind != FaultUpgrade || f.Site != cl.Name(i) || f.Before == nil || f.After == nil {
			t.Fatalf("upgrade %d: %+v", i+1, f)
		}
		if f.Before.Path != oldBin || f.After.Path != newBin || !strings.HasPrefix(f.Before.Version, "salamander ") ||
			f.Before.SHA256 == "" || f.Before.SHA256 != f.After.SHA256 || f.Before.GoVersion != runtime.Version() {
			t.Errorf("upgrade %d: before %+v, after %+v; want %s then %s, one build", i+1, f.Before, f.After, oldBin, newBin)
		}
		if f.DownMS <= 0 || f.ReadyMS <= 0 || f.CaughtUpMS < f.ReadyMS || f.ReadModel != "kept" {
			t.Errorf("upgrade %d not measured: stopped %.0f ms, ready %.0f ms, caught up %.0f ms, read model %q",
				i+1, f.DownMS, f.ReadyMS, f.CaughtUpMS, f.ReadModel)
		}
		if cl.Binary(i) != newBin {
			t.Errorf("site %s starts %s next, want %s", cl.Name(i), cl.Binary(i), newBin)
		}
		for _, p := range cl.Processes(i) {
			exe, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(p.PID), "exe"))
			if err != nil {
				continue // no /proc here
			}
			if exe != newBin {
				t.Errorf("site %s runs %s, want %s", cl.Name(i), exe, newBin)
			}
		}
	}
	if p := rep.Presence; p == nil || p.Followers == 0 || p.Asked == 0 {
		t.Errorf("presence not watched: %+v", p)
	}
	if len(rep.SiteLogs) != 3 {
		t.Errorf("site logs: %+v, want one per site", rep.SiteLogs)
	}
	var text strings.Builder
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"upgrade 3: site c SIGTERMed", "before: " + oldBin, "after:  " + newBin, "read model: kept", "presence: "} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("the text report lacks %q", want)
		}
	}
	checkJSONKeys(t, rep, "presence", "site_logs")
}

// The drill finds a site's read-model rebuild, and the warnings and errors
// of a scenario, in what the site's processes logged after a mark, and
// nothing from before it.
func TestSiteLogSinceMark(t *testing.T) {
	dir := t.TempDir()
	c := &Cluster{sites: []*siteProc{{name: "a", logPath: filepath.Join(dir, "a.log")}}}
	before := `time=2026-12-02T10:00:00Z level=ERROR msg="an error before the mark" system=site` + "\n" +
		`time=2026-12-02T10:00:00Z level=WARN msg="read model unusable; rebuilding from the log" system=view err="view: schema version 1, want 2"` + "\n"
	if err := os.WriteFile(c.sites[0].logPath, []byte(before), 0o600); err != nil {
		t.Fatal(err)
	}
	mark := c.markLogs(0)
	if rebuilt, _, err := c.rebuiltSince(0, mark); err != nil || rebuilt {
		t.Fatalf("a rebuild before the mark counted: %v %v", rebuilt, err)
	}
	f, err := os.OpenFile(c.sites[0].logPath, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.WriteString(f, `time=2026-12-02T10:00:01Z level=INFO msg=started system=site`+"\n"+
		`time=2026-12-02T10:00:01Z level=WARN msg="read model unusable; rebuilding from the log" system=view path=/x err="view: schema version 23, want 24"`+"\n"+
		`time=2026-12-02T10:00:02Z level=WARN msg=slow system=gateway`+"\n"+
		`time=2026-12-02T10:00:03Z level=WARN msg=slow system=gateway`+"\n"+
		`time=2026-12-02T10:00:04Z level=ERROR msg="cannot read" err=EOF`+"\n")
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	rebuilt, why, err := c.rebuiltSince(0, mark)
	if err != nil || !rebuilt || why != "view: schema version 23, want 24" {
		t.Errorf("rebuilt %v, why %q, %v", rebuilt, why, err)
	}
	sl, err := c.siteLog(0, mark)
	if err != nil {
		t.Fatal(err)
	}
	if sl.Warnings != 3 || sl.Errors != 1 || len(sl.Messages) != 3 || sl.Messages[0].Msg != "slow" || sl.Messages[0].N != 2 ||
		sl.Messages[2].Level != "ERROR" || sl.Messages[2].Msg != "cannot read" {
		t.Errorf("site log: %+v", sl)
	}
}

// copyFile copies the executable from to a new file to.
func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o755); err != nil {
		t.Fatal(err)
	}
}

// An "offline" a follower was told while every user stayed connected is a
// flap: counted, dated, with how soon "online" followed, and it fails the
// drill; "online" alone is not.
func TestPresenceFlapFailsTheDrill(t *testing.T) {
	t0 := time.Now()
	cl := &Cluster{sites: []*siteProc{{name: "a", url: "http://a"}, {name: "b", url: "http://b"}}}
	w := &workload{cl: cl, followers: 2, users: []*user{
		{name: "u0", told: []presenceEvent{{user: "u1", online: true, at: t0.Add(time.Second), site: "http://a"}}},
		{name: "u1", told: []presenceEvent{
			{user: "u0", online: false, at: t0.Add(5 * time.Second), site: "http://b"},
			{user: "u0", online: true, at: t0.Add(5*time.Second + 1500*time.Millisecond), site: "http://b"},
		}},
	}}
	r := &run{cl: cl, w: w, t0: t0, rep: &Report{Verdict: Verdict{Acked: 1, Converged: true}}}
	p := &PresenceStats{}
	r.measurePresence(p)
	if p.Followers != 2 || p.Events != 3 || p.Flaps != 1 || p.Users != 1 || len(p.Samples) != 1 {
		t.Fatalf("presence: %+v", p)
	}
	if f := p.Samples[0]; f.User != "u0" || f.Follower != "u1" || f.AtS != 5 || f.Site != "b" || f.OnlineAgainMS != 1500 {
		t.Errorf("flap: %+v", f)
	}
	r.rep.Presence = p
	r.rep.judge()
	if r.rep.OK || !strings.Contains(strings.Join(r.rep.Failures, ";"), "presence flapped") {
		t.Errorf("a flap passed: %v", r.rep.Failures)
	}
	// So is a serving site's answer that a connected user is offline.
	r.rep = &Report{Verdict: Verdict{Acked: 1, Converged: true}, Presence: &PresenceStats{Asked: 10, OfflineAnswers: 1, OfflineAnswerUsers: 1}}
	r.rep.judge()
	if r.rep.OK || !strings.Contains(strings.Join(r.rep.Failures, ";"), "answered that a connected user was offline") {
		t.Errorf("an offline answer passed: %v", r.rep.Failures)
	}
}
