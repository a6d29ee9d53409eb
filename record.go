package salamander

import (
	"time"
)

// RecordType names a state change appended to the replicated log.
type RecordType string

// Records about accounts live in the accounts stream; records about a room
// live in the room's partition stream, in the room's one total order.
const (
	RecSigningKey     RecordType = "key.created"     // KeyID, Key: a session-signing key (the first, or with Rotate the next); with Rotate, a KeyID and no Key: every key made current before it revoked
	RecUserCreated    RecordType = "user.created"    // User, DisplayName, PasswordHash
	RecProfileChanged RecordType = "user.profile"    // User, DisplayName?, Status?
	RecSessionRevoked RecordType = "session.revoked" // User, Session: one token is logged out
	RecUserRevoked    RecordType = "user.revoked"    // User, By?, Site?: every token naming an accounts position before this record's is revoked
	// RecPasswordSet replaces an account's password hash and, as
	// RecUserRevoked does, revokes every session and device token naming
	// an accounts position before this record's. By is the account itself
	// (a change with the current password: POST /v1/me/password) or an
	// admin ("" = the admin credential; Site set: a reset, in the audit
	// trail); PasswordHash is a bcrypt hash; PrevHash, in an own change,
	// the hash the current password was judged against. Sites of versions before it
	// skip it: the old password works there until they are upgraded.
	RecPasswordSet   RecordType = "user.password"  // User, PasswordHash, By, Site?
	RecRoleSet       RecordType = "user.role"      // User, Role, By ("" = the admin credential), Site: a role change
	RecUserSuspended RecordType = "user.suspended" // User, By, Site: the account may not log in or use its sessions
	RecUserRestored  RecordType = "user.restored"  // User, By, Site: a suspension ends
	RecFriendAdded   RecordType = "friend.added"   // User, Friend

	// The ops plane's records (accounts stream). Each names who took it
	// (By) and where (Site); the read model applies it only if By holds
	// the role it needs at that point of the log.
	RecIncidentOpened  RecordType = "incident.opened"  // Incident (operator)
	RecIncidentUpdated RecordType = "incident.updated" // Incident: ID and the update (operator)
	RecReportFiled     RecordType = "report.filed"     // Report; User is the filer
	RecReportAnswered  RecordType = "report.answered"  // Report: ID, Note, Amount?; User is the filer
	RecReportReviewed  RecordType = "report.reviewed"  // Report: ID, Decision, Note, Amount (admin)
	RecDrillStarted    RecordType = "drill.started"    // Drill (operator)
	RecDrillFault      RecordType = "drill.fault"      // Drill: ID: a console drill's site isolates itself for Seconds from At (operator)
	RecDrillEnded      RecordType = "drill.ended"      // Drill: ID, State, Summary, Report (operator)
	RecSiteDrained     RecordType = "site.drained"     // Target (operator)
	RecSiteUndrained   RecordType = "site.undrained"   // Target (operator)
	RecLeaderMoved     RecordType = "stream.leader"    // Name (the stream), Target (the site asked to lead) (operator): for the audit trail

	RecRoomCreated RecordType = "room.created" // Room, Kind, Name, Members, By
	RecRoomJoined  RecordType = "room.joined"  // Room, Members (the new ones), By
	RecRoomLeft    RecordType = "room.left"    // Room, User
	RecRoomRenamed RecordType = "room.renamed" // Room, Name, By
	RecMessageSent RecordType = "msg.sent"     // Room, User (sender), ClientID, Text
	RecMessageRead RecordType = "msg.read"     // Room, User, Seq

	// RecBatch carries several records of one partition, appended as one
	// (one replicated write for many concurrent sends): Batch, in order.
	// Each is a log entry of its own with its own position.
	RecBatch RecordType = "batch"

	// RecMerge places messages that were held in a partition's standby
	// stream while the partition had no leader (Merge: the standby and the
	// range of its records). Every site applies those records' messages at
	// the merge record's place in the partition, in the standby's order, as
	// if they had been appended there (see internal/jsstore's standby.go).
	RecMerge RecordType = "merge"
)

// MergeRange names the records of a standby stream that a RecMerge record
// places: those after From, up to and including To.
type MergeRange struct {
	Standby string `json:"s"`
	From    uint64 `json:"from"`
	To      uint64 `json:"to"`
}

// Record is one entry in the replicated log. Fields beyond Type and At are
// set according to Type (see the constants). A record is validated at the
// gateway before it is appended, and its room rules (membership, duplicates)
// are applied deterministically by every site's read model, so that every
// site reaches the same state from the same log.
type Record struct {
	Type RecordType `json:"t"`
	// At is when the gateway accepted the request. Read models use it rather
	// than their own clocks, so replays produce identical state.
	At time.Time `json:"at"`

	User         string  `json:"u,omitempty"`
	DisplayName  *string `json:"dn,omitempty"`
	Status       *string `json:"st,omitempty"`
	PasswordHash string  `json:"ph,omitempty"`
	// PrevHash is, in an account's change of its own password
	// (RecPasswordSet by itself), the hash the current password was
	// judged against: the change applies only while it is still the
	// account's, so one judged at a site that had not applied a newer
	// change or reset yet (the old password, known to a thief, at a
	// lagging site) cannot undo that one.
	PrevHash string `json:"pph,omitempty"`
	Session  string `json:"sid,omitempty"`
	Friend   string `json:"f,omitempty"`
	// Key is a session-signing key, sealed with the deployment's log key
	// (secrets.SealKey) so that reading the log does not give it away; a
	// key without KeyID is a plain one from before keys were sealed.
	Key []byte `json:"k,omitempty"`
	// Role is a user's role (RecRoleSet): user, operator or admin.
	Role string `json:"role,omitempty"`
	// Site is where an admin action was taken (a site's name, or "cli").
	Site  string `json:"site,omitempty"`
	KeyID string `json:"kid,omitempty"`
	// Rotate makes a signing key the current one after an existing one
	// (without it, only the first key of the log counts).
	Rotate   bool     `json:"rotate,omitempty"`
	Room     string   `json:"r,omitempty"`
	Kind     RoomKind `json:"kind,omitempty"`
	Name     string   `json:"n,omitempty"`
	Members  []string `json:"m,omitempty"`
	By       string   `json:"by,omitempty"`
	ClientID string   `json:"cid,omitempty"`
	Text     string   `json:"x,omitempty"`
	Seq      uint64   `json:"seq,omitempty"`
	Batch    []Record `json:"b,omitempty"`

	// Target is the site a drain is about.
	Target   string          `json:"tgt,omitempty"`
	Incident *IncidentChange `json:"inc,omitempty"`
	Report   *ReportChange   `json:"rep,omitempty"`
	Drill    *Drill          `json:"drill,omitempty"`
	Merge    *MergeRange     `json:"mg,omitempty"`
}

// IncidentChange is an incident's announcement (Title set) or an update
// of its timeline.
type IncidentChange struct {
	ID       string    `json:"id"`
	Title    Localized `json:"title,omitzero"`
	State    string    `json:"state"`
	Impact   string    `json:"impact,omitempty"`
	Services []string  `json:"services,omitempty"`
	Message  Localized `json:"message"`
}

// ReportChange is a damage report's filing (the request's fields), a
// user's answer (Note, Amount when the claim changes) or an admin's
// decision (Decision, Note, Amount approved).
type ReportChange struct {
	ID          string `json:"id"`
	Incident    string `json:"inc,omitempty"`
	Category    string `json:"cat,omitempty"`
	Description string `json:"desc,omitempty"`
	Currency    string `json:"cur,omitempty"`
	Decision    string `json:"dec,omitempty"`
	Note        string `json:"note,omitempty"`
	Amount      *int64 `json:"amt,omitempty"`
}
