package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/salamander-chat/salamander"
)

// receiver holds one user's WebSocket, to its home site, and reports every
// message arriving on it to the tracker. It reads the raw WebSocket rather
// than an SDK Subscription, which drops what it has seen before: the bench
// must see a duplicate to count it. When the socket breaks it counts an
// error and reconnects, to the next site, after the last position it saw.
type receiver struct {
	r         *run
	u         *user
	tr        *tracker
	reordered *atomic.Int64

	ready     chan struct{} // closed on the first "ready"
	readyOnce sync.Once

	mu    sync.Mutex
	rooms map[string]bool // rooms whose room event arrived

	// Owned by the receiver's goroutine.
	cursor salamander.Cursor
	last   map[string]uint64 // room → highest seq seen
}

// fleet owns a set of goroutines (receivers, idle connections) and stops
// them together.
type fleet struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newFleet(ctx context.Context) *fleet {
	f := &fleet{}
	f.ctx, f.cancel = context.WithCancel(ctx)
	return f
}

// goRun runs fn(ctx) in a goroutine the fleet owns.
func (f *fleet) goRun(fn func(ctx context.Context)) {
	f.wg.Go(func() { fn(f.ctx) })
}

// close stops every goroutine and waits for them.
func (f *fleet) close() {
	f.cancel()
	f.wg.Wait()
}

// startReceivers gives every user a receiver run by fl.
func (r *run) startReceivers(fl *fleet, users []*user, tr *tracker, reordered *atomic.Int64) {
	for _, u := range users {
		rc := &receiver{r: r, u: u, tr: tr, reordered: reordered, ready: make(chan struct{}),
			rooms: map[string]bool{}, cursor: salamander.Cursor{}, last: map[string]uint64{}}
		u.recv = rc
		fl.goRun(rc.run)
	}
}

// waitReceivers waits until every user's WebSocket has replayed its
// backlog and has seen every room the user is in (so that the user's home
// site has applied them before anyone sends there).
func (r *run) waitReceivers(ctx context.Context, users []*user) error {
	missing := ""
	err := poll(ctx, 50*time.Millisecond, func() bool {
		for _, u := range users {
			select {
			case <-u.recv.ready:
			default:
				missing = u.name + ": no ready event"
				return false
			}
			if id := u.recv.unseenRoom(); id != "" {
				missing = u.name + ": room " + id + " not seen"
				return false
			}
		}
		return true
	})
	if err != nil {
		return fmt.Errorf("bench: waiting for every WebSocket (%s): %w", missing, err)
	}
	return nil
}

// unseenRoom returns a room of the user whose room event has not arrived.
func (rc *receiver) unseenRoom() string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, rm := range rc.u.rooms {
		if !rc.rooms[rm.id] {
			return rm.id
		}
	}
	return ""
}

// run keeps the WebSocket open until ctx ends.
func (rc *receiver) run(ctx context.Context) {
	// A context of its own: every read registers with the context it is
	// given, and hundreds of receivers on one context queue for its lock.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if rc.r.cfg.SDKSubscribe {
		rc.runSDK(ctx)
		return
	}
	n := len(rc.r.cfg.Sites)
	site := rc.u.home
	for fails := 1; ; fails++ {
		err := rc.connect(ctx, site)
		if ctx.Err() != nil {
			return
		}
		rc.r.errs.add("websocket", err)
		site = (site + 1) % n
		if sleep(ctx, min(50*time.Millisecond<<min(fails, 6), 3*time.Second)) != nil {
			return
		}
	}
}

// connect runs one WebSocket to site i until it breaks or ctx ends.
func (rc *receiver) connect(ctx context.Context, i int) error {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	conn, err := rc.r.net.dialWS(dctx, rc.r.cfg.Sites[i], rc.u.token, rc.cursor.String())
	cancel()
	if err != nil {
		return err
	}
	defer conn.CloseNow()
	// Reads take no context (coder/websocket registers a callback with the
	// context of every read given one); the connection is closed when ctx
	// ends instead, as the SDK's Subscription does.
	stopClosing := context.AfterFunc(ctx, func() { conn.CloseNow() })
	defer stopClosing()
	for {
		_, data, err := conn.Read(context.Background())
		at := time.Now()
		if err != nil {
			return fmt.Errorf("websocket of %s to %s: %w", rc.u.name, rc.r.cfg.Sites[i], err)
		}
		// The sites' and the SDK's own decoder: the bench shares the
		// cores with the sites, and encoding/json's reflection cost it
		// several times as much per event.
		var ev salamander.Event
		if err := salamander.DecodeEvent(data, &ev); err != nil {
			rc.r.errs.add("decode", err)
			continue
		}
		rc.handle(&ev, at)
	}
}

// handle takes one event that arrived at time at.
func (rc *receiver) handle(ev *salamander.Event, at time.Time) {
	if ev.Pos != nil {
		rc.cursor.Advance(*ev.Pos)
	}
	switch ev.Type {
	case salamander.EventReady:
		if cur, err := salamander.ParseCursor(ev.Cursor); err == nil {
			for s, seq := range cur {
				rc.cursor.Advance(salamander.Position{Stream: s, Seq: seq})
			}
		}
		rc.readyOnce.Do(func() { close(rc.ready) })
	case salamander.EventRoom:
		id := ev.RoomID
		if ev.Room != nil && ev.Room.ID != "" {
			id = ev.Room.ID
		}
		rc.mu.Lock()
		rc.rooms[id] = true
		rc.mu.Unlock()
	case salamander.EventMessage:
		m := ev.Message
		if m == nil {
			return
		}
		switch last := rc.last[m.Room]; {
		case m.Seq > last:
			rc.last[m.Room] = m.Seq
		case m.Seq < last:
			rc.reordered.Add(1)
		}
		rc.tr.delivered(rc.u, m.Room, m.Seq, m.ClientID, at)
	}
}

// runSDK receives through an SDK Subscription until ctx ends. The SDK
// reconnects by itself and drops events it delivered before, so a
// duplicate it hides is not counted; with an SDK that sends over its
// WebSocket, the user's sends go over this one.
func (rc *receiver) runSDK(ctx context.Context) {
	sub := rc.u.c.Subscribe(ctx)
	defer sub.Close()
	for ev := range sub.Events() {
		rc.handle(&ev, time.Now())
	}
	if err := sub.Err(); err != nil && ctx.Err() == nil {
		rc.r.errs.add("subscription", err)
	}
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
