// dom.js: building elements. Text is always set as text, never parsed as
// HTML: messages, names and status messages come from other users.

// h builds an element: h("button", {class: "btn", onclick: f}, "Send").
// Attributes starting with "on" are listeners; false, null and undefined
// are left out; true sets an empty attribute.
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  append(el, ...children);
  return el;
}

const present = (c) => c !== undefined && c !== null && c !== false && c !== "";

export function append(el, ...children) {
  el.append(...children.flat(Infinity).filter(present).map((c) => (c instanceof Node ? c : String(c))));
}

export function fill(el, ...children) {
  el.replaceChildren();
  append(el, ...children);
}

export const $ = (id) => document.getElementById(id);

// avatar is a round badge with a name's first letter, coloured from the
// name so that a person keeps their colour everywhere.
export function avatar(name, label, size = "") {
  let hash = 0;
  for (const ch of name) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  const letter = [...(label || name)][0]?.toUpperCase() || "?";
  return h("span", { class: `avatar ${size} c${hash % 8}`, "aria-hidden": "true" }, letter);
}
