package bench

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Process is one operating-system process of a site.
type Process struct {
	PID  int
	Role Role
	// URL is the process's own HTTP address where it differs from the
	// site's: one of several gateways behind the site's balancer. Its
	// /metrics are read there.
	URL string
}

// Role says what a site's process does.
type Role string

const (
	// RoleSite serves a site alone, NATS server embedded: `serve`, or
	// `dev` for all three sites. The default for --pid.
	RoleSite Role = "site"
	// RoleGateway is one of a site's `serve --nats` gateways.
	RoleGateway Role = "gateway"
	// RoleNATSServer is a site's standalone nats-server.
	RoleNATSServer Role = "nats-server"
)

// holdsSockets reports whether the process holds WebSockets (and a read
// model): every role but a NATS server.
func (p Process) holdsSockets() bool { return p.Role != RoleNATSServer }

// procMem returns a memory field of /proc/PID/status (e.g. "VmRSS"), in
// bytes. It works on Linux only.
func procMem(pid int, field string) (int64, error) {
	kb, err := procField(fmt.Sprintf("/proc/%d/status", pid), field)
	return kb * 1024, err
}

// memAvailable returns the machine's available memory (MemAvailable in
// /proc/meminfo), in bytes; false where that is not known.
func memAvailable() (uint64, bool) {
	kb, err := procField("/proc/meminfo", "MemAvailable")
	if err != nil || kb < 0 {
		return 0, false
	}
	return uint64(kb) * 1024, true
}

// procField reads "Field:   123 kB" from a /proc file and returns 123.
func procField(path, field string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), field+":")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			break
		}
		return strconv.ParseInt(fields[0], 10, 64)
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("%s: no %s", path, field)
}

// memSample is the memory of a site's processes that hold its sockets,
// summed, at one moment; zero fields are unknown.
type memSample struct {
	rss  int64 // resident set, bytes
	heap int64 // Go heap in use, bytes (only if the site exports it)
	// goroutines is the processes' goroutine count, -1 when the site does
	// not export it.
	goroutines int64
}

// The Prometheus Go and process collectors' metrics, if a site registers
// them: its Go heap, and its RSS when the bench cannot see the process.
const (
	heapMetric      = "go_memstats_heap_inuse_bytes"
	goroutineMetric = "go_goroutines"
	rssMetric       = "process_resident_memory_bytes"
)

// sampleMem reads the memory of procs, the site's processes that hold
// its sockets (none known: only what the site at base says of itself in
// its /metrics): their RSS from /proc, their Go heap and goroutines from
// each one's /metrics (at its own URL, or base), summed. Behind a
// balancer, base answers for one gateway at a time, so each is asked at
// its own address.
func (r *run) sampleMem(ctx context.Context, procs []Process, base string) memSample {
	m := memSample{goroutines: -1}
	for _, p := range procs {
		if v, err := procMem(p.PID, "VmRSS"); err == nil {
			m.rss += v
		} else {
			r.log.Warn("cannot read the site's memory", "pid", p.PID, "err", err)
		}
	}
	urls := metricsURLs(procs, base)
	for _, u := range urls {
		vals, err := r.net.metrics(ctx, u, heapMetric, rssMetric, goroutineMetric)
		if err != nil {
			continue
		}
		if v, ok := vals[heapMetric]; ok {
			m.heap += int64(v)
		}
		if v, ok := vals[goroutineMetric]; ok {
			m.goroutines = max(m.goroutines, 0) + int64(v)
		}
		if v, ok := vals[rssMetric]; ok && len(procs) == 0 {
			m.rss += int64(v)
		}
	}
	return m
}

// metricsURLs is where the /metrics of procs are read: each process's own
// URL, or base for a process that is the site (counted once).
func metricsURLs(procs []Process, base string) []string {
	var out []string
	for _, p := range procs {
		u := cmp.Or(p.URL, base)
		if !slices.Contains(out, u) {
			out = append(out, u)
		}
	}
	if len(out) == 0 {
		out = []string{base}
	}
	return out
}

// socketHolders returns site i's processes that hold WebSockets.
func (r *run) socketHolders(i int) []Process {
	var out []Process
	for _, p := range r.cfg.Processes(i) {
		if p.PID > 0 && p.holdsSockets() {
			out = append(out, p)
		}
	}
	return out
}

// siteRSS returns the RSS of each site's processes together by URL, where
// they are known. A process that serves several sites (`salamander dev`)
// is counted once, under the first of them.
func (r *run) siteRSS() map[string]int64 {
	out := map[string]int64{}
	seen := map[int]bool{}
	for i, s := range r.cfg.Sites {
		for _, p := range r.cfg.Processes(i) {
			if p.PID <= 0 || seen[p.PID] {
				continue
			}
			seen[p.PID] = true
			if v, err := procMem(p.PID, "VmRSS"); err == nil {
				out[s] += v
			}
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// clockTicks is the kernel's USER_HZ, the unit of CPU times in
// /proc/PID/stat: 100 on every Linux platform Go supports.
const clockTicks = 100

// cpuTime returns the user+system CPU time process pid has used so far.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces: count from after it.
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	var ticks int64
	for _, f := range fields[11:13] { // utime, stime (fields 14 and 15)
		v, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		ticks += v
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// cpuSample is the CPU time used so far by the bench and by the sites'
// processes.
type cpuSample struct {
	at    time.Time
	self  time.Duration
	procs map[int]time.Duration // by process id, each read once
	sites map[int][]int         // site index -> its processes
	roles map[int]Role          // process id -> its role
	ok    bool
}

// sampleCPU reads the CPU time of the bench and of every known process of
// the sites.
func (r *run) sampleCPU() cpuSample {
	c := cpuSample{at: time.Now(), procs: map[int]time.Duration{}, sites: map[int][]int{}, roles: map[int]Role{}}
	self, err := cpuTime(os.Getpid())
	if err != nil {
		return c
	}
	c.self, c.ok = self, true
	for i := range r.cfg.Sites {
		for _, p := range r.cfg.Processes(i) {
			if p.PID <= 0 {
				continue
			}
			if _, read := c.procs[p.PID]; !read {
				v, err := cpuTime(p.PID)
				if err != nil {
					continue
				}
				c.procs[p.PID] = v
			}
			c.sites[i] = append(c.sites[i], p.PID)
			c.roles[p.PID] = p.Role
		}
	}
	return c
}

// cpuUse is the CPU used between two samples, in percent of one core.
type cpuUse struct {
	bench float64
	// sites is each site's processes together (by URL), only where no
	// process serves several sites: `salamander dev` serves all three.
	sites map[string]float64
	// all is the sites' processes together, each counted once.
	all float64
	// roles splits all by the processes' roles, where there are several
	// (the external topology: NATS servers and gateways).
	roles map[Role]float64
}

// cpuShare is the CPU used between two samples. A process that is not in
// both (a site restarted in between) is not counted.
func (r *run) cpuShare(a, b cpuSample) cpuUse {
	secs := b.at.Sub(a.at).Seconds()
	if !a.ok || !b.ok || secs <= 0 {
		return cpuUse{}
	}
	pct := func(d time.Duration) float64 { return round(100*d.Seconds()/secs, 1) }
	used := func(pid int) (time.Duration, bool) {
		v, okB := b.procs[pid]
		w, okA := a.procs[pid]
		if !okA || !okB || v < w {
			return 0, false
		}
		return v - w, true
	}
	out := cpuUse{bench: pct(b.self - a.self)}
	var all time.Duration
	byRole := map[Role]time.Duration{}
	for pid := range b.procs {
		if d, ok := used(pid); ok {
			all += d
			byRole[b.roles[pid]] += d
		}
	}
	out.all = pct(all)
	if len(byRole) > 1 {
		out.roles = map[Role]float64{}
		for role, d := range byRole {
			out.roles[role] = pct(d)
		}
	}
	sites := map[string]float64{}
	owner := map[int]int{}
	for i, pids := range b.sites {
		var site time.Duration
		counted := false
		for _, pid := range pids {
			if o, seen := owner[pid]; seen && o != i {
				return out // shared processes: per site would count one several times
			}
			owner[pid] = i
			if d, ok := used(pid); ok {
				site += d
				counted = true
			}
		}
		if counted {
			sites[r.cfg.Sites[i]] = pct(site)
		}
	}
	if len(sites) > 0 {
		out.sites = sites
	}
	return out
}

// The read model's counters a site exports: log entries applied (each
// message, read marker, sign-up …) and, per stream, the last record
// applied.
const (
	entriesMetric = "salamander_view_entries_applied_total"
	recordsMetric = "salamander_view_applied_seq"
)

// logSample is the first site's applied log at one moment.
type logSample struct {
	at      time.Time
	entries float64
	records float64 // the streams' last applied records, summed
	ok      bool
}

// sampleLog reads how much of the log the first site has applied.
func (r *run) sampleLog(ctx context.Context) logSample {
	s := logSample{at: time.Now()}
	vals, err := r.net.metrics(ctx, r.cfg.Sites[0], entriesMetric, recordsMetric)
	if err != nil {
		return s
	}
	e, okE := vals[entriesMetric]
	rec, okR := vals[recordsMetric]
	s.entries, s.records, s.ok = e, rec, okE && okR
	return s
}

// logBatching is how the log carried a window's entries.
type logBatching struct {
	recordsPerSec    float64
	entriesPerRecord float64
}

// batching compares two samples of the log (zero where either is missing
// or nothing was applied between them). A scrape reads the entries and the
// records a moment apart, so with about one entry per record the ratio
// can come out a hair under one; a record carries at least one.
func batching(a, b logSample) logBatching {
	secs := b.at.Sub(a.at).Seconds()
	records, entries := b.records-a.records, b.entries-a.entries
	if !a.ok || !b.ok || secs <= 0 || records <= 0 || entries <= 0 {
		return logBatching{}
	}
	return logBatching{recordsPerSec: round(records/secs, 1), entriesPerRecord: round(max(entries/records, 1), 2)}
}
