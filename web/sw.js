// sw.js: the web app's service worker. It keeps the app shell — the page,
// its style, its scripts and its icon — in a cache named for the release,
// so that the page still opens when its own site is down; the app then
// reaches the API at another site by itself. The shell is fetched from
// the network first (a new release arrives at the next load) and taken
// from the cache only when the network fails or is too slow. API calls
// and WebSockets are never touched.
//
// The gateway serves this file at /sw.js after one generated line that
// defines SHELL: {version, files}, the hash of the app's files and their
// URLs (web.ServiceWorker). A new release changes the hash, so the
// browser installs the new worker, which fills a new cache and drops the
// old ones.

/* global SHELL */
const CACHE = "salamander-shell-" + SHELL.version;
const NETWORK_WAIT_MS = 3000; // a hung site: use the cache after this long
const shellPaths = new Set(SHELL.files);

self.addEventListener("install", (e) => {
  e.waitUntil((async () => {
    const cache = await caches.open(CACHE);
    await cache.addAll(SHELL.files.map((f) => new Request(f, { cache: "no-store" })));
    await self.skipWaiting();
  })());
});

self.addEventListener("activate", (e) => {
  e.waitUntil((async () => {
    for (const name of await caches.keys()) {
      if (name.startsWith("salamander-shell-") && name !== CACHE) await caches.delete(name);
    }
    await self.clients.claim();
  })());
});

self.addEventListener("fetch", (e) => {
  const req = e.request;
  if (req.method !== "GET") return;
  const url = new URL(req.url);
  if (url.origin !== self.location.origin) return;
  // The page (whatever its query or fragment) is the cached "/".
  const key = req.mode === "navigate" && url.pathname === "/" ? "/" : url.pathname;
  if (!shellPaths.has(key)) return;
  e.respondWith(networkFirst(req, key));
});

// networkFirst answers from the network, keeping a copy, unless the
// network fails or has not answered in NETWORK_WAIT_MS; then from the
// cache (or with the network's answer after all when nothing is cached).
async function networkFirst(req, key) {
  const cache = await caches.open(CACHE);
  const net = fetch(req).then((res) => {
    if (res.ok) cache.put(key, res.clone());
    return res;
  });
  net.catch(() => {}); // (a failure is handled below, or no longer matters)
  const late = new Promise((resolve) => setTimeout(resolve, NETWORK_WAIT_MS));
  try {
    const res = await Promise.race([net, late]);
    if (res) return res;
  } catch {
    // the site is down: the cached copy below
  }
  const cached = await cache.match(key);
  return cached || net;
}
