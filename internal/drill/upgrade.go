package drill

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/client"
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
	// Asked counts the users whose presence the drill asked a serving
	// site (GET /v1/presence, as a client does after each ready) from the
	// first restart until the load stopped: every second, at every site
	// but one being restarted (until it is ready again), each group's
	// first member about the others. AskErrors counts the questions that
	// got no answer.
	Asked     int `json:"asked"`
	AskErrors int `json:"ask_errors"`
	// OfflineAnswers counts the answers that a connected user was
	// offline, OfflineAnswerUsers the users they were about; AnswerSamples
	// shows the first.
	OfflineAnswers     int              `json:"offline_answers"`
	OfflineAnswerUsers int              `json:"offline_answer_users"`
	AnswerSamples      []PresenceAnswer `json:"offline_answer_samples,omitempty"`
	// OfflineBySite counts them by the site that answered and the
	// second of the load: "b@17" is site b in the 18th second.
	OfflineBySite map[string]int `json:"offline_answers_by_site_second,omitempty"`
}

// PresenceAnswer is one answer of a serving site that a connected user was
// offline.
type PresenceAnswer struct {
	Site string  `json:"site"`
	User string  `json:"user"`
	AtS  float64 `json:"at_s"`
	// SinceReadyMS is how long the site had been ready again after its
	// restart (-1: it was not restarted yet).
	SinceReadyMS float64 `json:"since_ready_ms"`
}

// presencePoller asks every serving site, every second, whether each
// group's members are online (see PresenceStats.Asked). rolling marks a
// site not serving from just before its SIGTERM until it is ready again.
type presencePoller struct {
	r       *run
	serving []atomic.Bool
	readyAt []atomic.Int64 // Unix nanoseconds the site was last ready again (0: not restarted)
	stop    chan struct{}
	done    chan struct{}

	// Owned by the poller's goroutine until done is closed.
	asked, errs int
	offline     []PresenceAnswer
	clients     map[[2]int]*client.Client // (user, site) -> pinned client
}

// startPresencePoller starts asking; stopInto ends it.
func (r *run) startPresencePoller() *presencePoller {
	p := &presencePoller{r: r, serving: make([]atomic.Bool, r.cl.N()), readyAt: make([]atomic.Int64, r.cl.N()),
		stop: make(chan struct{}), done: make(chan struct{}), clients: map[[2]int]*client.Client{}}
	for i := range p.serving {
		p.serving[i].Store(true)
	}
	go func() {
		defer close(p.done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-r.ctx.Done():
				return
			case <-t.C:
			}
			for i := range p.serving {
				if p.serving[i].Load() {
					p.ask(i)
				}
			}
		}
	}()
	return p
}

// down and up mark site i not serving (it is about to stop) and serving
// again (it is ready).
func (p *presencePoller) down(i int) { p.serving[i].Store(false) }
func (p *presencePoller) up(i int) {
	p.readyAt[i].Store(time.Now().UnixNano())
	p.serving[i].Store(true)
}

// ask asks site i, for each group, whether its members are online.
func (p *presencePoller) ask(i int) {
	for _, rm := range p.r.w.rooms {
		if rm.kind != salamander.RoomGroup {
			continue
		}
		asker := rm.members[0]
		c := p.clients[[2]int{asker.idx, i}]
		if c == nil {
			var err error
			if c, err = p.r.w.pinned(asker, i); err != nil {
				p.errs++
				continue
			}
			p.clients[[2]int{asker.idx, i}] = c
		}
		var names []string
		for _, m := range rm.members[1:] {
			names = append(names, m.name)
		}
		ctx, cancel := context.WithTimeout(p.r.ctx, 2*time.Second)
		answers, err := c.Presence(ctx, names...)
		cancel()
		// The site may have stopped meanwhile: only a serving site's
		// answer counts.
		if !p.serving[i].Load() {
			return
		}
		if err != nil {
			p.errs++
			continue
		}
		now := time.Now()
		for _, a := range answers {
			p.asked++
			if a.Online || a.Hidden {
				continue
			}
			since := -1.0
			if at := p.readyAt[i].Load(); at != 0 {
				since = ms(now.Sub(time.Unix(0, at)))
			}
			p.offline = append(p.offline, PresenceAnswer{Site: p.r.cl.Name(i), User: a.User, AtS: p.r.since(now), SinceReadyMS: since})
		}
	}
}

// stopInto stops the poller, waits for it and puts what it found in ps.
func (p *presencePoller) stopInto(ps *PresenceStats) {
	close(p.stop)
	<-p.done
	ps.Asked, ps.AskErrors, ps.OfflineAnswers = p.asked, p.errs, len(p.offline)
	users := map[string]bool{}
	for _, a := range p.offline {
		users[a.User] = true
	}
	ps.OfflineAnswerUsers = len(users)
	ps.AnswerSamples = p.offline[:min(len(p.offline), maxFlapSamples)]
	for _, a := range p.offline {
		if ps.OfflineBySite == nil {
			ps.OfflineBySite = map[string]int{}
		}
		ps.OfflineBySite[fmt.Sprintf("%s@%d", a.Site, int(a.AtS))]++
	}
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

// measurePresence counts in ps the presence events the followers were
// told.
func (r *run) measurePresence(ps *PresenceStats) {
	told := r.w.presenceTold()
	ps.Followers = r.w.followers
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
	if f.NotReady != "" {
		fmt.Fprintf(&b, "    not ready for over 2 s: %s\n", f.NotReady)
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
	if p.Asked > 0 || p.AskErrors > 0 {
		fmt.Fprintf(&b, "  presence asked (GET /v1/presence at the serving sites, every second): %d answers, %d unanswered; %d said a connected user was offline (%d users)\n",
			p.Asked, p.AskErrors, p.OfflineAnswers, p.OfflineAnswerUsers)
	}
	if len(p.OfflineBySite) > 0 {
		keys := slices.Collect(maps.Keys(p.OfflineBySite))
		slices.SortFunc(keys, func(a, b string) int {
			as, at, _ := strings.Cut(a, "@")
			bs, bt, _ := strings.Cut(b, "@")
			ai, _ := strconv.Atoi(at)
			bi, _ := strconv.Atoi(bt)
			return cmp.Or(cmp.Compare(ai, bi), cmp.Compare(as, bs))
		})
		var parts []string
		for _, k := range keys {
			site, t, _ := strings.Cut(k, "@")
			parts = append(parts, fmt.Sprintf("%s at %ss: %d", site, t, p.OfflineBySite[k]))
		}
		fmt.Fprintf(&b, "    by site and second of the load: %s\n", strings.Join(parts, ", "))
	}
	for _, a := range p.AnswerSamples {
		when := "before its restart"
		if a.SinceReadyMS >= 0 {
			when = sec(a.SinceReadyMS) + " after it was ready again"
		}
		fmt.Fprintf(&b, "    site %s said %s offline at %.1fs, %s\n", a.Site, a.User, a.AtS, when)
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
