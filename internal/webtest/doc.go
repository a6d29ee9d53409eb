// Package webtest drives the web messenger (package web) in a real browser
// — Debian's chromium, headless, through chromedp — against three real
// `salamander serve` processes, so that a site can be SIGKILLed under the
// page: two users chat, a site burns, and the conversation goes on with
// nothing lost or doubled. It has tests only.
package webtest
