// Package web is Salamander's web messenger: plain HTML, CSS and JavaScript
// modules (no build step, nothing fetched from elsewhere), embedded in the
// binary so that every site serves the whole app.
//
// The page talks only to the public API (/v1/…) and the WebSocket
// (/v1/ws). It knows every site (GET /v1/sites) and moves to another one
// on its own when a site fails or hangs (a quiet socket is asked with a
// ping frame): it resumes its live events from its cursor, re-sends
// unacknowledged messages with the same client ids (kept in the browser's
// storage across reloads) and drops what it has already shown. A message
// acknowledged held (its room's site failing over) shows as sent at once
// and takes its place when its message event arrives. A service
// worker (sw.js, see ServiceWorker) keeps the app's files so the page
// opens while its own site is down. The gateway serves the files
// (internal/gateway/webapp.go).
package web
