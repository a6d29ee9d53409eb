package drill

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
)

// Suite is the outcome of a run of one or more scenarios on one cluster.
// Its top-level fields are the totals (counts) and the worst (write gaps,
// send waits, delivery lags) over its scenarios.
type Suite struct {
	// Scenario is the sequence run, e.g. "fire,partition,return".
	Scenario      string  `json:"scenario"`
	Acked         int     `json:"acked"`
	Lost          int     `json:"lost"`
	Duplicated    int     `json:"duplicated"`
	Reordered     int     `json:"reordered"`
	WriteGapMSP50 float64 `json:"write_gap_ms_p50"`
	WriteGapMSMax float64 `json:"write_gap_ms_max"`
	// SendGapMSMax and DeliveryGapMSMax are the worst over the scenarios
	// (see Report).
	SendGapMSMax     float64 `json:"send_gap_ms_max"`
	DeliveryGapMSMax float64 `json:"delivery_gap_ms_max"`
	// HeldDeliveryAfterElectionMSMax is the worst over the scenarios (see
	// Report); -1 when none measured it.
	HeldDeliveryAfterElectionMSMax float64 `json:"held_delivery_after_election_ms_max"`
	// ReconnectMSMax is the worst over the scenarios' faults: how long
	// the last device connected to a struck site took to be live again
	// (see Fault.Reconnect).
	ReconnectMSMax float64 `json:"reconnect_ms_max"`
	Converged      bool    `json:"converged"`
	// CutRefuseMS and HealGapMSMax are the worst over the partitions of
	// the sequence (see CutStats and HealStats); CutRefuseMS is -1 when a
	// cut-off site never refused its clients during its cut.
	CutRefuseMS  float64   `json:"cut_refuse_ms,omitempty"`
	HealGapMSMax float64   `json:"heal_gap_ms_max,omitempty"`
	OK           bool      `json:"ok"`
	Failures     []string  `json:"failures,omitempty"`
	Scenarios    []*Report `json:"scenarios"`
}

// add appends one scenario's report.
func (s *Suite) add(r *Report) { s.Scenarios = append(s.Scenarios, r) }

// judge computes the totals.
func (s *Suite) judge() {
	s.Acked, s.Lost, s.Duplicated, s.Reordered = 0, 0, 0, 0
	s.WriteGapMSP50, s.WriteGapMSMax = 0, 0
	s.SendGapMSMax, s.DeliveryGapMSMax, s.ReconnectMSMax = 0, 0, 0
	s.HeldDeliveryAfterElectionMSMax = -1
	s.Converged, s.Failures = true, nil
	s.CutRefuseMS, s.HealGapMSMax = 0, 0
	for _, r := range s.Scenarios {
		if r.CutStats != nil && s.CutRefuseMS >= 0 {
			if r.CutRefuseMS < 0 {
				s.CutRefuseMS = -1
			} else {
				s.CutRefuseMS = math.Max(s.CutRefuseMS, r.CutRefuseMS)
			}
		}
		if r.HealStats != nil {
			s.HealGapMSMax = math.Max(s.HealGapMSMax, r.HealGapMSMax)
		}
		s.Acked += r.Acked
		s.Lost += r.Lost
		s.Duplicated += r.Duplicated
		s.Reordered += r.Reordered
		s.WriteGapMSP50 = math.Max(s.WriteGapMSP50, r.WriteGapMSP50)
		s.WriteGapMSMax = math.Max(s.WriteGapMSMax, r.WriteGapMSMax)
		s.SendGapMSMax = math.Max(s.SendGapMSMax, r.SendGapMSMax)
		s.DeliveryGapMSMax = math.Max(s.DeliveryGapMSMax, r.DeliveryGapMSMax)
		s.ReconnectMSMax = math.Max(s.ReconnectMSMax, r.ReconnectMSMax)
		s.HeldDeliveryAfterElectionMSMax = math.Max(s.HeldDeliveryAfterElectionMSMax, r.HeldDeliveryAfterElectionMSMax)
		s.Converged = s.Converged && r.Converged
		for _, f := range r.Failures {
			s.Failures = append(s.Failures, r.Scenario+": "+f)
		}
	}
	s.OK = len(s.Scenarios) > 0 && len(s.Failures) == 0
}

// WriteText writes each scenario's summary and, for a sequence, a total.
func (s *Suite) WriteText(w io.Writer) error {
	for i, r := range s.Scenarios {
		if i > 0 {
			if _, err := io.WriteString(w, "\n"); err != nil {
				return err
			}
		}
		if err := r.WriteText(w); err != nil {
			return err
		}
	}
	if len(s.Scenarios) < 2 {
		return nil
	}
	_, err := io.WriteString(w, "\n"+s.total())
	return err
}

// total is the sequence's summary line(s).
func (s *Suite) total() string {
	var b strings.Builder
	fmt.Fprintf(&b, "salamander drill: %s — acked %d, lost %d, duplicated %d, reordered %d, converged %v; worst write gap p50 %s max %s\n",
		s.Scenario, s.Acked, s.Lost, s.Duplicated, s.Reordered, s.Converged, sec(s.WriteGapMSP50), sec(s.WriteGapMSMax))
	fmt.Fprintf(&b, "  longest send wait %s, longest delivery lag %s", waitText(s.SendGapMSMax), waitText(s.DeliveryGapMSMax))
	if s.HeldDeliveryAfterElectionMSMax >= 0 {
		fmt.Fprintf(&b, ", longest delivery of a held message after its partition's new leader %s", waitText(s.HeldDeliveryAfterElectionMSMax))
	}
	b.WriteString("\n")
	if s.ReconnectMSMax > 0 {
		fmt.Fprintf(&b, "  the last device of a struck site live again after %s (worst fault)\n", sec(s.ReconnectMSMax))
	}
	if s.CutRefuseMS != 0 || s.HealGapMSMax != 0 {
		fmt.Fprintf(&b, "  partitions: slowest refusal by a cut-off site %s; worst heal gap %s\n", msOrNever(s.CutRefuseMS), sec(s.HealGapMSMax))
	}
	if s.OK {
		b.WriteString("  PASS: every scenario passed\n")
	} else {
		fmt.Fprintf(&b, "  FAIL: %s\n", strings.Join(s.Failures, "; "))
	}
	return b.String()
}

// WriteJSON writes the report of a single scenario as it is (see Report),
// or, for a sequence, the suite with a "scenarios" array.
func (s *Suite) WriteJSON(w io.Writer) error {
	if len(s.Scenarios) == 1 {
		return s.Scenarios[0].WriteJSON(w)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(s); err != nil {
		return fmt.Errorf("drill: encoding the report: %w", err)
	}
	return nil
}

// WriteHTML writes one page with a section and timeline per scenario.
func (s *Suite) WriteHTML(w io.Writer) error {
	if len(s.Scenarios) == 1 {
		return s.Scenarios[0].WriteHTML(w)
	}
	p := page{Title: s.Scenario, OK: s.OK, Summary: s.total()}
	for _, r := range s.Scenarios {
		sec, err := r.htmlSection()
		if err != nil {
			return err
		}
		p.Sections = append(p.Sections, sec)
	}
	if err := htmlTmpl.Execute(w, p); err != nil {
		return fmt.Errorf("drill: writing the HTML report: %w", err)
	}
	return nil
}
