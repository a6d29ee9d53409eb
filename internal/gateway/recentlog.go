package gateway

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// RecentLogSize is how many records a RecentLog keeps by default.
const RecentLogSize = 100

// RecentLog is a slog.Handler that passes every record on to another
// handler and keeps the last few at level WARN or above in memory, for the
// ops console's "recent errors" (GET /v1/ops/site). It keeps them even
// when the handler it wraps would drop them (a logger set to ERROR still
// shows an operator the warnings). Records are never in the public status.
//
// Handlers derived with WithAttrs and WithGroup share the parent's memory,
// so one RecentLog wrapped around a site's logger sees every component.
type RecentLog struct {
	next  slog.Handler
	ring  *recentRing
	attrs []slog.Attr // from WithAttrs, with groups already applied
	group string      // the WithGroup prefix, "a.b."
}

var _ slog.Handler = (*RecentLog)(nil)

// NewRecentLog wraps next, keeping the last size warnings and errors
// (RecentLogSize when size < 1).
func NewRecentLog(next slog.Handler, size int) *RecentLog {
	if size < 1 {
		size = RecentLogSize
	}
	return &RecentLog{next: next, ring: &recentRing{size: size}}
}

// LogRecord is one kept record: when, how bad, what, and its attributes
// (groups flattened to dotted keys) as text.
type LogRecord struct {
	At      time.Time         `json:"at"`
	Level   string            `json:"level"`
	Message string            `json:"message"`
	Attrs   map[string]string `json:"attrs,omitempty"`
}

// Enabled reports whether the wrapped handler wants records at l; records
// at WARN and above are always taken, to be kept.
func (h *RecentLog) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn || h.next.Enabled(ctx, l)
}

// Handle keeps r if it is a warning or worse and passes it on if the
// wrapped handler wants it.
func (h *RecentLog) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		rec := LogRecord{At: r.Time, Level: r.Level.String(), Message: r.Message, Attrs: map[string]string{}}
		for _, a := range h.attrs {
			flatten(rec.Attrs, "", a)
		}
		r.Attrs(func(a slog.Attr) bool {
			flatten(rec.Attrs, h.group, a)
			return true
		})
		if len(rec.Attrs) == 0 {
			rec.Attrs = nil
		}
		h.ring.add(rec)
	}
	if !h.next.Enabled(ctx, r.Level) {
		return nil
	}
	return h.next.Handle(ctx, r)
}

// WithAttrs returns a handler that adds attrs to every record.
func (h *RecentLog) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.next = h.next.WithAttrs(attrs)
	c.attrs = slices.Clone(h.attrs)
	for _, a := range attrs {
		if h.group != "" {
			a = slog.Attr{Key: h.group + a.Key, Value: a.Value}
		}
		c.attrs = append(c.attrs, a)
	}
	return &c
}

// WithGroup returns a handler that puts later attributes under name.
func (h *RecentLog) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	c := *h
	c.next = h.next.WithGroup(name)
	c.group = h.group + name + "."
	return &c
}

// Recent returns the kept records, newest first.
func (h *RecentLog) Recent() []LogRecord { return h.ring.list() }

// flatten adds a to m under prefix, groups as dotted keys.
func flatten(m map[string]string, prefix string, a slog.Attr) {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		p := prefix
		if a.Key != "" {
			p += a.Key + "."
		}
		for _, g := range v.Group() {
			flatten(m, p, g)
		}
		return
	}
	if a.Key == "" {
		return
	}
	m[prefix+a.Key] = v.String()
}

// recentRing holds the last size records.
type recentRing struct {
	mu   sync.Mutex
	size int
	buf  []LogRecord
	next int // where the next record goes once buf is full
}

func (r *recentRing) add(rec LogRecord) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.buf) < r.size {
		r.buf = append(r.buf, rec)
		return
	}
	r.buf[r.next] = rec
	r.next = (r.next + 1) % r.size
}

func (r *recentRing) list() []LogRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]LogRecord, 0, len(r.buf))
	for i := range r.buf {
		// Newest first: walk back from the slot written last.
		out = append(out, r.buf[(r.next-1-i+2*len(r.buf))%len(r.buf)])
	}
	return out
}
