package site

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/salamander-chat/salamander/internal/jsstore"
)

// Heartbeats between sites. A cut that drops packets silently leaves the
// NATS routes "connected" until their pings fail (3 × 2 s); meanwhile the
// cut-off site would keep taking writes that can never reach a quorum.
// So every site publishes a small heartbeat over its log connection every
// heartbeatEvery, and notes when it last heard each other site: a site
// that has not heard a majority of the sites for HeartbeatTimeout is cut
// off, however its routes look.
const (
	subjHeartbeat  = jsstore.SubjHeartbeat
	heartbeatEvery = 250 * time.Millisecond
)

type heartbeats struct {
	self string

	mu    sync.Mutex
	heard map[string]time.Time // other site -> last heartbeat
	armed bool                 // a majority has been heard once
}

// run publishes this site's heartbeats and records the others' until ctx
// ends.
func (h *heartbeats) run(ctx context.Context, nc *nats.Conn, sites int) {
	sub, err := nc.Subscribe(subjHeartbeat+"*", func(m *nats.Msg) {
		site := strings.TrimPrefix(m.Subject, subjHeartbeat)
		if site == h.self || site == "" {
			return
		}
		h.mu.Lock()
		h.heard[site] = time.Now()
		if len(h.heard)+1 > sites/2 {
			h.armed = true
		}
		h.mu.Unlock()
	})
	if err != nil {
		return
	}
	defer sub.Unsubscribe()
	t := time.NewTicker(heartbeatEvery)
	defer t.Stop()
	for {
		_ = nc.Publish(subjHeartbeat+h.self, nil)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// excuse forgives the silence between from and to, when this site itself
// could hear nothing (its server restarting): a site still heard in the
// last two heartbeat intervals before from counts as heard at to.
func (h *heartbeats) excuse(from, to time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for site, at := range h.heard {
		if !at.Before(from.Add(-heartbeatEvery*2)) && at.Before(to) {
			h.heard[site] = to
		}
	}
}

// silent reports whether, after a majority was heard once, fewer than a
// majority of the sites (this one included) were heard within timeout.
func (h *heartbeats) silent(sites int, timeout time.Duration) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.armed {
		return false
	}
	recent := 1 // this site
	for _, at := range h.heard {
		if time.Since(at) <= timeout {
			recent++
		}
	}
	return recent <= sites/2
}
