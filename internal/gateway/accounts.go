package gateway

import (
	"errors"
	"net/http"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/internal/jsstore"
)

// Account records live in the accounts stream under one subject per user
// and concern; "user.NAME" is also the uniqueness key for sign-up.
func userKey(name string) string    { return "user." + name }
func sessionKey(name string) string { return "sess." + name }
func friendKey(name string) string  { return "friend." + name }

func (g *Gateway) handleSignUp(w http.ResponseWriter, r *http.Request) {
	if err := g.serving(); err != nil {
		writeError(w, g.log, r, err)
		return
	}
	var req salamander.SignUpRequest
	if err := decodeJSON(w, r, &req); err != nil {
		writeError(w, g.log, r, err)
		return
	}
	if req.DisplayName == "" {
		req.DisplayName = req.Name
	}
	for _, err := range []error{salamander.ValidateUserName(req.Name), salamander.ValidateDisplayName(req.DisplayName),
		salamander.ValidatePassword(req.Password)} {
		if err != nil {
			writeError(w, g.log, r, err)
			return
		}
	}
	hash, err := g.hashPassword(req.Password)
	if err != nil {
		writeError(w, g.log, r, err)
		return
	}
	rec := salamander.Record{Type: salamander.RecUserCreated, User: req.Name, DisplayName: &req.DisplayName, PasswordHash: hash}
	_, _, err = g.commit(r.Context(), jsstore.AccountsStream, userKey(req.Name), rec, jsstore.AppendOptions{ExpectNew: true})
	if errors.Is(err, jsstore.ErrExists) {
		writeError(w, g.log, r, salamander.Errorf(salamander.CodeConflict, "user name %q is taken", req.Name))
		return
	}
	if err != nil {
		writeError(w, g.log, r, err)
		return
	}
	g.writeSession(w, r, http.StatusCreated, req.Name)
}

func (g *Gateway) handleLogin(w http.ResponseWriter, r *http.Request) {
	if err := g.serving(); err != nil {
		writeError(w, g.log, r, err)
		return
	}
	var req salamander.LoginRequest
	if err := decodeJSON(w, r, &req); err != nil {
		writeError(w, g.log, r, err)
		return
	}
	if len(req.Name) > 64 || len(req.Password) > salamander.MaxPasswordBytes {
		writeError(w, g.log, r, salamander.Errorf(salamander.CodeUnauthorized, "wrong user name or password"))
		return
	}
	if !g.logins.allow(req.Name) {
		w.Header().Set("Retry-After", "10")
		writeError(w, g.log, r, salamander.Errorf(salamander.CodeTooManyRequests,
			"too many login attempts for this account; wait a little"))
		return
	}
	hash, _, err := g.cfg.View.Credentials(r.Context(), req.Name)
	if salamander.ErrorCode(err) == salamander.CodeNotFound && salamander.ValidateUserName(req.Name) == nil {
		// Perhaps signed up at another site a moment ago.
		if err := g.confirmNegative(r.Context(), jsstore.AccountsStream); err != nil {
			writeError(w, g.log, r, err)
			return
		}
		hash, _, err = g.cfg.View.Credentials(r.Context(), req.Name)
	}
	if err != nil && salamander.ErrorCode(err) != salamander.CodeNotFound {
		writeError(w, g.log, r, err)
		return
	}
	if !g.checkPassword(hash, req.Password) {
		g.logins.failed(req.Name)
		writeError(w, g.log, r, salamander.Errorf(salamander.CodeUnauthorized, "wrong user name or password"))
		return
	}
	g.writeSession(w, r, http.StatusOK, req.Name)
}

func (g *Gateway) writeSession(w http.ResponseWriter, r *http.Request, status int, name string) {
	token, exp, err := g.issueToken(name)
	if err != nil {
		writeError(w, g.log, r, err)
		return
	}
	u, err := g.cfg.View.User(r.Context(), name)
	if err != nil {
		writeError(w, g.log, r, err)
		return
	}
	writeJSON(w, status, salamander.Session{Token: token, ExpiresAt: exp, User: u})
}

func (g *Gateway) handleLogout(w http.ResponseWriter, r *http.Request, c claims) {
	rec := salamander.Record{Type: salamander.RecSessionRevoked, User: c.User, Session: c.Session}
	switch r.URL.Query().Get("all") {
	case "", "false":
	case "true":
		rec = salamander.Record{Type: salamander.RecUserRevoked, User: c.User}
	default:
		writeError(w, g.log, r, salamander.Errorf(salamander.CodeInvalid, "all must be true or false"))
		return
	}
	if _, _, err := g.commit(r.Context(), jsstore.AccountsStream, sessionKey(c.User), rec, jsstore.AppendOptions{}); err != nil {
		writeError(w, g.log, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (g *Gateway) handleMe(w http.ResponseWriter, r *http.Request, c claims) {
	u, err := g.cfg.View.User(r.Context(), c.User)
	if err != nil {
		writeError(w, g.log, r, err)
		return
	}
	writeJSON(w, http.StatusOK, u)
}

func (g *Gateway) handleUpdateProfile(w http.ResponseWriter, r *http.Request, c claims) {
	var req salamander.ProfileRequest
	if err := decodeJSON(w, r, &req); err != nil {
		writeError(w, g.log, r, err)
		return
	}
	if req.DisplayName == nil && req.Status == nil {
		writeError(w, g.log, r, salamander.Errorf(salamander.CodeInvalid, "nothing to change: give display_name and/or status"))
		return
	}
	if req.DisplayName != nil {
		if err := salamander.ValidateDisplayName(*req.DisplayName); err != nil {
			writeError(w, g.log, r, err)
			return
		}
	}
	if req.Status != nil {
		if err := salamander.ValidateStatus(*req.Status); err != nil {
			writeError(w, g.log, r, err)
			return
		}
	}
	rec := salamander.Record{Type: salamander.RecProfileChanged, User: c.User, DisplayName: req.DisplayName, Status: req.Status}
	if _, _, err := g.commit(r.Context(), jsstore.AccountsStream, userKey(c.User), rec, jsstore.AppendOptions{}); err != nil {
		writeError(w, g.log, r, err)
		return
	}
	g.handleMe(w, r, c)
}

func (g *Gateway) handleUser(w http.ResponseWriter, r *http.Request, _ claims) {
	name := r.PathValue("name")
	if salamander.ValidateUserName(name) != nil {
		writeError(w, g.log, r, salamander.Errorf(salamander.CodeNotFound, "no user %q", name))
		return
	}
	u, err := g.lookupUser(r.Context(), name)
	if err != nil {
		writeError(w, g.log, r, err)
		return
	}
	writeJSON(w, http.StatusOK, u)
}

func (g *Gateway) handleFriends(w http.ResponseWriter, r *http.Request, c claims) {
	friends, err := g.cfg.View.Friends(r.Context(), c.User)
	if err != nil {
		writeError(w, g.log, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"friends": friends})
}

func (g *Gateway) handleAddFriend(w http.ResponseWriter, r *http.Request, c claims) {
	var req salamander.FriendRequest
	if err := decodeJSON(w, r, &req); err != nil {
		writeError(w, g.log, r, err)
		return
	}
	if err := salamander.ValidateUserName(req.Name); err != nil {
		writeError(w, g.log, r, err)
		return
	}
	if req.Name == c.User {
		writeError(w, g.log, r, salamander.Errorf(salamander.CodeInvalid, "you cannot add yourself as a friend"))
		return
	}
	friend, err := g.lookupUser(r.Context(), req.Name)
	if err != nil {
		writeError(w, g.log, r, err)
		return
	}
	rec := salamander.Record{Type: salamander.RecFriendAdded, User: c.User, Friend: req.Name}
	opt := jsstore.AppendOptions{MsgID: "friend:" + c.User + ":" + req.Name}
	if _, _, err := g.commit(r.Context(), jsstore.AccountsStream, friendKey(c.User), rec, opt); err != nil {
		writeError(w, g.log, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, friend)
}
