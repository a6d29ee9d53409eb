package client

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/salamander-chat/salamander"
)

// Every method below fails over between sites as the package documentation
// describes, and returns a *salamander.Error for a final API error. Besides
// the codes listed per method, any method may return unauthorized (missing,
// expired or revoked token), invalid_request, too_large and internal; when
// ctx ends first the error wraps ctx.Err().

// SignUp creates an account and signs in as it, keeping the session's token
// for later calls. If a failover hid the outcome of an earlier attempt and
// the retry finds the name taken, SignUp logs in with the same password and
// returns that session when it succeeds. A name the API would refuse is
// refused here, before any site is asked (older sites hung on some).
// Codes: conflict (name taken), too_many_requests (too many sign-ups from
// this address).
func (c *Client) SignUp(ctx context.Context, name, displayName, password string) (salamander.Session, error) {
	if err := salamander.ValidateUserName(name); err != nil {
		return salamander.Session{}, err
	}
	req := salamander.SignUpRequest{Name: name, DisplayName: displayName, Password: password}
	var s salamander.Session
	retried, err := c.call(ctx, http.MethodPost, "/v1/signup", req, &s)
	if err != nil {
		if retried && salamander.ErrorCode(err) == salamander.CodeConflict {
			if s, lerr := c.Login(ctx, name, password); lerr == nil {
				return s, nil
			}
		}
		return salamander.Session{}, err
	}
	c.setSession(s)
	return s, nil
}

// Login signs in and keeps the session's token for later calls. It brings
// the device token this client holds for name (DeviceToken), so that
// others' failed logins for the account do not lock this device out.
// Codes: unauthorized (unknown user or wrong password), too_many_requests
// (too many failed logins for the account, or this device, or from this
// address).
func (c *Client) Login(ctx context.Context, name, password string) (salamander.Session, error) {
	var s salamander.Session
	req := salamander.LoginRequest{Name: name, Password: password, Device: c.DeviceToken(name)}
	_, err := c.call(ctx, http.MethodPost, "/v1/login", req, &s)
	if err != nil && req.Device != "" && salamander.ErrorCode(err) == salamander.CodeInvalid {
		// A site of a version before device tokens refuses the field
		// (unknown fields are refused): sign in as a new device there.
		req.Device = ""
		_, err = c.call(ctx, http.MethodPost, "/v1/login", req, &s)
	}
	if err != nil {
		return salamander.Session{}, err
	}
	c.setSession(s)
	return s, nil
}

// Logout revokes the client's token at every site and forgets it.
func (c *Client) Logout(ctx context.Context) error {
	return c.logout(ctx, "/v1/logout")
}

// LogoutAll revokes every token of the signed-in user at every site, and
// forgets the client's own.
func (c *Client) LogoutAll(ctx context.Context) error {
	return c.logout(ctx, "/v1/logout?all=true")
}

func (c *Client) logout(ctx context.Context, path string) error {
	retried, err := c.call(ctx, http.MethodPost, path, nil, nil)
	// After an unseen success the retry is refused: the token is revoked.
	if err != nil && !(retried && salamander.ErrorCode(err) == salamander.CodeUnauthorized) {
		return err
	}
	c.SetToken("")
	return nil
}

// ChangePassword changes the signed-in user's password from current to
// newPassword. Every other session of the account ends, at every site, and
// every device token issued before it: the client keeps signed in with the
// new session the site answers with (and the new device token, in place
// of the old one), and its Subscription reconnects with it. A request or
// connection of this client refused meanwhile with the old session goes
// again with the new one. If a failover hid the outcome of an earlier
// attempt and the retry finds the session ended, ChangePassword logs in
// with the new password and returns that session when it succeeds.
// Codes: forbidden (the current password is wrong, or the account is
// suspended), invalid_request (a new password the API refuses: see
// salamander.ValidatePassword; or the same as the current one),
// too_many_requests (too many wrong current passwords with this session,
// or failed logins from this address), conflict (another change landed at the same moment).
func (c *Client) ChangePassword(ctx context.Context, current, newPassword string) (salamander.Session, error) {
	if err := salamander.ValidatePassword(newPassword); err != nil {
		return salamander.Session{}, err
	}
	user := c.UserName()
	end := c.beginRenewal()
	defer end()
	// Its own requests must not wait for the change they make.
	own := context.WithValue(ctx, renewalKey{}, true)
	var s salamander.Session
	req := salamander.ChangePasswordRequest{CurrentPassword: current, NewPassword: newPassword}
	retried, err := c.call(own, http.MethodPost, "/v1/me/password", req, &s)
	if err != nil {
		if retried && salamander.ErrorCode(err) == salamander.CodeUnauthorized && user != "" {
			if s, lerr := c.Login(own, user, newPassword); lerr == nil {
				return s, nil
			}
		}
		return salamander.Session{}, err
	}
	if s.Device == "" {
		// The old device token ended with the change.
		c.SetDeviceToken(s.User.Name, "")
	}
	c.setSession(s)
	return s, nil
}

// Me returns the signed-in user's profile.
func (c *Client) Me(ctx context.Context) (salamander.User, error) {
	var u salamander.User
	if _, err := c.call(ctx, http.MethodGet, "/v1/me", nil, &u); err != nil {
		return salamander.User{}, err
	}
	c.mu.Lock()
	c.user = u.Name
	c.mu.Unlock()
	return u, nil
}

// UpdateProfile changes the fields of the signed-in user's profile that p
// sets, and returns the new profile.
func (c *Client) UpdateProfile(ctx context.Context, p salamander.ProfileRequest) (salamander.User, error) {
	var u salamander.User
	if _, err := c.call(ctx, http.MethodPatch, "/v1/me", p, &u); err != nil {
		return salamander.User{}, err
	}
	return u, nil
}

// User returns a user's public profile. Codes: not_found.
func (c *Client) User(ctx context.Context, name string) (salamander.User, error) {
	var u salamander.User
	if _, err := c.call(ctx, http.MethodGet, "/v1/users/"+url.PathEscape(name), nil, &u); err != nil {
		return salamander.User{}, err
	}
	return u, nil
}

// AddFriend adds a user to the signed-in user's friends and returns their
// profile. Adding someone again is not an error. Codes: not_found,
// invalid_request (yourself).
func (c *Client) AddFriend(ctx context.Context, name string) (salamander.User, error) {
	var u salamander.User
	if _, err := c.call(ctx, http.MethodPost, "/v1/friends", salamander.FriendRequest{Name: name}, &u); err != nil {
		return salamander.User{}, err
	}
	return u, nil
}

// Friends returns the signed-in user's friends.
func (c *Client) Friends(ctx context.Context) ([]salamander.User, error) {
	var r struct {
		Friends []salamander.User `json:"friends"`
	}
	if _, err := c.call(ctx, http.MethodGet, "/v1/friends", nil, &r); err != nil {
		return nil, err
	}
	return r.Friends, nil
}

// Rooms returns the rooms the signed-in user is a member of, most recently
// active first, each with its unread count and last message, reading every
// page of GET /v1/rooms. Their read markers feed Unread.
func (c *Client) Rooms(ctx context.Context) ([]salamander.Room, error) {
	var rooms []salamander.Room
	next := ""
	for {
		var page salamander.RoomsPage
		path := "/v1/rooms"
		if next != "" {
			path += "?after=" + url.QueryEscape(next)
		}
		if _, err := c.call(ctx, http.MethodGet, path, nil, &page); err != nil {
			return nil, err
		}
		for i := range page.Rooms {
			c.observeRoom(&page.Rooms[i])
		}
		rooms = append(rooms, page.Rooms...)
		if page.Next == "" || page.Next == next {
			break
		}
		next = page.Next
	}
	// Pages go by room id, each ordered by activity: order them all.
	slices.SortStableFunc(rooms, func(a, b salamander.Room) int {
		if c := roomActivity(b).Compare(roomActivity(a)); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return rooms, nil
}

// roomActivity is when a room was last active: its last message, or its
// creation.
func roomActivity(r salamander.Room) time.Time {
	if r.LastMessage != nil {
		return r.LastMessage.SentAt
	}
	return r.CreatedAt
}

// Room returns one room. Codes: not_found, forbidden (not a member).
func (c *Client) Room(ctx context.Context, roomID string) (salamander.Room, error) {
	return c.roomCall(ctx, http.MethodGet, roomPath(roomID, ""), nil)
}

// DirectRoom returns the 1:1 room with another user, creating it if there is
// none yet. There is exactly one such room per pair. Codes: not_found.
func (c *Client) DirectRoom(ctx context.Context, with string) (salamander.Room, error) {
	return c.roomCall(ctx, http.MethodPost, "/v1/rooms/direct", salamander.DirectRoomRequest{With: with})
}

// CreateGroup creates a group room with the signed-in user and members.
// Codes: not_found (unknown member).
func (c *Client) CreateGroup(ctx context.Context, name string, members []string) (salamander.Room, error) {
	// One client id for every attempt: a retry after a lost answer gets the
	// room the first attempt created instead of a second one.
	req := salamander.GroupRoomRequest{Name: name, Members: members, ClientID: NewClientID()}
	return c.roomCall(ctx, http.MethodPost, "/v1/rooms/group", req)
}

// Invite adds users to a group room and returns the room.
// Codes: not_found, forbidden (not a member), invalid_request (a 1:1 room),
// too_large (over the member limit).
func (c *Client) Invite(ctx context.Context, roomID string, users ...string) (salamander.Room, error) {
	return c.roomCall(ctx, http.MethodPost, roomPath(roomID, "/invite"), salamander.InviteRequest{Users: users})
}

// Leave removes the signed-in user from a group room. If a failover hid an
// earlier attempt's success, the retry's forbidden answer (no longer a
// member) counts as success. Codes: not_found, forbidden, invalid_request
// (a 1:1 room).
func (c *Client) Leave(ctx context.Context, roomID string) error {
	retried, err := c.call(ctx, http.MethodPost, roomPath(roomID, "/leave"), nil, nil)
	if err != nil && retried && salamander.ErrorCode(err) == salamander.CodeForbidden {
		return nil
	}
	return err
}

// Rename renames a group room and returns it. Codes: not_found, forbidden,
// invalid_request (a 1:1 room, or a bad name).
func (c *Client) Rename(ctx context.Context, roomID, name string) (salamander.Room, error) {
	return c.roomCall(ctx, http.MethodPost, roomPath(roomID, "/rename"), salamander.RenameRequest{Name: name})
}

// HistoryQuery selects a page of a room's history. With neither Before nor
// After set it selects the newest messages.
type HistoryQuery struct {
	// Before selects messages older than this seq (0: unset).
	Before uint64
	// After selects messages newer than this seq (0: unset, unless
	// Forward).
	After uint64
	// Forward pages forward from After even when it is 0: from a room's
	// first message.
	Forward bool
	// Limit is the page size (0: the server's default; at most
	// salamander.MaxPageSize).
	Limit int
}

// History returns a page of a room's messages in ascending seq order. The
// newest page also lists, under Held, the caller's own messages to the
// room that were acknowledged held and are not placed yet (see
// SendWithID). Codes: not_found, forbidden.
func (c *Client) History(ctx context.Context, roomID string, q HistoryQuery) (salamander.HistoryPage, error) {
	v := url.Values{}
	if q.Before > 0 {
		v.Set("before", strconv.FormatUint(q.Before, 10))
	}
	if q.After > 0 || q.Forward {
		v.Set("after", strconv.FormatUint(q.After, 10))
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	path := roomPath(roomID, "/messages")
	if len(v) > 0 {
		path += "?" + v.Encode()
	}
	var p salamander.HistoryPage
	if _, err := c.call(ctx, http.MethodGet, path, nil, &p); err != nil {
		return salamander.HistoryPage{}, err
	}
	return p, nil
}

// MarkRead moves the signed-in user's read marker in a room to seq.
// Codes: not_found, forbidden.
func (c *Client) MarkRead(ctx context.Context, roomID string, seq uint64) error {
	if _, err := c.call(ctx, http.MethodPost, roomPath(roomID, "/read"), salamander.ReadRequest{Seq: seq}, nil); err != nil {
		return err
	}
	if me := c.UserName(); me != "" {
		c.observeRead(roomID, me, seq)
	}
	return nil
}

// SetTyping tells the room's other members that the signed-in user is (or
// stopped) typing. It is ephemeral: nothing is stored. Codes: not_found,
// forbidden.
func (c *Client) SetTyping(ctx context.Context, roomID string, typing bool) error {
	_, err := c.call(ctx, http.MethodPost, roomPath(roomID, "/typing"), salamander.TypingRequest{Typing: typing}, nil)
	return err
}

// Sync returns stored events for the signed-in user after cursor ("" for
// all), at most limit of them (0: the server's default). Call again with
// the result's Cursor at once while More is true. Sync does not touch the
// Client's own cursor (see Subscribe). Its Held lists the caller's own
// messages, in every room, that were acknowledged held and are not placed
// yet (see SendWithID). Codes: invalid_request (malformed cursor).
func (c *Client) Sync(ctx context.Context, cursor string, limit int) (salamander.SyncResult, error) {
	v := url.Values{}
	if cursor != "" {
		v.Set("cursor", cursor)
	}
	if limit > 0 {
		v.Set("limit", strconv.Itoa(limit))
	}
	path := "/v1/sync"
	if len(v) > 0 {
		path += "?" + v.Encode()
	}
	var r salamander.SyncResult
	if _, err := c.call(ctx, http.MethodGet, path, nil, &r); err != nil {
		return salamander.SyncResult{}, err
	}
	return r, nil
}

// Presence returns whether each of users has a device connected anywhere
// (or that it is hidden from the caller), for any number of users: they
// are asked salamander.MaxPresenceQuery at a time.
func (c *Client) Presence(ctx context.Context, users ...string) ([]salamander.Presence, error) {
	// A query names at most MaxPresenceQuery users: more are asked in turn.
	var out []salamander.Presence
	for len(users) > 0 {
		n := min(len(users), salamander.MaxPresenceQuery)
		path := "/v1/presence?" + url.Values{"users": {strings.Join(users[:n], ",")}}.Encode()
		var r struct {
			Presence []salamander.Presence `json:"presence"`
		}
		if _, err := c.call(ctx, http.MethodGet, path, nil, &r); err != nil {
			return nil, err
		}
		out = append(out, r.Presence...)
		users = users[n:]
	}
	return out, nil
}

func (c *Client) roomCall(ctx context.Context, method, path string, in any) (salamander.Room, error) {
	var r salamander.Room
	if _, err := c.call(ctx, method, path, in, &r); err != nil {
		return salamander.Room{}, err
	}
	c.observeRoom(&r)
	return r, nil
}

func roomPath(roomID, suffix string) string {
	return "/v1/rooms/" + url.PathEscape(roomID) + suffix
}
