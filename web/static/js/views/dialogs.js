// views/dialogs.js: the modal forms — add a friend, a profile, my profile,
// a password change, a new group, a room's settings (invite, rename, leave).

import { ApiError } from "../api.js";
import { $, avatar, fill, h } from "../dom.js";
import { errorText, t } from "../i18n.js";
import * as store from "../store.js";
import { newClientID } from "../store.js";

// showDialog opens the dialog with a title and content; it returns a
// function that closes it.
function showDialog(title, ...content) {
  const d = $("dialog");
  const close = () => d.close();
  fill(d, h("div", { class: "dialog-card", role: "document" },
    h("header", {}, h("h2", { id: "dialog-title" }, title),
      h("button", { type: "button", class: "icon-btn close", "aria-label": t("close"), onclick: close }, "×")),
    content));
  d.setAttribute("aria-labelledby", "dialog-title");
  d.showModal();
  d.querySelector("input, textarea, select")?.focus();
  return close;
}

// formDialog runs a form whose submit calls act(data); an API error is
// shown in the form, success closes it.
function formDialog(title, fields, submitLabel, act) {
  const error = h("p", { class: "form-error", role: "alert" });
  const form = h("form", { class: "dialog-form", id: "dialog-form" }, fields, error,
    h("div", { class: "buttons" },
      h("button", { type: "button", class: "btn", onclick: () => close() }, t("cancel")),
      h("button", { type: "submit", class: "btn primary" }, submitLabel)));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      await act(new FormData(form));
      close();
    } catch (err) {
      error.textContent = err instanceof ApiError ? errorText(err) : t("errorGeneric");
      button.disabled = false;
    }
  });
  const close = showDialog(title, form);
  return close;
}

const input = (name, label, attrs = {}) =>
  h("label", { class: "field" }, h("span", {}, label), h("input", { name, ...attrs }));

export function addFriendDialog(app) {
  formDialog(t("addFriend"), input("name", t("addFriendPrompt"), {
    required: true, autocapitalize: "none", spellcheck: "false", id: "friend-name",
  }), t("add"), async (data) => {
    const u = await app.api.request("POST", "/v1/friends", { name: String(data.get("name")).trim().toLowerCase() });
    app.model.setUser(u);
    app.model.friends.set(u.name, u);
    app.model.changed("friends");
  });
}

export function profileDialog(app, name) {
  const m = app.model;
  const u = m.users.get(name) || { name, display_name: name, status: "" };
  const mine = name === m.me.name;
  const close = showDialog(u.display_name,
    h("div", { class: "profile" },
      avatar(u.name, u.display_name, "xl"),
      h("div", { class: "profile-name" }, u.display_name),
      h("div", { class: "profile-id" }, "@" + u.name),
      u.status ? h("p", { class: "profile-status" }, u.status) : null,
      h("div", { class: "buttons" }, mine
        ? h("button", { class: "btn primary", onclick: () => { close(); editProfileDialog(app); } }, t("editProfile"))
        : h("button", { class: "btn primary", id: "profile-chat", onclick: () => { close(); openDirect(app, name); } }, t("startChat")))));
}

// openDirect gets (or creates) the 1:1 room with a user and opens it.
export async function openDirect(app, name) {
  try {
    const r = await app.api.request("POST", "/v1/rooms/direct", { with: name });
    app.model.setRoom(r);
    app.go("#/room/" + encodeURIComponent(r.id));
  } catch (err) {
    app.toast(err instanceof ApiError ? errorText(err) : t("errorGeneric"));
  }
}

export function editProfileDialog(app) {
  const me = app.model.me;
  formDialog(t("editProfile"), [
    input("display_name", t("displayName"), { value: me.display_name, required: true, maxlength: 64, id: "profile-display" }),
    input("status", t("statusMessage"), { value: me.status || "", maxlength: 140, id: "profile-status" }),
  ], t("save"), async (data) => {
    const u = await app.api.request("PATCH", "/v1/me", { display_name: data.get("display_name"), status: data.get("status") });
    app.model.setUser(u);
    app.toast(t("profileSaved"));
  });
}

// changePasswordDialog changes the user's password with the current one.
// Every other session of the account ends at every site; this page keeps
// signed in with the new session the site answers with (api.renew), and
// keeps it and the new device token for the next start.
export function changePasswordDialog(app) {
  const pw = (name, label, attrs) => input(name, label, { type: "password", required: true, ...attrs });
  formDialog(t("changePassword"), [
    pw("current", t("currentPassword"), { autocomplete: "current-password", maxlength: 72, id: "pw-current" }),
    pw("next", t("newPassword"), { autocomplete: "new-password", minlength: 8, maxlength: 72, id: "pw-new" }),
    pw("again", t("confirmPassword"), { autocomplete: "new-password", minlength: 8, maxlength: 72, id: "pw-again" }),
  ], t("save"), async (data) => {
    const next = String(data.get("next"));
    if (next !== String(data.get("again"))) throw new ApiError(0, "passwords_differ", t("passwordsDiffer"));
    const name = app.model.me.name;
    let s;
    try {
      s = await app.api.renew(async () => {
        try {
          return await app.api.request("POST", "/v1/me/password",
            { current_password: String(data.get("current")), new_password: next }, { own: true });
        } catch (err) {
          // A retry at another site after a change whose answer was lost
          // finds this session ended (401): the new password signs in.
          if (!(err instanceof ApiError && err.status === 401)) throw err;
          return await app.api.request("POST", "/v1/login",
            { name, password: next, device: store.device.get(name) || undefined }, { own: true }).catch(() => { throw err; });
        }
      });
    } catch (err) {
      // 403: the current password is wrong, or the account is suspended
      // (its session is refused so, and its socket may be open still at a
      // site that has not applied the suspension). GET /v1/me tells which:
      // it refuses only a suspended account's session, and then signs this
      // page out with that notice (api's "suspended").
      if (err instanceof ApiError && err.code === "forbidden") {
        const suspended = await app.api.request("GET", "/v1/me").then(() => false,
          (e) => e instanceof ApiError && e.status === 403);
        if (suspended) throw new ApiError(403, "suspended", t("suspended"));
        throw new ApiError(403, "wrong_password", t("currentPasswordWrong"));
      }
      if (err instanceof ApiError && err.status === 401) app.signOut(false); // the session had ended
      throw err;
    }
    store.session.set(s);
    if (s.device) store.device.set(s.user.name, s.device);
    app.toast(t("passwordChanged"));
  });
}

// memberPicker is a checkbox list of friends not in `exclude`.
function memberPicker(app, exclude = []) {
  const friends = [...app.model.friends.values()].filter((f) => !exclude.includes(f.name));
  return h("fieldset", { class: "picker" }, h("legend", {}, t("chooseMembers")),
    friends.length === 0 ? h("p", { class: "muted" }, t("noFriends")) : null,
    friends.map((f) => h("label", { class: "pick" },
      h("input", { type: "checkbox", name: "members", value: f.name }),
      avatar(f.name, f.display_name, "sm"), h("span", {}, f.display_name))));
}

export function newGroupDialog(app) {
  // One client id for every retry of this form: a creation whose answer
  // was lost is found again instead of made twice.
  const clientID = newClientID();
  formDialog(t("newGroup"), [
    input("name", t("groupName"), { maxlength: 100, id: "group-name" }),
    memberPicker(app),
  ], t("create"), async (data) => {
    const r = await app.api.request("POST", "/v1/rooms/group",
      { name: String(data.get("name") || "").trim(), members: data.getAll("members"), client_id: clientID });
    app.model.setRoom(r);
    app.go("#/room/" + encodeURIComponent(r.id));
  });
}

export function roomSettingsDialog(app, room) {
  const path = (what) => `/v1/rooms/${encodeURIComponent(room.id)}/${what}`;
  const rename = h("form", { class: "dialog-form", id: "rename-form" },
    input("name", t("roomName"), { value: room.name, maxlength: 100, required: true }),
    h("div", { class: "buttons" }, h("button", { type: "submit", class: "btn" }, t("rename"))));
  const invite = h("form", { class: "dialog-form", id: "invite-form" }, memberPicker(app, room.members),
    h("div", { class: "buttons" }, h("button", { type: "submit", class: "btn" }, t("invite"))));
  const act = (form, fn) => form.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const since = app.model.clock;
      app.model.setRoomChanged(await fn(new FormData(form)), since);
      close();
    } catch (err) {
      app.toast(err instanceof ApiError ? errorText(err) : t("errorGeneric"));
    }
  });
  act(rename, (d) => app.api.request("POST", path("rename"), { name: d.get("name") }));
  act(invite, (d) => app.api.request("POST", path("invite"), { users: d.getAll("members") }));
  const members = h("ul", { class: "member-list", "aria-label": t("chooseMembers") },
    room.members.map((n) => h("li", {}, avatar(n, app.model.displayName(n), "sm"), app.model.displayName(n))));
  const close = showDialog(t("roomSettings"), members, rename, invite,
    h("div", { class: "buttons" }, h("button", { type: "button", class: "btn danger", id: "leave-room", onclick: async () => {
      if (!confirm(t("leaveConfirm"))) return;
      try {
        await app.api.request("POST", path("leave")).catch((err) => {
          // A retry after a hidden success: no longer a member, as asked.
          if (!(err instanceof ApiError && err.code === "forbidden")) throw err;
        });
        app.model.dropRoom(room.id);
        close();
        app.go("#/chats");
      } catch (err) {
        app.toast(err instanceof ApiError ? errorText(err) : t("errorGeneric"));
      }
    } }, t("leave"))));
}
