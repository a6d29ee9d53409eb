package salamander

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// The ops plane's domain: incidents told to users, damage reports users
// file after an outage, drill records kept for regulators, and drained
// sites. Each is a record in the replicated log, so every site serves it
// and no fire takes it away.

// Localized is a text written for users, in English and Korean; pages show
// the reader's language and fall back to the other when one is missing.
type Localized struct {
	EN string `json:"en,omitempty"`
	KO string `json:"ko,omitempty"`
}

// In returns the text in lang ("ko" or anything else for English), or
// the other language's when lang's is empty.
func (l Localized) In(lang string) string {
	// A blank text (only spaces) counts as none: the other language shows.
	ko, en := strings.TrimSpace(l.KO) != "", strings.TrimSpace(l.EN) != ""
	if lang == "ko" && ko || !en {
		return l.KO
	}
	return l.EN
}

// Incident states, in the order an incident usually moves through them.
const (
	IncidentInvestigating = "investigating"
	IncidentIdentified    = "identified"
	IncidentMonitoring    = "monitoring"
	IncidentResolved      = "resolved"
)

// IncidentStates lists every incident state.
var IncidentStates = []string{IncidentInvestigating, IncidentIdentified, IncidentMonitoring, IncidentResolved}

// Impacts: how badly an open incident hurts the services it names.
const (
	ImpactMinor    = "minor"    // degraded: slower, or failing for a few
	ImpactMajor    = "major"    // partial outage
	ImpactCritical = "critical" // the service is down
)

// Impacts lists every impact, mildest first.
var Impacts = []string{ImpactMinor, ImpactMajor, ImpactCritical}

// Services users see on the status page.
const (
	ServiceMessaging = "messaging"
	ServiceLogin     = "login"
	ServiceHistory   = "history"
)

// Services lists every service the status page shows.
var Services = []string{ServiceMessaging, ServiceLogin, ServiceHistory}

// Incident is an outage told to users: on the status page of every site,
// as a banner pushed to every connected client, and in sync while open.
type Incident struct {
	ID         string           `json:"id"`
	Title      Localized        `json:"title"`
	State      string           `json:"state"`
	Impact     string           `json:"impact"`
	Services   []string         `json:"services"`
	StartedAt  time.Time        `json:"started_at"`
	ResolvedAt time.Time        `json:"resolved_at,omitzero"`
	Updates    []IncidentUpdate `json:"updates"`
}

// Open reports whether the incident is not resolved.
func (i *Incident) Open() bool { return i.State != IncidentResolved }

// IncidentUpdate is one entry of an incident's timeline.
type IncidentUpdate struct {
	At       time.Time `json:"at"`
	State    string    `json:"state"`
	Impact   string    `json:"impact"`
	Services []string  `json:"services"`
	Message  Localized `json:"message"`
	By       string    `json:"by"`
	Site     string    `json:"site"`
}

// IncidentRequest announces an incident (POST /v1/ops/incidents).
type IncidentRequest struct {
	Title    Localized `json:"title"`
	Message  Localized `json:"message"`
	State    string    `json:"state,omitempty"` // default investigating
	Impact   string    `json:"impact"`
	Services []string  `json:"services"`
}

// IncidentUpdateRequest updates an incident's timeline (POST
// /v1/ops/incidents/{id}/updates); state resolved resolves it. Impact
// and Services, when set, replace the incident's.
type IncidentUpdateRequest struct {
	State    string    `json:"state"`
	Message  Localized `json:"message"`
	Impact   string    `json:"impact,omitempty"`
	Services []string  `json:"services,omitempty"`
}

// Limits of the ops plane's texts and amounts.
const (
	MaxIncidentTitleRune   = 200
	MaxIncidentMessageRune = 2000
	MaxReportDescRune      = 4000
	MaxReviewNoteRune      = 2000
	MaxAmount              = 1_000_000_000_000 // a claim or a compensation, in the currency's units
	// MaxDrillReportBytes bounds a drill's stored report (JSON).
	MaxDrillReportBytes = 256 << 10
)

// Validate checks an announcement and fills its defaults.
func (r *IncidentRequest) Validate() error {
	if r.State == "" {
		r.State = IncidentInvestigating
	}
	if err := validateLocalized("title", r.Title, MaxIncidentTitleRune, false); err != nil {
		return err
	}
	if err := validateLocalized("message", r.Message, MaxIncidentMessageRune, true); err != nil {
		return err
	}
	if r.State == IncidentResolved {
		return Errorf(CodeInvalid, "a new incident cannot be resolved already")
	}
	return validateIncidentFields(r.State, r.Impact, r.Services, true)
}

// Validate checks an update.
func (r *IncidentUpdateRequest) Validate() error {
	if err := validateLocalized("message", r.Message, MaxIncidentMessageRune, true); err != nil {
		return err
	}
	return validateIncidentFields(r.State, r.Impact, r.Services, false)
}

func validateIncidentFields(state, impact string, services []string, required bool) error {
	if !slices.Contains(IncidentStates, state) {
		return Errorf(CodeInvalid, "state must be one of %s", strings.Join(IncidentStates, ", "))
	}
	if (required || impact != "") && !slices.Contains(Impacts, impact) {
		return Errorf(CodeInvalid, "impact must be one of %s", strings.Join(Impacts, ", "))
	}
	if required && len(services) == 0 {
		return Errorf(CodeInvalid, "services must name at least one of %s", strings.Join(Services, ", "))
	}
	if len(services) > len(Services) {
		return Errorf(CodeInvalid, "services names a service twice")
	}
	for i, s := range services {
		if !slices.Contains(Services, s) || slices.Contains(services[:i], s) {
			return Errorf(CodeInvalid, "services must name each of %s at most once", strings.Join(Services, ", "))
		}
	}
	return nil
}

// validateLocalized checks a text written in one or both languages: at
// least one must be present, each at most maxRunes, newlines allowed in
// multi-line texts.
func validateLocalized(what string, l Localized, maxRunes int, multiline bool) error {
	if strings.TrimSpace(l.EN) == "" && strings.TrimSpace(l.KO) == "" {
		return Errorf(CodeInvalid, "%s needs English (en) or Korean (ko) text", what)
	}
	for lang, s := range map[string]string{"en": l.EN, "ko": l.KO} {
		if err := validateText(what+"."+lang, s, maxRunes, multiline); err != nil {
			return err
		}
	}
	return nil
}

// validateText checks a user-written text: valid UTF-8, at most maxRunes,
// no control characters but newlines and tabs in multi-line texts.
func validateText(what, s string, maxRunes int, multiline bool) error {
	if !multiline {
		return validateLine(what, s, maxRunes, true)
	}
	if !utf8.ValidString(s) {
		return Errorf(CodeInvalid, "%s must be valid UTF-8", what)
	}
	if n := utf8.RuneCountInString(s); n > maxRunes {
		return Errorf(CodeTooLarge, "%s is %d characters; the limit is %d", what, n, maxRunes)
	}
	for _, r := range s {
		if unicode.IsControl(r) && r != '\n' && r != '\t' && r != '\r' || r == utf8.RuneError {
			return Errorf(CodeInvalid, "%s must not contain control characters", what)
		}
	}
	return nil
}

// Damage report categories: the harm an outage caused.
const (
	HarmLostSales          = "lost_sales"
	HarmMissedAppointment  = "missed_appointment"
	HarmPaymentFailed      = "payment_failed"
	HarmLostData           = "lost_data"
	HarmCommunicationsLost = "communication_lost"
	HarmOther              = "other"
)

// HarmCategories lists every damage report category.
var HarmCategories = []string{HarmLostSales, HarmMissedAppointment, HarmPaymentFailed, HarmLostData,
	HarmCommunicationsLost, HarmOther}

// Damage report states. A report is submitted, may be sent back for
// details (and resubmitted), and ends approved or rejected.
const (
	ReportSubmitted    = "submitted"
	ReportNeedsDetails = "needs_details"
	ReportApproved     = "approved"
	ReportRejected     = "rejected"
)

// Review decisions an admin takes on a damage report.
const (
	DecisionAskDetails = "ask_details"
	DecisionApprove    = "approve"
	DecisionReject     = "reject"
)

// DamageReport is a user's claim for harm an outage caused. Only its
// filer and admins see it.
type DamageReport struct {
	ID             string        `json:"id"`
	User           string        `json:"user"`
	Incident       string        `json:"incident"`
	Category       string        `json:"category"`
	Description    string        `json:"description"`
	AmountClaimed  int64         `json:"amount_claimed"`
	Currency       string        `json:"currency"`
	State          string        `json:"state"`
	AmountApproved int64         `json:"amount_approved"`
	FiledAt        time.Time     `json:"filed_at"`
	UpdatedAt      time.Time     `json:"updated_at"`
	History        []ReportEvent `json:"history"`
}

// ReportEvent is one state change of a damage report: filed, sent back
// for details, answered, approved or rejected.
type ReportEvent struct {
	At     time.Time `json:"at"`
	State  string    `json:"state"`
	By     string    `json:"by"`
	Site   string    `json:"site"`
	Note   string    `json:"note,omitempty"`
	Amount int64     `json:"amount,omitempty"`
}

// DamageReportRequest files a damage report (POST /v1/reports). A retry
// with the same ClientID returns the report the first attempt filed.
type DamageReportRequest struct {
	Incident      string `json:"incident"`
	Category      string `json:"category"`
	Description   string `json:"description"`
	AmountClaimed int64  `json:"amount_claimed"`
	Currency      string `json:"currency,omitempty"` // default KRW
	ClientID      string `json:"client_id,omitempty"`
}

// ReportDetailsRequest answers an admin's request for details (POST
// /v1/reports/{id}/details); AmountClaimed, when set, replaces the claim.
type ReportDetailsRequest struct {
	Text          string `json:"text"`
	AmountClaimed *int64 `json:"amount_claimed,omitempty"`
}

// ReviewRequest is an admin's decision on a damage report (POST
// /v1/ops/reports/{id}/review).
type ReviewRequest struct {
	Decision       string `json:"decision"`
	Note           string `json:"note,omitempty"`
	AmountApproved int64  `json:"amount_approved,omitempty"`
}

var currencyRE = regexp.MustCompile(`^[A-Z]{3}$`)

// Validate checks a damage report and fills its defaults.
func (r *DamageReportRequest) Validate() error {
	if !ValidOpsID(r.Incident) {
		return Errorf(CodeInvalid, "incident must be an incident id")
	}
	if !slices.Contains(HarmCategories, r.Category) {
		return Errorf(CodeInvalid, "category must be one of %s", strings.Join(HarmCategories, ", "))
	}
	if strings.TrimSpace(r.Description) == "" {
		return Errorf(CodeInvalid, "description must not be blank")
	}
	if err := validateText("description", r.Description, MaxReportDescRune, true); err != nil {
		return err
	}
	if err := ValidateAmount("amount_claimed", r.AmountClaimed); err != nil {
		return err
	}
	if r.Currency == "" {
		r.Currency = "KRW"
	}
	if !currencyRE.MatchString(r.Currency) {
		return Errorf(CodeInvalid, "currency must be an ISO 4217 code such as KRW")
	}
	if r.ClientID != "" {
		return ValidateClientID(r.ClientID)
	}
	return nil
}

// Validate checks an answer to a request for details.
func (r *ReportDetailsRequest) Validate() error {
	if strings.TrimSpace(r.Text) == "" {
		return Errorf(CodeInvalid, "text must not be blank")
	}
	if err := validateText("text", r.Text, MaxReportDescRune, true); err != nil {
		return err
	}
	if r.AmountClaimed != nil {
		return ValidateAmount("amount_claimed", *r.AmountClaimed)
	}
	return nil
}

// Validate checks a review decision.
func (r *ReviewRequest) Validate() error {
	if err := validateText("note", r.Note, MaxReviewNoteRune, true); err != nil {
		return err
	}
	switch r.Decision {
	case DecisionApprove:
		return ValidateAmount("amount_approved", r.AmountApproved)
	case DecisionAskDetails, DecisionReject:
		if strings.TrimSpace(r.Note) == "" {
			return Errorf(CodeInvalid, "a note must tell the user why (%s)", r.Decision)
		}
		if r.AmountApproved != 0 {
			return Errorf(CodeInvalid, "amount_approved goes with approve only")
		}
		return nil
	}
	return Errorf(CodeInvalid, "decision must be ask_details, approve or reject")
}

// ValidateAmount checks a money amount: 0 to MaxAmount.
func ValidateAmount(what string, n int64) error {
	if n < 0 || n > MaxAmount {
		return Errorf(CodeInvalid, "%s must be 0-%d", what, int64(MaxAmount))
	}
	return nil
}

// opsIDRE is the shape of an incident, report or drill id.
var opsIDRE = regexp.MustCompile(`^[a-z]{2,5}-[0-9a-z]{6,32}$`)

// NewOpsID returns a fresh id for an incident ("inc"), damage report
// ("rep") or drill ("drl"): the prefix and 16 random hex digits.
func NewOpsID(prefix string) string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)
}

// ValidOpsID reports whether id has the shape of an incident, damage
// report or drill id.
func ValidOpsID(id string) bool { return opsIDRE.MatchString(id) }

// Drill kinds, as regulators count them: a recovery drill really takes a
// site down and brings service back; a simulation drill rehearses it
// (a site cut off or isolated, every check run).
const (
	DrillRecovery   = "recovery"
	DrillSimulation = "simulation"
)

// Drill states.
const (
	DrillRunning = "running"
	DrillPassed  = "passed"
	DrillFailed  = "failed"
)

// Drill is one fire drill's record: every `salamander drill` run that
// records itself and every drill started from the ops console.
type Drill struct {
	ID       string    `json:"id"`
	Scenario string    `json:"scenario"`
	Kind     string    `json:"kind"`
	Site     string    `json:"site,omitempty"` // the site burned, cut off or isolated
	Started  time.Time `json:"started_at"`
	Ended    time.Time `json:"ended_at,omitzero"`
	State    string    `json:"state"`
	By       string    `json:"by"`
	FromSite string    `json:"from_site"` // where it was started ("cli" for salamander drill)
	// Seconds (console drills) is how long the site is isolated from
	// FaultAt, when the drill's load has started and the fault strikes.
	Seconds int       `json:"seconds,omitempty"`
	FaultAt time.Time `json:"fault_at,omitzero"`
	Summary string    `json:"summary,omitempty"`
	// Report is the drill's full report (the drill's --json output).
	Report json.RawMessage `json:"report,omitempty"`
}

// DrillAbandonedAfter is how long a drill with no end recorded counts as
// running: while one runs no site may be drained and no other drill
// start, so a drill whose runner died (a killed `salamander drill`, a
// burned gateway that ran a console drill) must not block them for good.
// An operator ends one sooner (POST /v1/ops/drills/{id}/end, `salamander
// admin drill end ID`). It counts from the drill's start, or from the end
// of its fault's isolation when that is later. Every drill ends well
// within it: a console drill's isolation is at most MaxDrillSeconds, and a
// recorded `salamander drill` of a running deployment runs at most
// MaxRecordedDrill.
const DrillAbandonedAfter = time.Hour

// MaxRecordedDrill bounds the load of a `salamander drill` that a running
// deployment records (it must end well within DrillAbandonedAfter).
const MaxRecordedDrill = 45 * time.Minute

// OneMoreOutLeavesMajority reports whether taking one more of sites out of
// service (drained, or cut off by a drill), with out of them out already,
// leaves a majority serving and the log its quorum. The ops API, the admin
// CLI, the drill recorder and the log's own apply rule all decide by it.
func OneMoreOutLeavesMajority(out, sites int) bool { return out+1 <= (sites-1)/2 }

// Live reports whether d counts as running at now: running, and started
// (or done isolating a site) less than DrillAbandonedAfter before.
func (d Drill) Live(now time.Time) bool {
	last := d.Started
	if !d.FaultAt.IsZero() {
		if end := d.FaultAt.Add(time.Duration(d.Seconds) * time.Second); end.After(last) {
			last = end
		}
	}
	return d.State == DrillRunning && now.Sub(last) < DrillAbandonedAfter
}

// DrillEndRequest ends a running drill as failed (POST
// /v1/ops/drills/{id}/end): for a drill whose runner died. The reason goes
// into the drill's summary and the audit trail.
type DrillEndRequest struct {
	Reason string `json:"reason"`
}

// MaxDrillEndReasonRunes bounds DrillEndRequest.Reason.
const MaxDrillEndReasonRunes = 500

// Validate checks a drill end request.
func (r *DrillEndRequest) Validate() error {
	if strings.TrimSpace(r.Reason) == "" {
		return Errorf(CodeInvalid, "reason must say why the drill is ended (it is kept in its record)")
	}
	return validateLine("reason", r.Reason, MaxDrillEndReasonRunes, false)
}

// DrillEndedBy is the summary of a drill an operator ended.
func DrillEndedBy(who, reason string) string {
	return fmt.Sprintf("ended by %s before its end was recorded: %s", who, reason)
}

// DrillRequest starts an isolation drill from the console (POST
// /v1/ops/drills): Site is isolated for Seconds under a test load.
type DrillRequest struct {
	Site    string `json:"site"`
	Seconds int    `json:"seconds,omitempty"` // default 20
}

// Limits of a console drill's isolation.
const (
	MinDrillSeconds     = 5
	MaxDrillSeconds     = 300
	DefaultDrillSeconds = 20
)

// Validate checks a drill request and fills its default.
func (r *DrillRequest) Validate() error {
	if r.Seconds == 0 {
		r.Seconds = DefaultDrillSeconds
	}
	if r.Seconds < MinDrillSeconds || r.Seconds > MaxDrillSeconds {
		return Errorf(CodeInvalid, "seconds must be %d-%d", MinDrillSeconds, MaxDrillSeconds)
	}
	if !ValidSiteName(r.Site) {
		return Errorf(CodeInvalid, "site must be a site's name")
	}
	return nil
}

var siteNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)

// ValidSiteName reports whether s has the shape of a site's name.
func ValidSiteName(s string) bool { return siteNameRE.MatchString(s) }

// DrillCompliance says whether a year's drills meet the legal minimum:
// at least RequiredRecovery recovery drills and RequiredSimulation
// simulation drills that passed.
type DrillCompliance struct {
	Year               int  `json:"year"`
	Recovery           int  `json:"recovery"`
	Simulation         int  `json:"simulation"`
	RequiredRecovery   int  `json:"required_recovery"`
	RequiredSimulation int  `json:"required_simulation"`
	Met                bool `json:"met"`
}

// The legal minimum of drills a year that Korean law has asked of
// services of this size since the October 2022 fire.
const (
	RequiredRecoveryDrills   = 1
	RequiredSimulationDrills = 2
)

// Compliance counts the drills that passed in year.
func Compliance(drills []Drill, year int) DrillCompliance {
	c := DrillCompliance{Year: year, RequiredRecovery: RequiredRecoveryDrills, RequiredSimulation: RequiredSimulationDrills}
	for _, d := range drills {
		if d.State != DrillPassed || d.Started.Year() != year {
			continue
		}
		switch d.Kind {
		case DrillRecovery:
			c.Recovery++
		case DrillSimulation:
			c.Simulation++
		}
	}
	c.Met = c.Recovery >= c.RequiredRecovery && c.Simulation >= c.RequiredSimulation
	return c
}

// SiteDrain is a drained site: its clients are asked to move to other
// sites, its readiness fails so load balancers stop sending it traffic,
// and stream leaders are moved off it, until it is undrained.
type SiteDrain struct {
	Site string    `json:"site"`
	At   time.Time `json:"at"`
	By   string    `json:"by"`
	From string    `json:"from_site"`
}
