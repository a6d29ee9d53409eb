package gateway

import (
	"net/http"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/internal/jsstore"
)

// Password changes. A user changes their own password with the current
// one (POST /v1/me/password); an admin resets a user's who forgot theirs
// (POST /v1/ops/users/{name}/password, or `salamander admin set-password`).
// Either is a user.password record on the accounts stream (key pw.NAME):
// every site applies it as a "log out everywhere" that also replaces the
// hash, so every session and device token issued before it ends at every
// site, and the old password stops working there. The device that changed
// its own password gets a fresh session in the answer and stays signed in.

func pwKey(name string) string { return "pw." + name }

// errWrongPassword answers a change whose current password is wrong. It is
// 403, not the 401 a login answers: to every client a 401 from a request
// made with a session says that session has ended (the web client and the
// SDK sign out), and this one has not.
var errWrongPassword = salamander.Errorf(salamander.CodeForbidden, "the current password is wrong")

// handleChangePassword changes the caller's password. The current password
// is judged as a login's: a failed-login budget and the address's are
// spent before the bcrypt comparison (and the budget of logins, given back
// on a wrong guess), so a stolen session guesses no faster here than a
// known device can at login. The failures are the session's own, as a
// known device's are at login, not the account's that anyone may spend:
// strangers guessing at /v1/login must not keep the signed-in owner from
// changing the password (the moment they most want to), and a stolen
// session's guesses here must not lock the owner out of login. The answer
// is a new session, like a login's: the request's own session ended with
// every other.
func (g *Gateway) handleChangePassword(w http.ResponseWriter, r *http.Request, c claims) {
	var req salamander.ChangePasswordRequest
	if err := decodeJSON(w, r, &req); err != nil {
		writeError(w, g.log, r, err)
		return
	}
	if req.CurrentPassword == "" || req.NewPassword == "" {
		writeError(w, g.log, r, salamander.Errorf(salamander.CodeInvalid, "current_password and new_password are required"))
		return
	}
	if err := salamander.ValidatePassword(req.NewPassword); err != nil {
		writeError(w, g.log, r, err)
		return
	}
	if req.NewPassword == req.CurrentPassword {
		writeError(w, g.log, r, salamander.Errorf(salamander.CodeInvalid, "new_password must differ from current_password"))
		return
	}
	judged, err := g.reauthenticate(r, c, req.CurrentPassword, errWrongPassword)
	if err != nil {
		writeError(w, g.log, r, err)
		return
	}
	hash, err := g.hashPassword(r.Context(), req.NewPassword)
	if err != nil {
		writeError(w, g.log, r, err)
		return
	}
	// PrevHash: the change applies only if the hash the current password
	// was right against is still the account's where the log places it.
	// This site may not have applied a change or reset made at another a
	// moment ago (a right "yes" is not checked again with the log): a
	// thief knowing the old password must not undo it here.
	rec := salamander.Record{Type: salamander.RecPasswordSet, User: c.User, By: c.User, PrevHash: judged, PasswordHash: hash}
	if _, _, err := g.commit(r.Context(), jsstore.AccountsStream, pwKey(c.User), rec, jsstore.AppendOptions{}); err != nil {
		writeError(w, g.log, r, err)
		return
	}
	if now, _, err := g.cfg.View.Credentials(r.Context(), c.User); err != nil || now != hash {
		// The log refused it: the account was suspended before it (at a
		// site that had not applied the suspension when it took this).
		// Or another change landed before or right after it, which ended
		// the session this one would answer with. If that one set the
		// same new password, it was this change's own earlier attempt
		// whose answer was lost (a client's retry, here at a site that
		// had not applied it yet): it stands, and the answer is the new
		// session the lost answer was.
		if err == nil && !g.cfg.View.Suspended(c.User) {
			if same, cerr := g.checkPassword(r.Context(), now, req.NewPassword); cerr == nil && same {
				g.writeSession(w, r, http.StatusOK, c.User, "")
				return
			}
		}
		err = errSuspended
		if !g.cfg.View.Suspended(c.User) {
			err = salamander.Errorf(salamander.CodeConflict, "another password change was made at the same moment; sign in again")
		}
		writeError(w, g.log, r, err)
		return
	}
	g.writeSession(w, r, http.StatusOK, c.User, "")
}

// reauthenticate judges password as the caller's current one, as a login
// is judged: the session's own failed-login budget (a known device's at
// login) and the address's are spent before the bcrypt comparison, and the
// budget of logins too; a "no" is checked again after catching up with the
// log. It returns the hash the password was right against, or wrong when
// it is not the caller's password.
func (g *Gateway) reauthenticate(r *http.Request, c claims, password string, wrong error) (string, error) {
	if len(password) > salamander.MaxPasswordBytes {
		// No password is that long: wrong, without a comparison (as login).
		return "", wrong
	}
	addr := g.clientAddr(r)
	refundFailure, err := g.budgets.spend(&g.budgets.deviceLogin, c.User+"\x00session:"+c.Session, addr, 1)
	if err != nil {
		return "", err
	}
	refundSuccess, err := g.budgets.spend(&g.budgets.logins, c.User, addr, 1)
	if err != nil {
		refundFailure()
		return "", err
	}
	// As a login: a "no" is checked again after catching up with the
	// log, where a change made at another site a moment ago may be.
	judged, ok, err := g.judgePassword(r.Context(), c.User, password)
	if err != nil {
		refundFailure()
		refundSuccess()
		return "", err
	}
	if !ok {
		refundSuccess()
		return "", wrong
	}
	refundFailure()
	return judged, nil
}

// errWrongOwnPassword answers an admin's reset whose current_password is
// not the admin's own (403, as errWrongPassword, for the same reason).
var errWrongOwnPassword = salamander.Errorf(salamander.CodeForbidden, "current_password is not your password")

// handleSetPassword is an admin's reset of a user's password: the user's
// every session ends, the new password is the only one that works, and
// the audit trail records who did it and where. The admin gives their own
// password again (current_password), judged as their own change's is
// (reauthenticate): a session stolen from an admin — a token is all a
// thief needs, and a browser holds it for 30 days — must not reset
// another account's password and sign in as its owner, another admin's
// included. (`salamander admin set-password` needs the admin credential
// instead, a file on an operator's host that may write any record.)
func (g *Gateway) handleSetPassword(w http.ResponseWriter, r *http.Request, c claims) {
	var req salamander.SetPasswordRequest
	if err := decodeJSON(w, r, &req); err != nil {
		writeError(w, g.log, r, err)
		return
	}
	if req.CurrentPassword == "" {
		writeError(w, g.log, r, salamander.Errorf(salamander.CodeInvalid,
			"current_password is required: your own password, to confirm that it is you"))
		return
	}
	if err := salamander.ValidatePassword(req.NewPassword); err != nil {
		writeError(w, g.log, r, err)
		return
	}
	name := r.PathValue("name")
	if err := salamander.ValidateUserName(name); err != nil {
		writeError(w, g.log, r, err)
		return
	}
	if name == c.User {
		// Not without the current password: a stolen admin session would
		// take the account over for good.
		writeError(w, g.log, r, salamander.Errorf(salamander.CodeInvalid,
			"change your own password with POST /v1/me/password, which asks for the current one"))
		return
	}
	if _, err := g.lookupUser(r.Context(), name); err != nil {
		writeError(w, g.log, r, err)
		return
	}
	if _, err := g.reauthenticate(r, c, req.CurrentPassword, errWrongOwnPassword); err != nil {
		writeError(w, g.log, r, err)
		return
	}
	hash, err := g.hashPassword(r.Context(), req.NewPassword)
	if err != nil {
		writeError(w, g.log, r, err)
		return
	}
	rec := salamander.Record{Type: salamander.RecPasswordSet, User: name, PasswordHash: hash}
	if g.adminAction(w, r, c, rec, pwKey(name), func() bool {
		now, _, err := g.cfg.View.Credentials(r.Context(), name)
		return err == nil && now == hash
	}) {
		writeJSON(w, http.StatusOK, map[string]string{"user": name, "action": string(rec.Type)})
	}
}
