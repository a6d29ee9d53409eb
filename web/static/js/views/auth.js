// views/auth.js: sign up and log in.

import { ApiError } from "../api.js";
import { fill, h } from "../dom.js";
import { currentLang, errorText, setLang, t } from "../i18n.js";
import { device } from "../store.js";

// renderAuth draws the sign-in card. onSession(session) is called once the
// user is signed in; onLang after the language changed (to redraw).
export function renderAuth(root, api, { onSession, onLang }, mode = "login") {
  const error = h("p", { class: "form-error", id: "auth-error", role: "alert" });
  const field = (name, label, attrs) =>
    h("label", { class: "field" }, h("span", {}, label), h("input", { name, id: "auth-" + name, required: true, ...attrs }));
  const signup = mode === "signup";
  const form = h("form", { id: "auth-form", class: "auth-form", "aria-label": signup ? t("signUp") : t("logIn") },
    field("name", t("userName"), { autocomplete: "username", autocapitalize: "none", spellcheck: "false",
      minlength: 3, maxlength: 32, pattern: "[a-z0-9][a-z0-9_.\\-]*", title: t("userNameHint") }),
    signup ? field("display_name", t("displayName"), { autocomplete: "nickname", maxlength: 64, required: false }) : null,
    field("password", t("password"), { type: "password", autocomplete: signup ? "new-password" : "current-password",
      minlength: 8, maxlength: 72, title: t("passwordHint") }),
    error,
    h("button", { type: "submit", class: "btn primary wide", id: "auth-submit" }, signup ? t("createAccount") : t("logIn")));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const data = Object.fromEntries(new FormData(form));
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    error.textContent = "";
    // A login brings this browser's device token for the account, so that
    // strangers failing logins for it do not lock this browser out. A site
    // of a version before device tokens refuses the field (400): then the
    // login goes without it.
    const login = async () => {
      const known = device.get(data.name) || undefined;
      const body = { name: data.name, password: data.password };
      try {
        return await api.request("POST", "/v1/login", { ...body, device: known });
      } catch (err) {
        if (!known || !(err instanceof ApiError && err.code === "invalid_request")) throw err;
        return api.request("POST", "/v1/login", body);
      }
    };
    try {
      let s;
      if (signup) {
        const body = { name: data.name, password: data.password, display_name: data.display_name || data.name };
        try {
          s = await api.request("POST", "/v1/signup", body);
        } catch (err) {
          // A sign-up retried at another site after its answer was lost
          // finds the name taken — by itself: log in with the password.
          if (!(err instanceof ApiError && err.code === "conflict")) throw err;
          s = await login().catch(() => { throw err; });
        }
      } else {
        s = await login();
      }
      if (s.device) device.set(s.user.name, s.device);
      onSession(s);
    } catch (err) {
      error.textContent = err instanceof ApiError ? errorText(err) : t("errorGeneric");
      button.disabled = false;
    }
  });
  const other = currentLang() === "ko" ? "en" : "ko";
  fill(root, h("div", { class: "auth-card" },
    h("div", { class: "auth-top" },
      h("button", { type: "button", class: "link", id: "auth-lang", lang: other,
        onclick: () => { setLang(other); onLang(); } }, other === "ko" ? "한국어" : "English")),
    h("img", { src: "/app/icon.svg", alt: "", class: "logo", width: 72, height: 72 }),
    h("h1", {}, t("appName")),
    h("p", { class: "tagline" }, t("tagline")),
    form,
    h("p", { class: "switch" }, signup ? t("haveAccount") : t("noAccount"), " ",
      h("button", { type: "button", class: "link", id: "auth-switch",
        onclick: () => renderAuth(root, api, { onSession, onLang }, signup ? "login" : "signup") },
      signup ? t("logIn") : t("signUp")))));
  root.querySelector("input").focus();
}
