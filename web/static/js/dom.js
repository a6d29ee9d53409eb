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

// reconcile makes el's children the nodes that items describe, in order.
// Each item is {key, sig, make}: an element drawn before under the same key
// with the same signature (what it shows) is kept where it is, so a
// redraw does not take away the user's text selection, focus or a click
// in progress; others are made anew. kept maps key -> {sig, node} from
// the last call and is updated.
export function reconcile(el, items, kept) {
  const next = new Map();
  const nodes = items.map(({ key, sig, make }) => {
    const old = kept.get(key);
    const node = old && old.sig === sig && old.node.parentNode === el ? old.node : make();
    next.set(key, { sig, node });
    return node;
  });
  let cursor = el.firstChild;
  for (const node of nodes) {
    if (node === cursor) {
      cursor = cursor.nextSibling;
      continue;
    }
    el.insertBefore(node, cursor);
  }
  while (cursor) {
    const after = cursor.nextSibling;
    cursor.remove();
    cursor = after;
  }
  kept.clear();
  for (const [k, v] of next) kept.set(k, v);
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
