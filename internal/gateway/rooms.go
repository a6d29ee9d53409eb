package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/internal/jsstore"
)

// directRoomID is the one id the 1:1 room of a pair can have, whoever
// creates it and wherever: uniqueness then reduces to "the first record on
// the room's subject wins".
func directRoomID(a, b string) string {
	if b < a {
		a, b = b, a
	}
	sum := sha256.Sum256([]byte(a + "\n" + b))
	return "d_" + hex.EncodeToString(sum[:16])
}

// handleRooms answers GET /v1/rooms: a page of the caller's rooms (see
// view.RoomsOf); when more follow, next names where the next page starts
// (?after=).
func (g *Gateway) handleRooms(w http.ResponseWriter, r *http.Request, c claims) {
	limit, err := queryLimit(r, salamander.MaxRoomsPage, salamander.MaxRoomsPage)
	if err != nil {
		writeError(w, g.log, r, err)
		return
	}
	after := r.URL.Query().Get("after")
	if after != "" && !salamander.ValidRoomID(after) {
		writeError(w, g.log, r, salamander.Errorf(salamander.CodeInvalid, "after must be a page's next, as GET /v1/rooms gave it"))
		return
	}
	rooms, next, err := g.cfg.View.RoomsOf(r.Context(), c.User, after, limit)
	if err != nil {
		writeError(w, g.log, r, err)
		return
	}
	writeJSON(w, http.StatusOK, salamander.RoomsPage{Rooms: rooms, Next: next})
}

func (g *Gateway) handleRoom(w http.ResponseWriter, r *http.Request, c claims) {
	room, err := g.memberRoom(r.Context(), r.PathValue("id"), c.User)
	if err != nil {
		writeError(w, g.log, r, err)
		return
	}
	writeJSON(w, http.StatusOK, room)
}

// memberRoom loads a room the caller must be a member of. Codes: not_found,
// forbidden (see notMember), unavailable.
func (g *Gateway) memberRoom(ctx context.Context, id, user string) (salamander.Room, error) {
	return g.memberLookup(ctx, id, user, g.cfg.View.Room)
}

// memberRoomHead is memberRoom without the room's members and read
// markers (view.RoomHead): a read marker of a group of 256 would copy
// them all otherwise.
func (g *Gateway) memberRoomHead(ctx context.Context, id, user string) (salamander.Room, error) {
	return g.memberLookup(ctx, id, user, g.cfg.View.RoomHead)
}

// memberLookup reads a room with look, confirming a "no such room" or
// "not a member" against the log first.
func (g *Gateway) memberLookup(ctx context.Context, id, user string,
	look func(ctx context.Context, id, user string) (salamander.Room, error)) (salamander.Room, error) {
	if !salamander.ValidRoomID(id) {
		return salamander.Room{}, errNoRoom(id)
	}
	room, err := look(ctx, id, user)
	if code := salamander.ErrorCode(err); code != salamander.CodeNotFound && code != salamander.CodeForbidden {
		return room, err
	}
	if err := g.confirmNegative(ctx, g.cfg.Store.RoomStream(id)); err != nil {
		return salamander.Room{}, err
	}
	room, err = look(ctx, id, user)
	switch salamander.ErrorCode(err) {
	case salamander.CodeNotFound:
		return salamander.Room{}, errNoRoom(id)
	case salamander.CodeForbidden:
		return salamander.Room{}, notMember(id)
	}
	return room, err
}

// errNoRoom is the answer for a room that does not exist.
func errNoRoom(id string) error {
	return salamander.Errorf(salamander.CodeNotFound, "no room %q", id)
}

// notMember is the answer to a user who is not a member of room id. For a
// 1:1 room it is the very answer for a room that does not exist (after the
// same work): its id is derived from the two names, so anyone could
// otherwise learn whether two users share a room. A group room's id is
// random (or derived from its creator's client id), known only to those
// told, and a member who left is told "forbidden".
func notMember(id string) error {
	if strings.HasPrefix(id, "d_") {
		return errNoRoom(id)
	}
	return salamander.Errorf(salamander.CodeForbidden, "you are not a member of room %s", id)
}

// requireMember checks that user is a member of room id without building
// the room: a "yes" from the read model stands, a "no" is confirmed against
// the log as memberRoom does. Codes: not_found, forbidden, unavailable.
func (g *Gateway) requireMember(ctx context.Context, id, user string) error {
	if member, _ := g.cfg.View.IsMember(ctx, id, user); member {
		return nil
	}
	_, err := g.memberRoomHead(ctx, id, user)
	return err
}

func (g *Gateway) handleDirectRoom(w http.ResponseWriter, r *http.Request, c claims) {
	var req salamander.DirectRoomRequest
	if err := decodeJSON(w, r, &req); err != nil {
		writeError(w, g.log, r, err)
		return
	}
	if err := salamander.ValidateUserName(req.With); err != nil {
		writeError(w, g.log, r, err)
		return
	}
	if req.With == c.User {
		writeError(w, g.log, r, salamander.Errorf(salamander.CodeInvalid, "a 1:1 room needs another user"))
		return
	}
	if _, err := g.lookupUser(r.Context(), req.With); err != nil {
		writeError(w, g.log, r, err)
		return
	}
	id := directRoomID(c.User, req.With)
	if room, err := g.cfg.View.Room(r.Context(), id, c.User); err == nil {
		writeJSON(w, http.StatusOK, room)
		return
	}
	g.createRoom(w, r, c, salamander.Record{Type: salamander.RecRoomCreated, Room: id, Kind: salamander.RoomDirect,
		Members: []string{c.User, req.With}, By: c.User})
}

// createRoom appends rec, whose room id must be new, and answers with the
// room: 201 when this request created it, 200 when the log already held it
// (a 1:1 room created concurrently elsewhere, or a retried group creation
// with the same client id), after this site has applied it.
func (g *Gateway) createRoom(w http.ResponseWriter, r *http.Request, c claims, rec salamander.Record) {
	id := rec.Room
	status := http.StatusCreated
	_, _, err := g.commit(r.Context(), g.cfg.Store.RoomStream(id), id, rec, jsstore.AppendOptions{ExpectNew: true})
	if errors.Is(err, jsstore.ErrExists) {
		status = http.StatusOK
		err = g.waitRoom(r.Context(), id)
	}
	if err != nil {
		writeError(w, g.log, r, err)
		return
	}
	room, err := g.cfg.View.Room(r.Context(), id, c.User)
	if err != nil {
		writeError(w, g.log, r, err)
		return
	}
	writeJSON(w, status, room)
}

// waitRoom waits until this site's read model has the room. It polls: the
// "already exists" answer may come while the winner's record is still
// being proposed, before the stream's head (what WaitApplied could wait
// for) includes it.
func (g *Gateway) waitRoom(ctx context.Context, id string) error {
	ctx, cancel := context.WithTimeout(ctx, g.cfg.WriteTimeout)
	defer cancel()
	for {
		if _, err := g.cfg.View.RoomHead(ctx, id, ""); salamander.ErrorCode(err) != salamander.CodeNotFound {
			return nil
		}
		select {
		case <-ctx.Done():
			return salamander.Errorf(salamander.CodeUnavailable, "this site is catching up with the log; try again")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (g *Gateway) handleGroupRoom(w http.ResponseWriter, r *http.Request, c claims) {
	var req salamander.GroupRoomRequest
	if err := decodeJSON(w, r, &req); err != nil {
		writeError(w, g.log, r, err)
		return
	}
	if err := salamander.ValidateRoomName(req.Name); err != nil {
		writeError(w, g.log, r, err)
		return
	}
	members, err := g.validUsers(r.Context(), append([]string{c.User}, req.Members...))
	if err != nil {
		writeError(w, g.log, r, err)
		return
	}
	id := "g_" + randomHex(16)
	if req.ClientID != "" {
		if err := salamander.ValidateClientID(req.ClientID); err != nil {
			writeError(w, g.log, r, err)
			return
		}
		// The same creator and client id always name the same room, so a
		// retry after a lost answer finds the first attempt's room.
		sum := sha256.Sum256([]byte(c.User + "\n" + req.ClientID))
		id = "g_" + hex.EncodeToString(sum[:16])
	}
	if others := len(members) - 1; others > 0 {
		if _, err := g.budgets.spend(&g.budgets.invite, c.User, g.clientAddr(r), others); err != nil {
			writeError(w, g.log, r, err)
			return
		}
	}
	g.createRoom(w, r, c, salamander.Record{Type: salamander.RecRoomCreated, Room: id, Kind: salamander.RoomGroup,
		Name: req.Name, Members: members, By: c.User})
}

// validUsers checks that every name is well formed and exists, dropping
// duplicates; the result must fit a group room.
func (g *Gateway) validUsers(ctx context.Context, names []string) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	for _, n := range names {
		if err := salamander.ValidateUserName(n); err != nil {
			return nil, err
		}
		if seen[n] {
			continue
		}
		if len(out) == salamander.MaxGroupMembers {
			return nil, errRoomFull
		}
		if _, err := g.lookupUser(ctx, n); err != nil {
			return nil, err
		}
		seen[n] = true
		out = append(out, n)
	}
	return out, nil
}

var errRoomFull = salamander.Errorf(salamander.CodeTooLarge, "a group room holds at most %d members", salamander.MaxGroupMembers)

func (g *Gateway) groupRoomOf(ctx context.Context, id, user string) (salamander.Room, error) {
	room, err := g.memberRoom(ctx, id, user)
	if err != nil {
		return room, err
	}
	if room.Kind != salamander.RoomGroup {
		return room, salamander.Errorf(salamander.CodeInvalid, "a 1:1 room's members and name cannot change")
	}
	return room, nil
}

func (g *Gateway) handleInvite(w http.ResponseWriter, r *http.Request, c claims) {
	id := r.PathValue("id")
	var req salamander.InviteRequest
	if err := decodeJSON(w, r, &req); err != nil {
		writeError(w, g.log, r, err)
		return
	}
	room, err := g.groupRoomOf(r.Context(), id, c.User)
	if err != nil {
		writeError(w, g.log, r, err)
		return
	}
	if len(req.Users) == 0 {
		writeError(w, g.log, r, salamander.Errorf(salamander.CodeInvalid, "users must name at least one user"))
		return
	}
	users, err := g.validUsers(r.Context(), req.Users)
	if err != nil {
		writeError(w, g.log, r, err)
		return
	}
	// Only those not in the room yet count, against the room's size and
	// the budget: a retry after a lost answer adds no one, and answers
	// the room as it is.
	var added []string
	for _, u := range users {
		if !slices.Contains(room.Members, u) {
			added = append(added, u)
		}
	}
	if len(added) == 0 {
		writeJSON(w, http.StatusOK, room)
		return
	}
	if len(room.Members)+len(added) > salamander.MaxGroupMembers {
		writeError(w, g.log, r, errRoomFull)
		return
	}
	if _, err := g.budgets.spend(&g.budgets.invite, c.User, g.clientAddr(r), len(added)); err != nil {
		writeError(w, g.log, r, err)
		return
	}
	rec := salamander.Record{Type: salamander.RecRoomJoined, Room: id, Members: added, By: c.User}
	g.commitRoomChange(w, r, c, id, rec)
}

func (g *Gateway) handleRename(w http.ResponseWriter, r *http.Request, c claims) {
	id := r.PathValue("id")
	var req salamander.RenameRequest
	if err := decodeJSON(w, r, &req); err != nil {
		writeError(w, g.log, r, err)
		return
	}
	if _, err := g.groupRoomOf(r.Context(), id, c.User); err != nil {
		writeError(w, g.log, r, err)
		return
	}
	if err := salamander.ValidateRoomName(req.Name); err != nil {
		writeError(w, g.log, r, err)
		return
	}
	g.commitRoomChange(w, r, c, id, salamander.Record{Type: salamander.RecRoomRenamed, Room: id, Name: req.Name, By: c.User})
}

func (g *Gateway) commitRoomChange(w http.ResponseWriter, r *http.Request, c claims, id string, rec salamander.Record) {
	if _, _, err := g.commit(r.Context(), g.cfg.Store.RoomStream(id), id, rec, jsstore.AppendOptions{}); err != nil {
		writeError(w, g.log, r, err)
		return
	}
	room, err := g.cfg.View.Room(r.Context(), id, c.User)
	if err != nil {
		writeError(w, g.log, r, err)
		return
	}
	writeJSON(w, http.StatusOK, room)
}

func (g *Gateway) handleLeave(w http.ResponseWriter, r *http.Request, c claims) {
	id := r.PathValue("id")
	if _, err := g.groupRoomOf(r.Context(), id, c.User); err != nil {
		writeError(w, g.log, r, err)
		return
	}
	rec := salamander.Record{Type: salamander.RecRoomLeft, Room: id, User: c.User}
	if _, _, err := g.commit(r.Context(), g.cfg.Store.RoomStream(id), id, rec, jsstore.AppendOptions{}); err != nil {
		writeError(w, g.log, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
