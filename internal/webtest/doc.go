// Package webtest drives the web messenger (package web) in a real browser
// — Debian's chromium, headless, through chromedp — against three real
// `salamander serve` processes, so that a site can be SIGKILLed under the
// page: two users chat, a site burns, and the conversation goes on with
// nothing lost or doubled. What a real cluster does only at a moment no
// test chooses — acknowledging sends held while a partition elects a
// leader — is driven against a fake site (internal/fakesite) instead. It
// has tests only.
package webtest
