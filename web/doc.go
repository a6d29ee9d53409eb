// Package web is Salamander's web messenger: plain HTML, CSS and JavaScript
// modules (no build step, nothing fetched from elsewhere), embedded in the
// binary so that every site serves the whole app.
//
// The page talks only to the public API (/v1/…) and the WebSocket
// (/v1/ws). It knows every site (GET /v1/sites) and moves to another one
// on its own when a site fails: it resumes its live events from its cursor,
// re-sends unacknowledged messages with the same client ids (kept in the
// browser's storage across reloads) and drops what it has already shown.
// The gateway serves the files (internal/gateway/webapp.go).
package web
