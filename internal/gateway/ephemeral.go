package gateway

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/salamander-chat/salamander"
)

// Typing and presence are ephemeral: plain NATS subjects shared by every
// site, never stored. A site announces its users' presence changes at once
// and repeats the full list as a heartbeat, so a site that burns takes its
// users offline everywhere within presenceTTL.
const (
	subjTyping      = "sal.eph.typing"
	subjPresence    = "sal.eph.presence"
	presenceBeat    = 5 * time.Second
	presenceTTL     = 16 * time.Second
	presenceSweep   = 2 * time.Second
	maxEphemeralMsg = 64 << 10
)

type typingMsg struct {
	Room   string `json:"room"`
	User   string `json:"user"`
	Typing bool   `json:"typing"`
}

type presenceMsg struct {
	Site  string   `json:"site"`
	Users []string `json:"users,omitempty"`
	// Offline lists users whose last device here disconnected.
	Offline []string `json:"offline,omitempty"`
	// Full is true on heartbeats: Users is every user online at Site.
	Full bool `json:"full,omitempty"`
}

type ephemeral struct {
	g *Gateway

	typingMu   sync.Mutex
	lastTyping map[string]time.Time // "user\x00room" -> last "typing" published

	mu sync.Mutex
	// seen[user][site] is when site last said user is online there.
	seen     map[string]map[string]time.Time
	lastSeen map[string]time.Time
	online   map[string]bool // last state pushed to followers
}

func newEphemeral(g *Gateway) *ephemeral {
	return &ephemeral{g: g, seen: map[string]map[string]time.Time{}, lastSeen: map[string]time.Time{},
		online: map[string]bool{}, lastTyping: map[string]time.Time{}}
}

func (e *ephemeral) start(ctx context.Context, wg *sync.WaitGroup) error {
	nc := e.g.cfg.Store.Conn()
	subT, err := nc.Subscribe(subjTyping, e.onTyping)
	if err != nil {
		return err
	}
	subP, err := nc.Subscribe(subjPresence, e.onPresence)
	if err != nil {
		subT.Unsubscribe()
		return err
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer subT.Unsubscribe()
		defer subP.Unsubscribe()
		beat := time.NewTicker(presenceBeat)
		sweep := time.NewTicker(presenceSweep)
		defer beat.Stop()
		defer sweep.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-beat.C:
				e.publish(presenceMsg{Site: e.g.cfg.Site, Users: e.g.hub.online(), Full: true})
			case <-sweep.C:
				e.sweep()
			}
		}
	}()
	return nil
}

// typingEvery is the most often one user's "typing" in one room is passed
// on; clients repeat it every few seconds while the user types, so more is
// noise that every site would fan out to every member.
const typingEvery = time.Second

// allowTyping rate-limits "typing" signals per user and room; "stopped
// typing" always passes.
func (e *ephemeral) allowTyping(room, user string, typing bool) bool {
	key := user + "\x00" + room
	now := time.Now()
	e.typingMu.Lock()
	defer e.typingMu.Unlock()
	if !typing {
		delete(e.lastTyping, key)
		return true
	}
	if now.Sub(e.lastTyping[key]) < typingEvery {
		return false
	}
	if len(e.lastTyping) > 100000 { // bound memory: forget stale entries
		for k, t := range e.lastTyping {
			if now.Sub(t) > typingEvery {
				delete(e.lastTyping, k)
			}
		}
	}
	e.lastTyping[key] = now
	return true
}

func (e *ephemeral) publishTyping(room, user string, typing bool) {
	b, _ := json.Marshal(typingMsg{Room: room, User: user, Typing: typing})
	_ = e.g.cfg.Store.Conn().Publish(subjTyping, b)
}

// setOnline announces that user's first device connected here, or last left.
func (e *ephemeral) setOnline(user string, online bool) {
	m := presenceMsg{Site: e.g.cfg.Site}
	if online {
		m.Users = []string{user}
	} else {
		m.Offline = []string{user}
	}
	e.publish(m)
}

func (e *ephemeral) publish(m presenceMsg) {
	b, _ := json.Marshal(m)
	_ = e.g.cfg.Store.Conn().Publish(subjPresence, b)
}

func (e *ephemeral) onTyping(msg *nats.Msg) {
	var t typingMsg
	if len(msg.Data) > maxEphemeralMsg || json.Unmarshal(msg.Data, &t) != nil || !salamander.ValidRoomID(t.Room) {
		return
	}
	members, err := e.g.cfg.View.Members(context.Background(), t.Room)
	if err != nil {
		return
	}
	others := members[:0]
	for _, m := range members {
		if m != t.User {
			others = append(others, m)
		}
	}
	ev := salamander.Event{Type: salamander.EventTyping, RoomID: t.Room, User: t.User, Online: t.Typing, At: time.Now().UTC()}
	e.g.hub.sendTo(others, ev)
}

func (e *ephemeral) onPresence(msg *nats.Msg) {
	var p presenceMsg
	if len(msg.Data) > maxEphemeralMsg || json.Unmarshal(msg.Data, &p) != nil || p.Site == "" {
		return
	}
	now := time.Now()
	e.mu.Lock()
	if p.Full {
		for u, sites := range e.seen {
			if _, ok := sites[p.Site]; ok && !contains(p.Users, u) {
				delete(sites, p.Site)
				e.lastSeen[u] = now
			}
		}
	}
	for _, u := range p.Users {
		sites := e.seen[u]
		if sites == nil {
			sites = map[string]time.Time{}
			e.seen[u] = sites
		}
		sites[p.Site] = now
		e.lastSeen[u] = now
	}
	for _, u := range p.Offline {
		delete(e.seen[u], p.Site)
		e.lastSeen[u] = now
	}
	e.mu.Unlock()
	e.sweep()
}

// sweep expires stale sites and pushes every change of a user's presence to
// the followers connected here.
func (e *ephemeral) sweep() {
	now := time.Now()
	type change struct {
		user   string
		online bool
	}
	var changes []change
	e.mu.Lock()
	for u, sites := range e.seen {
		for s, t := range sites {
			if now.Sub(t) > presenceTTL {
				delete(sites, s)
			}
		}
		on := len(sites) > 0
		if on != e.online[u] {
			changes = append(changes, change{u, on})
			e.online[u] = on
		}
		if !on {
			delete(e.seen, u)
			delete(e.online, u)
		}
	}
	e.mu.Unlock()
	for _, c := range changes {
		followers, err := e.g.cfg.View.Followers(context.Background(), c.user)
		if err != nil || len(followers) == 0 {
			continue
		}
		e.g.hub.sendTo(followers, salamander.Event{Type: salamander.EventPresence, User: c.user, Online: c.online, At: now.UTC()})
	}
}

func (e *ephemeral) presence(user string) salamander.Presence {
	e.mu.Lock()
	defer e.mu.Unlock()
	p := salamander.Presence{User: user, LastSeen: e.lastSeen[user]}
	for _, t := range e.seen[user] {
		if time.Since(t) <= presenceTTL {
			p.Online = true
		}
	}
	return p
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
