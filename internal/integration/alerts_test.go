package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// alertsDir holds the Prometheus alerting rules and their unit tests.
const alertsDir = "../../ops/prometheus"

// The alerting rules in ops/prometheus query only metrics that a site
// exports (a renamed or dropped metric would leave an alert silently
// never firing), each says how long a failure must last, how urgent it is
// and what to do first, and every metric docs/METRICS.md says to alert on
// has an alert.
func TestAlertRulesUseExportedMetrics(t *testing.T) {
	rules := readAlertRules(t)
	if len(rules) == 0 {
		t.Fatal("the rule file holds no alert")
	}
	metric := regexp.MustCompile(`\b(salamander|process|go)_[a-z_]+\b`)
	named := map[string]bool{}   // in some alert's text
	queried := map[string]bool{} // in some alert's expression
	for _, r := range rules {
		if r.fields["expr"] == "" {
			t.Errorf("alert %s has no expr", r.name)
		}
		if _, err := time.ParseDuration(r.fields["for"]); err != nil {
			t.Errorf("alert %s: for: %q: %v", r.name, r.fields["for"], err)
		}
		if s := r.fields["labels.severity"]; s != "page" && s != "ticket" {
			t.Errorf("alert %s: severity %q, want page or ticket", r.name, s)
		}
		desc := r.fields["annotations.description"]
		if r.fields["annotations.summary"] == "" || !strings.Contains(desc, "README") {
			t.Errorf("alert %s: no summary, or a description that points at no README section", r.name)
		}
		if !regexp.MustCompile(`\{\{ \$labels\.(site|stream|leader) \}\}`).MatchString(r.fields["annotations.summary"] + desc) {
			t.Errorf("alert %s names no site, stream or server", r.name)
		}
		for _, m := range metric.FindAllString(r.text, -1) {
			named[m] = true
		}
		for _, m := range metric.FindAllString(r.fields["expr"], -1) {
			queried[strings.TrimSuffix(m, "_bucket")] = true
		}
	}
	if len(queried) == 0 {
		t.Fatal("the alerts query no metric")
	}

	// A metric whose "alert on" METRICS.md fills in is queried by an alert
	// of its own, or listed here with the alert that covers its failure.
	coveredElsewhere := map[string]string{
		// Conflicts (a taken user name) count as errors too: a failing
		// append surfaces as sends answered internal or unavailable.
		"salamander_log_appends_total": "SalamanderSendsFailing",
		// Reads from the replicas rise because the own copy stopped.
		"salamander_log_reads_total": "SalamanderOwnCopyStopped",
	}
	doc, err := os.ReadFile("../../docs/METRICS.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := 0
	for _, line := range strings.Split(string(doc), "\n") {
		m := regexp.MustCompile("^\\| `(salamander_[a-z_]+)` \\|").FindStringSubmatch(line)
		if m == nil {
			continue
		}
		rows++
		cells := strings.Split(line, "|")
		if len(cells) != 7 {
			t.Errorf("docs/METRICS.md: %s's row has %d cells, want 5", m[1], len(cells)-2)
			continue
		}
		alertOn := strings.TrimSpace(cells[5])
		by, covered := coveredElsewhere[m[1]]
		switch {
		case covered && queried[m[1]]:
			t.Errorf("%s is listed as covered by %s but has an alert of its own: drop it from the list", m[1], by)
		case covered && !slices.ContainsFunc(rules, func(r alertRule) bool { return r.name == by }):
			t.Errorf("%s is listed as covered by %s, which is no alert", m[1], by)
		case alertOn != "—" && !queried[m[1]] && !covered:
			t.Errorf("docs/METRICS.md says to alert on %s (%s), but no alert queries it", m[1], alertOn)
		}
	}
	if rows == 0 {
		t.Fatal("docs/METRICS.md lists no metric")
	}

	// Every series exists once the site has served a request, appended a
	// record and looked at its streams.
	signedUp(t, 0, "alerts")
	var exported map[string]bool
	_ = waitFor(20*time.Second, 100*time.Millisecond, func() error {
		exported = scrape(t, 0).families
		for m := range named {
			if !exportedBase(exported, m) {
				return fmt.Errorf("%s not exported yet", m)
			}
		}
		return nil
	})
	for m := range named {
		if !exportedBase(exported, m) {
			t.Errorf("the alerting rules name %s, which no site exports", m)
		}
	}
}

// promtool checks the alerting rules and runs their unit tests
// (ops/prometheus/salamander-alerts_test.yml: each alert fires when it
// should, for whom it should, and not when healthy). Without promtool the
// test is skipped on a developer's machine, but fails in CI (CI set),
// which must have installed it (.ci/run does).
func TestAlertRulesPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("no promtool on PATH, and CI is set: install it (Debian's prometheus package; .ci/run takes only its promtool)")
		}
		t.Skip("no promtool on PATH: the alerting rules' unit tests need it (Debian's prometheus package)")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	for _, args := range [][]string{
		{"check", "rules", "salamander-alerts.yml"},
		{"test", "rules", "salamander-alerts_test.yml"},
	} {
		cmd := exec.CommandContext(ctx, promtool, args...)
		cmd.Dir = alertsDir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// alertRule is one alerting rule of the rule file: its name, its whole
// text and its fields ("expr", "for", "labels.severity",
// "annotations.summary", …), block scalars joined into one line.
type alertRule struct {
	name   string
	text   string
	fields map[string]string
}

// readAlertRules reads the rule file's alerts. It knows only the layout
// the file keeps (every rule at the same indentation, a key per line, block
// scalars indented under their key), which keeps the test free of a YAML
// library; an alert it cannot read fails the checks above.
func readAlertRules(t *testing.T) []alertRule {
	t.Helper()
	b, err := os.ReadFile(alertsDir + "/salamander-alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	start := regexp.MustCompile(`^      - alert: (\w+)$`)
	key := regexp.MustCompile(`^( {8}| {10})([a-z_]+):\s*(.*)$`)
	var rules []alertRule
	var r *alertRule
	var parent, field string
	for _, line := range strings.Split(string(b), "\n") {
		if m := start.FindStringSubmatch(line); m != nil {
			rules = append(rules, alertRule{name: m[1], fields: map[string]string{}})
			r, parent, field = &rules[len(rules)-1], "", ""
			continue
		}
		if r == nil {
			continue
		}
		if strings.TrimSpace(line) != "" && !strings.HasPrefix(line, "        ") {
			r = nil // the next group, or the end of this rule's group
			continue
		}
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		r.text += line + "\n"
		if m := key.FindStringSubmatch(line); m != nil {
			if len(m[1]) == 8 {
				parent, field = m[2], m[2]
			} else {
				field = parent + "." + m[2]
			}
			value := m[3]
			if value == "|" || value == ">-" {
				value = ""
			}
			r.fields[field] = strings.Trim(value, `"`)
			continue
		}
		if field != "" {
			r.fields[field] = strings.TrimSpace(r.fields[field] + " " + strings.TrimSpace(line))
		}
	}
	return rules
}

// exportedBase says whether a site exports the metric, or the histogram
// whose _bucket, _sum or _count series it is.
func exportedBase(exported map[string]bool, m string) bool {
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if trimmed, ok := strings.CutSuffix(m, suffix); ok && exported[trimmed] {
			return true
		}
	}
	return exported[m]
}
