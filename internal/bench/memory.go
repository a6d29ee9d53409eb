package bench

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

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

// memSample is a site process's memory at one moment; zero fields are
// unknown.
type memSample struct {
	rss  int64 // resident set, bytes
	heap int64 // Go heap in use, bytes (only if the site exports it)
	// goroutines is the site process's goroutine count, -1 when the site
	// does not export it.
	goroutines int64
}

// The Prometheus Go and process collectors' metrics, if a site registers
// them: its Go heap, and its RSS when the bench cannot see the process.
const (
	heapMetric      = "go_memstats_heap_inuse_bytes"
	goroutineMetric = "go_goroutines"
	rssMetric       = "process_resident_memory_bytes"
)

// sampleMem reads the memory of the process pid serving the site at base
// (pid 0: only what the site's /metrics says).
func (r *run) sampleMem(ctx context.Context, pid int, base string) memSample {
	m := memSample{goroutines: -1}
	if pid > 0 {
		if v, err := procMem(pid, "VmRSS"); err == nil {
			m.rss = v
		} else {
			r.log.Warn("cannot read the site's memory", "pid", pid, "err", err)
		}
	}
	if vals, err := r.net.metrics(ctx, base, heapMetric, rssMetric, goroutineMetric); err == nil {
		if v, ok := vals[heapMetric]; ok {
			m.heap = int64(v)
		}
		if v, ok := vals[goroutineMetric]; ok {
			m.goroutines = int64(v)
		}
		if v, ok := vals[rssMetric]; ok && m.rss == 0 {
			m.rss = int64(v)
		}
	}
	return m
}

// siteRSS returns each site's process RSS by URL, where the process is
// known. A process that serves several sites (`salamander dev`) is listed
// once, under the first of them.
func (r *run) siteRSS() map[string]int64 {
	out := map[string]int64{}
	seen := map[int]bool{}
	for i, s := range r.cfg.Sites {
		if pid := r.cfg.PID(i); pid > 0 && !seen[pid] {
			seen[pid] = true
			if v, err := procMem(pid, "VmRSS"); err == nil {
				out[s] = v
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
	pids  map[int]int           // site index -> its process, where known
	ok    bool
}

// sampleCPU reads the CPU time of the bench and of every known site's
// process.
func (r *run) sampleCPU() cpuSample {
	c := cpuSample{at: time.Now(), procs: map[int]time.Duration{}, pids: map[int]int{}}
	self, err := cpuTime(os.Getpid())
	if err != nil {
		return c
	}
	c.self, c.ok = self, true
	for i := range r.cfg.Sites {
		pid := r.cfg.PID(i)
		if pid <= 0 {
			continue
		}
		if _, read := c.procs[pid]; !read {
			v, err := cpuTime(pid)
			if err != nil {
				continue
			}
			c.procs[pid] = v
		}
		c.pids[i] = pid
	}
	return c
}

// cpuUse is the CPU used between two samples, in percent of one core.
type cpuUse struct {
	bench float64
	// sites is each site's process (by URL), only where every site has
	// a process of its own: `salamander dev` serves all three from one.
	sites map[string]float64
	// all is the sites' processes together, each counted once.
	all float64
}

// cpuShare is the CPU used between two samples. A process that is not in
// both (a site restarted in between) is not counted.
func (r *run) cpuShare(a, b cpuSample) cpuUse {
	secs := b.at.Sub(a.at).Seconds()
	if !a.ok || !b.ok || secs <= 0 {
		return cpuUse{}
	}
	pct := func(d time.Duration) float64 { return round(100*d.Seconds()/secs, 1) }
	out := cpuUse{bench: pct(b.self - a.self)}
	var all time.Duration
	for pid, v := range b.procs {
		if w, ok := a.procs[pid]; ok && v >= w {
			all += v - w
		}
	}
	out.all = pct(all)
	sites := map[string]float64{}
	shared := map[int]bool{}
	for i, pid := range b.pids {
		if shared[pid] {
			return out // shared processes: per site would count one several times
		}
		shared[pid] = true
		if w, ok := a.procs[pid]; ok && b.procs[pid] >= w {
			sites[r.cfg.Sites[i]] = pct(b.procs[pid] - w)
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
