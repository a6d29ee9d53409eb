// views/lists.js: the navigation rail (tab bar on a phone) and the left
// pane — friends, chats sorted by activity, settings.

import { $, avatar, fill, h } from "../dom.js";
import { currentLang, fmtWhen, t } from "../i18n.js";
import { icon } from "../icons.js";
import { addFriendDialog, changePasswordDialog, editProfileDialog, newGroupDialog, profileDialog } from "./dialogs.js";

export function renderRail(el, app) {
  const unread = [...app.model.rooms.values()].reduce((n, r) => n + r.unread, 0);
  const tab = (name, badge) => h("a", {
    href: "#/" + name, class: "rail-tab" + (app.tab === name ? " active" : ""), id: "tab-" + name,
    "aria-current": app.tab === name ? "page" : false, "aria-label": badge ? `${t(name)}, ${t("unreadLabel", badge)}` : t(name),
  }, icon(name), h("span", { class: "rail-label" }, t(name)),
  badge ? h("span", { class: "badge", "aria-label": t("unreadLabel", badge) }, badge > 999 ? "999+" : badge) : null);
  fill(el, h("img", { src: "/app/icon.svg", alt: "", class: "rail-logo" }),
    tab("friends"), tab("chats", unread), tab("settings"));
  el.setAttribute("aria-label", t("appName"));
}

export function renderList(app) {
  $("list-title").textContent = t(app.tab);
  const actions = $("list-actions");
  const list = $("list");
  switch (app.tab) {
    case "friends":
      fill(actions, h("button", { class: "icon-btn", id: "add-friend", "aria-label": t("addFriend"), title: t("addFriend"),
        onclick: () => addFriendDialog(app) }, icon("addFriend")));
      list.setAttribute("aria-label", t("friendList"));
      fill(list, friends(app));
      break;
    case "settings":
      fill(actions);
      list.setAttribute("aria-label", t("settings"));
      fill(list, settings(app));
      break;
    default:
      fill(actions, h("button", { class: "icon-btn", id: "new-group", "aria-label": t("newGroup"), title: t("newGroup"),
        onclick: () => newGroupDialog(app) }, icon("newChat")));
      list.setAttribute("aria-label", t("chatList"));
      fill(list, chats(app));
  }
}

function person(app, u, extra = {}) {
  const online = app.model.presence.get(u.name);
  return h("button", { class: "item person", dataset: { user: u.name }, onclick: () => profileDialog(app, u.name), ...extra },
    h("span", { class: "avatar-wrap" }, avatar(u.name, u.display_name),
      online !== undefined ? h("span", { class: "presence" + (online ? " on" : ""), title: t(online ? "online" : "offline"),
        "aria-label": t(online ? "online" : "offline") }) : null),
    h("span", { class: "item-main" },
      h("span", { class: "item-title" }, u.display_name || u.name),
      h("span", { class: "item-sub" }, u.status || "@" + u.name)));
}

function friends(app) {
  const m = app.model;
  const list = [...m.friends.values()].sort((a, b) => (a.display_name || a.name).localeCompare(b.display_name || b.name, currentLang()));
  return [
    h("div", { class: "section-label" }, t("me")),
    person(app, m.me, { id: "me-item" }),
    h("div", { class: "section-label" }, `${t("friends")} ${list.length}`),
    list.length === 0 ? h("p", { class: "empty" }, t("noFriends")) : h("div", { class: "people" }, list.map((u) => person(app, u))),
  ];
}

function chats(app) {
  const m = app.model;
  const rooms = m.sortedRooms();
  if (rooms.length === 0) return h("p", { class: "empty" }, t("noChats"));
  // Links and buttons keep their own roles (a listitem role took them
  // away from screen readers' lists of links and buttons).
  return h("div", { id: "chat-list" }, rooms.map((r) => {
    const title = m.roomTitle(r);
    const last = r.last_message;
    const other = m.otherMember(r);
    return h("a", {
      href: "#/room/" + encodeURIComponent(r.id),
      class: "item room-item" + (r.id === app.roomID ? " active" : ""), dataset: { room: r.id },
      "aria-label": r.unread ? `${title}, ${t("unreadLabel", r.unread)}` : title,
    },
    h("span", { class: "avatar-wrap" }, avatar(other || r.id, other ? m.displayName(other) : title),
      other && m.presence.get(other) ? h("span", { class: "presence on" }) : null),
    h("span", { class: "item-main" },
      h("span", { class: "item-title" }, h("span", { class: "room-title" }, title),
        r.kind === "group" ? h("span", { class: "count" }, r.members.length) : null),
      h("span", { class: "item-sub preview" }, last ? last.text : "")),
    h("span", { class: "item-side" },
      h("time", { datetime: last?.sent_at || r.created_at }, fmtWhen(last?.sent_at || r.created_at)),
      r.unread ? h("span", { class: "badge unread-badge" }, r.unread > 999 ? "999+" : r.unread) : null));
  }));
}

function settings(app) {
  const m = app.model;
  const choice = (name, label, options, current, onChange) => h("fieldset", { class: "choice" },
    h("legend", {}, label),
    options.map(([value, text]) => h("label", {},
      h("input", { type: "radio", name, value, checked: value === current, onchange: () => onChange(value) }), text)));
  const theme = document.documentElement.dataset.theme || "auto";
  const liveSite = app.live.state === "live" ? app.api.site.name : "";
  return h("div", { class: "settings" },
    h("button", { class: "item person", onclick: () => editProfileDialog(app) },
      avatar(m.me.name, m.me.display_name),
      h("span", { class: "item-main" }, h("span", { class: "item-title" }, m.me.display_name),
        h("span", { class: "item-sub" }, m.me.status || "@" + m.me.name)),
      icon("edit")),
    choice("lang", t("language"), [["ko", "한국어"], ["en", "English"]], currentLang(), (v) => app.switchLang(v)),
    choice("theme", t("theme"), [["auto", t("themeAuto")], ["light", t("themeLight")], ["dark", t("themeDark")]], theme,
      (v) => { app.applyTheme(v); }),
    h("div", { class: "sites" }, h("div", { class: "section-label" }, t("siteLabel")),
      h("ul", {}, app.api.sites.map((s) => h("li", { class: s.name === liveSite ? "here" : "" },
        h("span", { class: "dot" }), `${s.name} · ${new URL(s.url).host}`)))),
    h("button", { class: "btn wide", id: "change-password", onclick: () => changePasswordDialog(app) }, t("changePassword")),
    h("button", { class: "btn wide", id: "logout", onclick: () => app.signOut() }, t("logOut")));
}
