// Package salamander holds the messenger's domain: the users, rooms, messages
// and events that every other package speaks, the limits every input is held
// to, and the registry of error codes that users may see.
//
// It imports nothing internal. The server packages (internal/...) adapt it to
// NATS JetStream, SQLite and HTTP; the Go SDK (package client) uses the same
// wire types, so the API and the SDK can never disagree about a field.
package salamander

import (
	"time"
)

// RoomKind says whether a room is a 1:1 conversation or a group.
type RoomKind string

const (
	// RoomDirect is a 1:1 room. There is exactly one per pair of users; its
	// members never change.
	RoomDirect RoomKind = "direct"
	// RoomGroup is a named room that members invite others into and leave.
	RoomGroup RoomKind = "group"
)

// User is a user's public profile.
type User struct {
	Name        string    `json:"name"`
	DisplayName string    `json:"display_name"`
	Status      string    `json:"status"`
	CreatedAt   time.Time `json:"created_at"`
	// Role is set only in the caller's own profile (GET /v1/me).
	Role string `json:"role,omitempty"`
}

// RoleRequest sets a user's role (PUT /v1/ops/users/{name}/role).
type RoleRequest struct {
	Role string `json:"role"`
}

// Session is what login and sign-up return: a bearer token valid at every
// site until it expires or is revoked.
type Session struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
	User      User      `json:"user"`
	// Device is this device's token for the account: bring it back in
	// LoginRequest.Device, and failed logins of others for the account do
	// not lock this device out (they are counted per device). Keep it
	// with the device across sign-outs; each login renews it.
	Device string `json:"device,omitempty"`
}

// Room is a room as one of its members sees it.
type Room struct {
	ID      string   `json:"id"`
	Kind    RoomKind `json:"kind"`
	Name    string   `json:"name"`
	Members []string `json:"members"`
	// LastSeq is the sequence of the newest message (0 when there is none).
	LastSeq uint64 `json:"last_seq"`
	// LastMessage is the newest message, if any.
	LastMessage *Message `json:"last_message,omitempty"`
	// ReadSeq is the caller's read marker: the newest message they have read.
	ReadSeq uint64 `json:"read_seq"`
	// Unread is how many messages the caller has not read yet.
	Unread uint64 `json:"unread"`
	// ReadMarkers maps every member to their read marker, so a client can
	// compute each message's unread count as receipts arrive.
	ReadMarkers map[string]uint64 `json:"read_markers"`
	CreatedAt   time.Time         `json:"created_at"`
}

// Message is one chat message. Seq numbers a room's messages 1, 2, 3, … in
// the room's single total order, identically at every site.
type Message struct {
	Room     string    `json:"room"`
	Seq      uint64    `json:"seq"`
	Sender   string    `json:"sender"`
	ClientID string    `json:"client_id"`
	Text     string    `json:"text"`
	SentAt   time.Time `json:"sent_at"`
	// Unread is the number of room members who have not read this message
	// yet, as KakaoTalk shows it next to each bubble.
	Unread int `json:"unread"`
	// Held is set on a message that is acknowledged (a quorum of sites
	// holds it) but not placed in the room's order yet: its room's
	// partition was electing a leader. It has no Seq until it is placed,
	// moments after the election, and then arrives as a normal message
	// event with its Seq; it never moves once it has one.
	Held bool `json:"held,omitempty"`
}

// Position is a place in the replicated log: a stream and a sequence in it.
// Positions are the same at every site, which is what lets a client that
// moves between sites resume exactly where it was.
type Position struct {
	Stream string `json:"stream"`
	Seq    uint64 `json:"seq"`
}

// EventType names a change a client is told about, live or through sync.
type EventType string

const (
	// EventMessage: a message was committed to a room (Message is set).
	EventMessage EventType = "message"
	// EventRead: a member's read marker moved (User, Seq set).
	EventRead EventType = "read"
	// EventRoom: a room was created, renamed, or its members changed
	// (Room set; Action says which; User is who acted or who left; Users
	// who joined).
	EventRoom EventType = "room"
	// EventFriend: the caller added a friend (User set).
	EventFriend EventType = "friend"
	// EventTyping is ephemeral: User is typing in RoomID. Never stored.
	EventTyping EventType = "typing"
	// EventPresence is ephemeral: User went Online or offline. Never stored.
	EventPresence EventType = "presence"
	// EventReady is sent once on every WebSocket after the backlog since the
	// client's cursor has been replayed; Cursor is where live events resume.
	EventReady EventType = "ready"
	// EventAck answers a ClientFrame that carried a ClientID, on the same
	// WebSocket: ClientID and RoomID echo the frame's; for a send, Message
	// is the committed message and Duplicate is true when the client id had
	// been used before (Message is then the original).
	EventAck EventType = "ack"
	// EventNack refuses a ClientFrame: Error says why, ClientID and RoomID
	// echo the frame's (when it had them). Codes unavailable and internal
	// mean "resend, here or at another site, with the same client id".
	EventNack EventType = "nack"
	// EventIncident: an incident was announced or updated (Incident is
	// set); a resolved one should be taken down. Sent to every connected
	// client; open incidents are also in every sync answer.
	EventIncident EventType = "incident"
	// EventMove asks the clients of a drained site (Site) to reconnect to
	// another site now; the SDK does so by itself.
	EventMove EventType = "move"
)

// Room actions carried by EventRoom.
const (
	ActionCreated = "created"
	ActionJoined  = "joined"
	ActionLeft    = "left"
	ActionRenamed = "renamed"
)

// Event is a change delivered to a client. Stored events carry Pos; the
// ephemeral ones (typing, presence, ready) do not.
type Event struct {
	Type   EventType `json:"type"`
	Pos    *Position `json:"pos,omitempty"`
	RoomID string    `json:"room_id,omitempty"`
	// Message is set for EventMessage.
	Message *Message `json:"message,omitempty"`
	// Room is set for EventRoom: the room as it is after the change.
	Room   *Room  `json:"room,omitempty"`
	Action string `json:"action,omitempty"`
	User   string `json:"user,omitempty"`
	// Users lists the members who joined, for EventRoom with ActionJoined.
	Users []string `json:"users,omitempty"`
	Seq   uint64   `json:"seq,omitempty"`
	// Online is set for EventPresence: the user is now online.
	Online bool `json:"online,omitempty"`
	// Typing is set for EventTyping: the user is typing (false: stopped).
	Typing bool      `json:"typing,omitempty"`
	Cursor string    `json:"cursor,omitempty"`
	At     time.Time `json:"at,omitempty"`
	// ClientID, Duplicate and Error are set on EventAck and EventNack.
	ClientID  string `json:"client_id,omitempty"`
	Duplicate bool   `json:"duplicate,omitempty"`
	Error     *Error `json:"error,omitempty"`
	// Incident is set for EventIncident, Site for EventMove.
	Incident *Incident `json:"incident,omitempty"`
	Site     string    `json:"site,omitempty"`
	// Incidents, on EventReady, are the incidents open now: a client
	// replaces its banners with them (one resolved while it was away is
	// gone from the list).
	Incidents []Incident `json:"incidents,omitempty"`
}

// FrameType names a frame a client sends on its WebSocket.
type FrameType string

const (
	// FrameSend sends a message: RoomID, ClientID and Text are required.
	// It is answered by EventAck (with the message) or EventNack.
	FrameSend FrameType = "send"
	// FrameTyping says the user is (Typing) or stopped typing in RoomID.
	FrameTyping FrameType = "typing"
	// FrameRead moves the user's read marker in RoomID to Seq.
	FrameRead FrameType = "read"
	// FramePing asks whether the site still serves this socket: ClientID
	// is required, RoomID is not; it is answered at once with an EventAck
	// (or a nack, unavailable, when the site cannot serve). Browsers see
	// no WebSocket control pings, so a page pings this way and moves to
	// another site when no answer comes.
	FramePing FrameType = "ping"
)

// ClientFrame is a JSON text frame a client sends on its WebSocket. A frame
// with a ClientID is answered by exactly one EventAck or EventNack with the
// same ClientID; a frame without one is answered only if it fails. One
// socket's frames for one room are carried out in the order they were sent.
type ClientFrame struct {
	Type     FrameType `json:"type"`
	RoomID   string    `json:"room_id"`
	ClientID string    `json:"client_id,omitempty"`
	Text     string    `json:"text,omitempty"`
	Typing   bool      `json:"typing,omitempty"`
	Seq      uint64    `json:"seq,omitempty"`
}

// SyncResult is what the sync call returns: every stored event for the
// caller since the cursor they gave, and the cursor to give next time. When
// More is true, call again with Cursor at once.
type SyncResult struct {
	Events []Event `json:"events"`
	Cursor string  `json:"cursor"`
	More   bool    `json:"more"`
	// Incidents are the incidents open now, for a banner: a client that
	// was away learns of them here, and of one resolved meanwhile by its
	// absence.
	Incidents []Incident `json:"incidents"`
	// Held are the caller's own messages, to any room, that are
	// acknowledged but not placed yet (see Message.Held), oldest first
	// per room: each arrives as a message event with its seq once placed.
	Held []Message `json:"held,omitempty"`
}

// SendResult acknowledges a sent message: it is held by a quorum of sites.
// Duplicate is true when the client message id had been sent before and the
// original message is returned instead of a new one.
type SendResult struct {
	Message   Message `json:"message"`
	Duplicate bool    `json:"duplicate"`
}

// RoomsPage is a page of the signed-in user's rooms (GET /v1/rooms):
// pages go by room id (no message moves a room from one to another), and
// each is ordered most recently active first; a caller that reads several
// orders the whole list itself (each room carries its last message).
type RoomsPage struct {
	Rooms []Room `json:"rooms"`
	// Next, when more rooms follow, is where the next page starts:
	// GET /v1/rooms?after=Next.
	Next string `json:"next,omitempty"`
}

// HistoryPage is one page of a room's messages in ascending Seq order.
type HistoryPage struct {
	Messages []Message `json:"messages"`
	// Held are the caller's own messages to the room that are
	// acknowledged but not placed yet (see Message.Held), oldest first; on
	// the newest page only.
	Held []Message `json:"held,omitempty"`
	// More is true when there are further messages in the direction asked.
	More bool `json:"more"`
}

// Presence is whether a user has any device connected at any site, or
// had one within the presence grace (5 s): a device reconnecting
// elsewhere does not show its user offline in between. LastSeen is when
// the last device left.
type Presence struct {
	User     string    `json:"user"`
	Online   bool      `json:"online"`
	LastSeen time.Time `json:"last_seen,omitempty"`
	// Hidden is set when the asker may not see this user's presence
	// (neither a friend they added nor someone they share a room with):
	// Online is then false and LastSeen zero, whatever they are.
	Hidden bool `json:"hidden,omitempty"`
}

// Requests accepted by the API. Every field is validated by the functions in
// limits.go before anything is written.
type (
	SignUpRequest struct {
		Name        string `json:"name"`
		DisplayName string `json:"display_name"`
		Password    string `json:"password"`
	}
	LoginRequest struct {
		Name     string `json:"name"`
		Password string `json:"password"`
		// Device is the Session.Device an earlier sign-up or login of
		// this account gave this device, if any (at most 1,024 bytes).
		Device string `json:"device,omitempty"`
	}
	// ChangePasswordRequest changes the caller's own password (POST
	// /v1/me/password): the current one is checked as a login checks it,
	// the new one must be valid as at sign-up (ValidatePassword) and
	// differ from it.
	ChangePasswordRequest struct {
		CurrentPassword string `json:"current_password"`
		NewPassword     string `json:"new_password"`
	}
	// SetPasswordRequest is an admin's reset of a user's password (POST
	// /v1/ops/users/{name}/password). CurrentPassword is the admin's own,
	// checked as their own change checks it: a stolen session alone does
	// not reset anyone's password.
	SetPasswordRequest struct {
		CurrentPassword string `json:"current_password"`
		NewPassword     string `json:"new_password"`
	}
	ProfileRequest struct {
		DisplayName *string `json:"display_name,omitempty"`
		Status      *string `json:"status,omitempty"`
	}
	FriendRequest struct {
		Name string `json:"name"`
	}
	DirectRoomRequest struct {
		With string `json:"with"`
	}
	GroupRoomRequest struct {
		Name    string   `json:"name"`
		Members []string `json:"members"`
		// ClientID, when set, makes creation idempotent: a retry with the
		// same id returns the room the first attempt created.
		ClientID string `json:"client_id,omitempty"`
	}
	InviteRequest struct {
		Users []string `json:"users"`
	}
	RenameRequest struct {
		Name string `json:"name"`
	}
	SendRequest struct {
		ClientID string `json:"client_id"`
		Text     string `json:"text"`
	}
	ReadRequest struct {
		Seq uint64 `json:"seq"`
	}
	TypingRequest struct {
		Typing bool `json:"typing"`
	}
)

// Roles: what an account may do besides chatting. Operators see the ops
// plane (/v1/ops/…); admins also change roles and take admin actions.
const (
	RoleUser     = "user"
	RoleOperator = "operator"
	RoleAdmin    = "admin"
)

// RoleRank orders roles (0 for an unknown one): a role may do what any
// role of a lower rank may.
func RoleRank(role string) int {
	switch role {
	case RoleUser:
		return 1
	case RoleOperator:
		return 2
	case RoleAdmin:
		return 3
	}
	return 0
}

// AuditEntry is one admin action as the log holds it: who, when, from
// which site, what.
type AuditEntry struct {
	Pos    string    `json:"pos"`
	At     time.Time `json:"at"`
	By     string    `json:"by"` // "" for the admin credential (salamander admin)
	Site   string    `json:"site"`
	Action string    `json:"action"`
	User   string    `json:"user,omitempty"`
	Role   string    `json:"role,omitempty"`
	// Detail names what an ops action was about: an incident, a damage
	// report (with the decision), a drill, a site or a stream.
	Detail string `json:"detail,omitempty"`
}
