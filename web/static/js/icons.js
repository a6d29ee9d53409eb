// icons.js: the app's line icons, drawn as inline SVG (24×24 paths).

const paths = {
  friends: "M12 12a4 4 0 1 0 0-8 4 4 0 0 0 0 8zm-7 8c0-3.3 3.1-6 7-6s7 2.7 7 6",
  chats: "M12 4C7 4 3 7.1 3 11c0 2.4 1.5 4.5 3.9 5.8L6 20l4-2.2c.6.1 1.3.2 2 .2 5 0 9-3.1 9-7s-4-7-9-7z",
  settings: "M12 15a3 3 0 1 0 0-6 3 3 0 0 0 0 6zm7.4-3c0-.5 0-1-.1-1.4l2-1.6-2-3.4-2.4 1a7 7 0 0 0-2.4-1.4L14 2.5h-4l-.5 2.7a7 7 0 0 0-2.4 1.4l-2.4-1-2 3.4 2 1.6a7 7 0 0 0 0 2.8l-2 1.6 2 3.4 2.4-1a7 7 0 0 0 2.4 1.4l.5 2.7h4l.5-2.7a7 7 0 0 0 2.4-1.4l2.4 1 2-3.4-2-1.6c.1-.4.1-.9.1-1.4z",
  addFriend: "M10 12a4 4 0 1 0 0-8 4 4 0 0 0 0 8zm-7 8c0-3.3 3.1-6 7-6 1.3 0 2.5.3 3.5.8M19 14v6m-3-3h6",
  newChat: "M12 4C7 4 3 7.1 3 11c0 2.4 1.5 4.5 3.9 5.8L6 20l4-2.2c.6.1 1.3.2 2 .2 5 0 9-3.1 9-7M19 2v6m-3-3h6",
  back: "M15 5l-7 7 7 7",
  send: "M4 12l16-8-6 16-3-7-7-1z",
  emoji: "M12 21a9 9 0 1 0 0-18 9 9 0 0 0 0 18zM8.5 14.5c.9 1.2 2.1 2 3.5 2s2.6-.8 3.5-2M9 9.5h.01M15 9.5h.01",
  more: "M5 12h.01M12 12h.01M19 12h.01",
  edit: "M4 20h4L19 9l-4-4L4 16v4z",
};

export function icon(name, label) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("class", "icon");
  svg.setAttribute("aria-hidden", "true");
  const p = document.createElementNS(ns, "path");
  p.setAttribute("d", paths[name]);
  svg.append(p);
  if (!label) return svg;
  const wrap = document.createElement("span");
  wrap.className = "icon-wrap";
  wrap.append(svg);
  return wrap;
}
