package gateway

import (
	"context"
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
	// Spent before the costly hash, and by attempts that find the name
	// taken too: probing for names is what the budget slows.
	if _, err := g.budgets.spend(&g.budgets.signUp, "", g.clientAddr(r), 1); err != nil {
		writeError(w, g.log, r, err)
		return
	}
	hash, err := g.hashPassword(r.Context(), req.Password)
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
	g.writeSession(w, r, http.StatusCreated, req.Name, "")
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
	if req.Name == "" || req.Password == "" {
		writeError(w, g.log, r, salamander.Errorf(salamander.CodeInvalid, "name and password are required"))
		return
	}
	if len(req.Name) > 64 || len(req.Password) > salamander.MaxPasswordBytes {
		writeError(w, g.log, r, errBadLogin)
		return
	}
	if len(req.Device) > maxTokenBytes {
		writeError(w, g.log, r, errDeviceTooLong)
		return
	}
	// Every attempt spends a unit of both budgets before the password is
	// checked, and gives back the one its outcome does not count against:
	// checking first and spending after would let any number of
	// concurrent attempts through a full budget, and each costs a bcrypt
	// comparison (see also hashing).
	addr := g.clientAddr(r)
	// A device that signed in to this account before fails against its
	// own budget, not the account's that anyone may spend (devices.go).
	failures, key := &g.budgets.login, req.Name
	device := g.knownDevice(r.Context(), req.Device, req.Name)
	if device != "" {
		failures, key = &g.budgets.deviceLogin, req.Name+"\x00"+device
	}
	refundFailure, err := g.budgets.spend(failures, key, addr, 1)
	if err != nil {
		writeError(w, g.log, r, err)
		return
	}
	refundSuccess, err := g.budgets.spend(&g.budgets.logins, req.Name, addr, 1)
	if err != nil {
		refundFailure()
		writeError(w, g.log, r, err)
		return
	}
	ok, err := g.login(r.Context(), req.Name, req.Password)
	if err != nil {
		refundFailure() // not a guess that was judged
		refundSuccess()
		writeError(w, g.log, r, err)
		return
	}
	if !ok {
		refundSuccess()
		if g.cfg.View.Suspended(req.Name) {
			// The same answer as to the right password (a guess still
			// counts): 403 to it alone would tell a guesser that it was
			// right — a password its owner may use elsewhere too.
			writeError(w, g.log, r, errSuspended)
			return
		}
		writeError(w, g.log, r, errBadLogin)
		return
	}
	refundFailure()
	if g.cfg.View.Suspended(req.Name) {
		writeError(w, g.log, r, errSuspended)
		return
	}
	g.writeSession(w, r, http.StatusOK, req.Name, device)
}

var errBadLogin = salamander.Errorf(salamander.CodeUnauthorized, "wrong user name or password")

// login checks a name and password. An unknown name costs what a known
// name with a wrong password costs, so that neither the answer nor its
// time tells which names exist: a bcrypt comparison (against a dummy hash
// for an unknown name, see checkPassword), then, for every "no", one round
// trip to the log to catch up with a sign-up acknowledged at another site a
// moment ago, and a second comparison only if that changed the account.
func (g *Gateway) login(ctx context.Context, name, pw string) (bool, error) {
	_, ok, err := g.judgePassword(ctx, name, pw)
	return ok, err
}

// judgePassword is login's check, with the hash pw was found right
// against (a password change names it: see salamander.Record.PrevHash).
func (g *Gateway) judgePassword(ctx context.Context, name, pw string) (string, bool, error) {
	hash, err := g.passwordHash(ctx, name)
	if err != nil {
		return "", false, err
	}
	if ok, err := g.checkPassword(ctx, hash, pw); ok || err != nil {
		return hash, ok, err
	}
	if err := g.confirmNegative(ctx, jsstore.AccountsStream); err != nil {
		return "", false, err
	}
	again, err := g.passwordHash(ctx, name)
	if err != nil || again == hash {
		return "", false, err
	}
	ok, err := g.checkPassword(ctx, again, pw)
	return again, ok, err
}

// passwordHash is name's password hash as this site knows it, "" for a
// name it does not know.
func (g *Gateway) passwordHash(ctx context.Context, name string) (string, error) {
	hash, _, err := g.cfg.View.Credentials(ctx, name)
	if salamander.ErrorCode(err) == salamander.CodeNotFound {
		return "", nil
	}
	return hash, err
}

// writeSession answers a new session of user name on device (a new
// device when "").
func (g *Gateway) writeSession(w http.ResponseWriter, r *http.Request, status int, name, device string) {
	s, err := g.currentSigner() // one key for both tokens
	if err != nil {
		writeError(w, g.log, r, err)
		return
	}
	token, exp, err := g.sessionToken(s, name)
	if err != nil {
		writeError(w, g.log, r, err)
		return
	}
	devToken, err := deviceToken(s, name, device)
	if err != nil {
		writeError(w, g.log, r, err)
		return
	}
	u, err := g.cfg.View.User(r.Context(), name)
	if err != nil {
		writeError(w, g.log, r, err)
		return
	}
	writeJSON(w, status, salamander.Session{Token: token, ExpiresAt: exp, User: u, Device: devToken})
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
	u.Role = g.cfg.View.Role(c.User)
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
