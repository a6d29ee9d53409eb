package drill

import (
	"bufio"
	"cmp"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
)

// What a planned restart of every site (rolling, upgrade) is checked for
// beyond the messages: that no follower is told a user went offline while
// the user stayed connected (presence), whether a site rebuilt its read
// model as it started (a new schema version), and what the sites' logs
// warned of meanwhile.

// rebuildMsg is what a site logs (internal/view) when it rebuilds its read
// model from the log as it starts: missing, corrupt or of another schema
// version.
const rebuildMsg = "rebuilding from the log"

// PresenceStats is what the users' followers were told about the users'
// presence during the scenario. Every user keeps a live subscription the
// whole time, moving to another site when its own restarts within the
// presence grace, so "offline" is always a flap.
type PresenceStats struct {
	// Followers is how many users followed another (a friend: each
	// member of a group follows the next).
	Followers int `json:"followers"`
	// Events is how many presence events they were told in all.
	Events int `json:"events"`
	// Flaps counts the "offline" events; Users the users they were about.
	Flaps int `json:"flaps"`
	Users int `json:"flapped_users"`
	// Samples are the first flaps.
	Samples []PresenceFlap `json:"samples,omitempty"`
}

// PresenceFlap is one "offline" event a follower was told.
type PresenceFlap struct {
	User     string  `json:"user"`
	Follower string  `json:"follower"`
	AtS      float64 `json:"at_s"`
	// Site is where the follower's socket was.
	Site string `json:"follower_site"`
	// OnlineAgainMS is how soon after it the follower was told "online"
	// (-1: never).
	OnlineAgainMS float64 `json:"online_again_ms"`
}

// maxFlapSamples bounds PresenceStats.Samples.
const maxFlapSamples = 10

// measurePresence counts the presence events the followers were told.
func (r *run) measurePresence() *PresenceStats {
	told := r.w.presenceTold()
	ps := &PresenceStats{Followers: r.w.followers}
	users := map[string]bool{}
	var flaps []PresenceFlap
	for follower, evs := range told {
		ps.Events += len(evs)
		for k, e := range evs {
			if e.online {
				continue
			}
			users[e.user] = true
			f := PresenceFlap{User: e.user, Follower: follower, AtS: r.since(e.at), Site: r.siteOfURL(e.site), OnlineAgainMS: -1}
			for _, n := range evs[k+1:] {
				if n.user == e.user && n.online {
					f.OnlineAgainMS = ms(n.at.Sub(e.at))
					break
				}
			}
			flaps = append(flaps, f)
		}
	}
	slices.SortFunc(flaps, func(a, b PresenceFlap) int { return cmp.Compare(a.AtS, b.AtS) })
	ps.Flaps, ps.Users = len(flaps), len(users)
	ps.Samples = flaps[:min(len(flaps), maxFlapSamples)]
	return ps
}

// siteOfURL returns the name of the site at url (url itself if none).
func (r *run) siteOfURL(url string) string {
	for i := range r.cl.N() {
		if r.cl.URL(i) == url {
			return r.cl.Name(i)
		}
	}
	return url
}

// SiteLog is what one site's salamander processes logged at warning level
// or above during the scenario (from its first restart until the check
// ended).
type SiteLog struct {
	Site     string `json:"site"`
	Warnings int    `json:"warnings"`
	Errors   int    `json:"errors"`
	// Messages are the distinct messages, most frequent first (at most
	// maxLogMessages).
	Messages []LogMessage `json:"messages,omitempty"`
}

// LogMessage is one distinct message of a site's log and how often it
// came.
type LogMessage struct {
	Level string `json:"level"`
	Msg   string `json:"msg"`
	N     int    `json:"n"`
	// Example is its first line, attributes and all (cut at 300 bytes).
	Example string `json:"example"`
}

const maxLogMessages = 8

// logMark is where each of a site's salamander logs ended at a moment:
// what they log after it is read from there.
type logMark map[string]int64

// serveLogs lists the log files site i's salamander processes write: the
// site's (embedded) or each gateway's (external).
func (c *Cluster) serveLogs(i int) []string {
	s := c.sites[i]
	if len(s.gateways) == 0 {
		return []string{s.logPath}
	}
	var out []string
	for _, g := range s.gateways {
		out = append(out, g.logPath)
	}
	return out
}

// markLogs notes how long site i's salamander logs are now.
func (c *Cluster) markLogs(i int) logMark {
	m := logMark{}
	for _, p := range c.serveLogs(i) {
		if fi, err := os.Stat(p); err == nil {
			m[p] = fi.Size()
		} else {
			m[p] = 0
		}
	}
	return m
}

// linesSince calls f with every line site i's salamander logs gained after
// mark.
func (c *Cluster) linesSince(i int, mark logMark, f func(line string)) error {
	for _, p := range c.serveLogs(i) {
		fh, err := os.Open(p)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("drill: reading site %s's log: %w", c.Name(i), err)
		}
		if _, err := fh.Seek(mark[p], io.SeekStart); err != nil {
			fh.Close()
			return fmt.Errorf("drill: reading site %s's log: %w", c.Name(i), err)
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(make([]byte, 64*1024), 1<<20)
		for sc.Scan() {
			f(sc.Text())
		}
		err = sc.Err()
		fh.Close()
		if err != nil {
			return fmt.Errorf("drill: reading site %s's log: %w", c.Name(i), err)
		}
	}
	return nil
}

// rebuiltSince says whether site i logged a rebuild of its read model
// after mark, and why (the error it gave).
func (c *Cluster) rebuiltSince(i int, mark logMark) (bool, string, error) {
	rebuilt, why := false, ""
	err := c.linesSince(i, mark, func(line string) {
		if !rebuilt && strings.Contains(line, rebuildMsg) {
			rebuilt, why = true, logAttr(line, "err")
		}
	})
	return rebuilt, why, err
}

// siteLog summarizes the warnings and errors site i logged after mark.
func (c *Cluster) siteLog(i int, mark logMark) (SiteLog, error) {
	sl := SiteLog{Site: c.Name(i)}
	byMsg := map[[2]string]*LogMessage{}
	var order []*LogMessage
	err := c.linesSince(i, mark, func(line string) {
		level := logAttr(line, "level")
		switch level {
		case "WARN":
			sl.Warnings++
		case "ERROR":
			sl.Errors++
		default:
			return
		}
		msg := logAttr(line, "msg")
		k := [2]string{level, msg}
		if m := byMsg[k]; m != nil {
			m.N++
			return
		}
		m := &LogMessage{Level: level, Msg: msg, N: 1, Example: line[:min(len(line), 300)]}
		byMsg[k] = m
		order = append(order, m)
	})
	slices.SortStableFunc(order, func(a, b *LogMessage) int { return cmp.Compare(b.N, a.N) })
	for _, m := range order[:min(len(order), maxLogMessages)] {
		sl.Messages = append(sl.Messages, *m)
	}
	return sl, err
}

// logAttr returns the value of key in a slog text line ("" if absent),
// unquoted.
func logAttr(line, key string) string {
	i := 0
	for {
		j := strings.Index(line[i:], key+"=")
		if j < 0 {
			return ""
		}
		j += i
		if j == 0 || line[j-1] == ' ' {
			v := line[j+len(key)+1:]
			if strings.HasPrefix(v, `"`) {
				if q, err := strconv.QuotedPrefix(v); err == nil {
					s, _ := strconv.Unquote(q)
					return s
				}
			}
			v, _, _ = strings.Cut(v, " ")
			return v
		}
		i = j + len(key) + 1
	}
}

// restartLine is one planned restart's line of the text report: how long
// the site took to stop, be ready and catch up, and, for an upgrade, the
// binaries before and after and what became of the read model.
func (f *Fault) restartLine(n int) string {
	var b strings.Builder
	verb := "restart"
	if f.Kind == FaultUpgrade {
		verb = "upgrade"
	}
	fmt.Fprintf(&b, "  %s %d: site %s SIGTERMed at %.1fs, stopped in %s, ready in %s, caught up (replicas current) in %s\n",
		verb, n, f.Site, f.AtS, sec(f.DownMS), sec(f.ReadyMS), sec(f.CaughtUpMS))
	if f.Kind == FaultUpgrade {
		fmt.Fprintf(&b, "    before: %s\n    after:  %s\n", f.Before, f.After)
	}
	if f.ReadModel != "" {
		fmt.Fprintf(&b, "    read model: %s\n", f.ReadModel)
	}
	return b.String()
}

// presenceText is the presence lines of the text report.
func (p *PresenceStats) text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "  presence: %d followers told %d changes; %d flaps (a user told offline while connected) about %d users\n",
		p.Followers, p.Events, p.Flaps, p.Users)
	for _, f := range p.Samples {
		again := "never told online again"
		if f.OnlineAgainMS >= 0 {
			again = "online again after " + sec(f.OnlineAgainMS)
		}
		fmt.Fprintf(&b, "    %s told %s offline at %.1fs (at site %s), %s\n", f.Follower, f.User, f.AtS, f.Site, again)
	}
	return b.String()
}

// siteLogsText is the sites' log lines of the text report.
func siteLogsText(logs []SiteLog) string {
	var b strings.Builder
	for _, l := range logs {
		fmt.Fprintf(&b, "  site %s logged %d warnings, %d errors\n", l.Site, l.Warnings, l.Errors)
		for _, m := range l.Messages {
			fmt.Fprintf(&b, "    %d × %s %q\n", m.N, m.Level, m.Msg)
		}
	}
	return b.String()
}
