package drill

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/client"
)

// user is one simulated user: a Go SDK client that prefers its home site,
// a live subscription, and what that subscription delivered.
type user struct {
	idx      int
	name     string
	password string
	home     int // index of the preferred site
	c        *client.Client
	token    string
	rooms    []*room
	sub      *client.Subscription
	conns    connLog

	mu     sync.Mutex
	got    map[string][]delivery // room -> messages in delivery order
	latest map[string]uint64     // room -> newest seq delivered
	marked map[string]uint64     // room -> last read marker acknowledged
	stream map[string]string     // room -> log stream its messages came from
	// told are the presence events u's subscription delivered (only when
	// the workload watches presence).
	told []presenceEvent
}

// presenceEvent is one presence change a follower's subscription was
// told.
type presenceEvent struct {
	user   string
	online bool
	at     time.Time
	site   string // the URL of the site the follower's socket was at
}

// delivery is one message as a subscription delivered it, and when.
type delivery struct {
	seq      uint64
	clientID string
	sender   string
	at       time.Time
}

// device is one more idle device of a user's (Config.Devices): a live
// subscription of its own, with its own cursor. It is checked as its
// owner's own subscription is: every message of the owner's rooms
// delivered once, in order, as the history holds it.
type device struct {
	home  int   // the site it prefers
	owner *user // whose token it holds
	sub   *client.Subscription
	conns connLog

	mu     sync.Mutex
	got    map[string][]delivery // room -> messages in delivery order
	latest map[string]uint64     // room -> newest seq delivered
}

// connLog is when a subscription was live: each "ready" it delivered (its
// connection had replayed what it missed) and the site it came from.
type connLog struct {
	mu      sync.Mutex
	readies []readyAt
}

type readyAt struct {
	at   time.Time
	site string // the site's URL
}

func (l *connLog) ready(site string) {
	l.mu.Lock()
	l.readies = append(l.readies, readyAt{at: time.Now(), site: site})
	l.mu.Unlock()
}

// connected reports whether l has been live at all.
func (l *connLog) connected() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.readies) > 0
}

// liveAgain reports whether l was connected to site (its last ready
// before t came from there) and, if it was, how soon after t it was live
// again (its first ready after t, at any site; false: not yet).
func (l *connLog) liveAgain(site string, t time.Time) (was bool, after time.Duration, back bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	i, _ := slices.BinarySearchFunc(l.readies, t, func(r readyAt, t time.Time) int { return r.at.Compare(t) })
	if i == 0 || l.readies[i-1].site != site {
		return false, 0, false
	}
	if i == len(l.readies) {
		return true, 0, false
	}
	return true, l.readies[i].at.Sub(t), true
}

// room is a drill room and its members.
type room struct {
	id      string
	kind    salamander.RoomKind
	members []*user
}

// sendRecord is the outcome of one Send.
type sendRecord struct {
	user      int
	room      string
	clientID  string
	start     time.Time
	end       time.Time
	acked     bool
	seq       uint64
	duplicate bool
	// held: acknowledged held (its partition was electing), placed later:
	// no seq in the acknowledgement.
	held bool
	err  string
	// text is what was sent: what every site must hold under clientID.
	text string
}

// workload drives the simulated users against a cluster.
type workload struct {
	cl        *Cluster
	hc        *http.Client
	rate      float64
	groupSize int
	prefix    string
	// presence: each member of a group follows the next one (a friend),
	// and the subscriptions record the presence events they are told.
	presence bool
	// followers is how many users follow another (befriend).
	followers int
	users     []*user
	rooms     []*room
	devices   []*device

	wg        sync.WaitGroup // senders and read markers
	recvWG    sync.WaitGroup // receivers (end when subscriptions close)
	stop      chan struct{}  // closed: start no new sends
	sendCtx   context.Context
	sendAbort context.CancelFunc

	mu    sync.Mutex
	sends []sendRecord

	marks    atomic.Int64
	markErrs atomic.Int64
}

func newWorkload(cl *Cluster, users, devices int, rate float64, groupSize int) *workload {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 256
	tr.MaxIdleConns = 1024
	w := &workload{
		cl:        cl,
		hc:        &http.Client{Transport: tr},
		rate:      rate,
		groupSize: groupSize,
		prefix:    fmt.Sprintf("d%04x", rand.IntN(1<<16)),
		stop:      make(chan struct{}),
	}
	for i := range users {
		w.users = append(w.users, &user{
			idx:      i,
			name:     fmt.Sprintf("%su%03d", w.prefix, i),
			password: fmt.Sprintf("drill-pw-%d-%d", i, rand.Int64()),
			home:     i % cl.N(),
			got:      map[string][]delivery{},
			latest:   map[string]uint64{},
			marked:   map[string]uint64{},
			stream:   map[string]string{},
		})
	}
	for j := range devices {
		w.devices = append(w.devices, &device{home: j % cl.N(), owner: w.users[j%len(w.users)],
			got: map[string][]delivery{}, latest: map[string]uint64{}})
	}
	return w
}

// newClient returns an SDK client for sites preferring site prefer, with
// the SDK's default timeouts and backoff, as an application would use it.
func (w *workload) newClient(sites []string, prefer int) (*client.Client, error) {
	return client.New(client.Config{Sites: sites, Prefer: prefer, HTTPClient: w.hc})
}

// pinned returns a client that talks only to site i, signed in as u.
func (w *workload) pinned(u *user, i int) (*client.Client, error) {
	c, err := w.newClient([]string{w.cl.URL(i)}, 0)
	if err != nil {
		return nil, err
	}
	c.SetToken(u.token)
	return c, nil
}

// setup signs every user up, creates the rooms (a 1:1 room per pair of
// neighbours, groups of groupSize) and subscribes every user.
func (w *workload) setup(ctx context.Context) error {
	urls := w.cl.URLs()
	err := parallel(ctx, len(w.users), 4, func(ctx context.Context, i int) error {
		u := w.users[i]
		c, err := w.newClient(urls, u.home)
		if err != nil {
			return err
		}
		u.c = c
		s, err := c.SignUp(ctx, u.name, "Drill user "+u.name, u.password)
		if err != nil {
			return fmt.Errorf("sign up %s: %w", u.name, err)
		}
		u.token = s.Token
		return nil
	})
	if err != nil {
		return fmt.Errorf("drill: signing users up: %w", err)
	}
	w.cl.log.Info("users signed up", "users", len(w.users))
	n := len(w.users)
	type spec struct {
		owner   *user
		others  []*user
		kind    salamander.RoomKind
		display string
	}
	var specs []spec
	for i := 0; i+1 < n; i += 2 {
		specs = append(specs, spec{owner: w.users[i], others: []*user{w.users[i+1]}, kind: salamander.RoomDirect})
	}
	if n%2 == 1 && n > 1 {
		specs = append(specs, spec{owner: w.users[n-1], others: []*user{w.users[0]}, kind: salamander.RoomDirect})
	}
	gs := max(w.groupSize, 2)
	for i := 0; i < n; i += gs {
		members := w.users[i:min(i+gs, n)]
		if len(members) < 2 {
			break
		}
		specs = append(specs, spec{owner: members[0], others: members[1:], kind: salamander.RoomGroup,
			display: fmt.Sprintf("drill group %d", i/gs)})
	}
	w.rooms = make([]*room, len(specs))
	err = parallel(ctx, len(specs), 4, func(ctx context.Context, i int) error {
		sp := specs[i]
		var r salamander.Room
		var err error
		if sp.kind == salamander.RoomDirect {
			r, err = sp.owner.c.DirectRoom(ctx, sp.others[0].name)
		} else {
			names := make([]string, len(sp.others))
			for j, o := range sp.others {
				names[j] = o.name
			}
			r, err = sp.owner.c.CreateGroup(ctx, sp.display, names)
		}
		if err != nil {
			return fmt.Errorf("create %s room for %s: %w", sp.kind, sp.owner.name, err)
		}
		w.rooms[i] = &room{id: r.ID, kind: sp.kind, members: append([]*user{sp.owner}, sp.others...)}
		return nil
	})
	if err != nil {
		return fmt.Errorf("drill: creating rooms: %w", err)
	}
	for _, r := range w.rooms {
		for _, m := range r.members {
			m.rooms = append(m.rooms, r)
		}
	}
	if w.presence {
		if err := w.befriend(ctx); err != nil {
			return err
		}
	}
	for _, u := range w.users {
		u.sub = u.c.Subscribe(context.Background())
		w.recvWG.Add(1)
		go func() {
			defer w.recvWG.Done()
			w.receive(u)
		}()
	}
	for _, d := range w.devices {
		c, err := w.newClient(urls, d.home)
		if err != nil {
			return err
		}
		c.SetToken(d.owner.token)
		d.sub = c.Subscribe(context.Background())
		w.recvWG.Add(1)
		go func() {
			defer w.recvWG.Done()
			for ev := range d.sub.Events() {
				if ev.Type == salamander.EventReady {
					d.conns.ready(d.sub.Site())
				}
				if m := ev.Message; ev.Type == salamander.EventMessage && m != nil {
					d.mu.Lock()
					d.got[m.Room] = append(d.got[m.Room], delivery{seq: m.Seq, clientID: m.ClientID, sender: m.Sender})
					d.latest[m.Room] = max(d.latest[m.Room], m.Seq)
					d.mu.Unlock()
				}
			}
		}()
	}
	// Every device is live before the load starts, so that a fault finds
	// each connected somewhere.
	for {
		waiting := 0
		for _, l := range w.connLogs() {
			if !l.connected() {
				waiting++
			}
		}
		if waiting == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("drill: %d of %d devices not connected: %w", waiting, len(w.users)+len(w.devices), ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	if len(w.devices) > 0 {
		w.cl.log.Info("devices connected", "devices", len(w.devices))
	}
	return nil
}

// befriend makes each member of every group a follower of the next
// member (a ring), before any subscribes: their subscriptions are told
// when the one they follow goes offline or online.
func (w *workload) befriend(ctx context.Context) error {
	var pairs [][2]*user
	for _, r := range w.rooms {
		if r.kind != salamander.RoomGroup {
			continue
		}
		for k, m := range r.members {
			pairs = append(pairs, [2]*user{m, r.members[(k+1)%len(r.members)]})
		}
	}
	err := parallel(ctx, len(pairs), 4, func(ctx context.Context, i int) error {
		if _, err := pairs[i][0].c.AddFriend(ctx, pairs[i][1].name); err != nil {
			return fmt.Errorf("%s adds %s as a friend: %w", pairs[i][0].name, pairs[i][1].name, err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("drill: following for presence: %w", err)
	}
	w.followers = len(pairs)
	return nil
}

// presenceTold returns every presence event the users' subscriptions
// were told, by follower.
func (w *workload) presenceTold() map[string][]presenceEvent {
	out := map[string][]presenceEvent{}
	for _, u := range w.users {
		u.mu.Lock()
		if len(u.told) > 0 {
			out[u.name] = slices.Clone(u.told)
		}
		u.mu.Unlock()
	}
	return out
}

// connLogs returns every device's connection log: each user's own
// subscription's, then the other devices'.
func (w *workload) connLogs() []*connLog {
	out := make([]*connLog, 0, len(w.users)+len(w.devices))
	for _, u := range w.users {
		out = append(out, &u.conns)
	}
	for _, d := range w.devices {
		out = append(out, &d.conns)
	}
	return out
}

// start begins sending and marking read; stopSending ends it.
func (w *workload) start() {
	w.sendCtx, w.sendAbort = context.WithCancel(context.Background())
	for _, u := range w.users {
		if len(u.rooms) == 0 {
			continue
		}
		w.wg.Add(2)
		go func() {
			defer w.wg.Done()
			w.send(u)
		}()
		go func() {
			defer w.wg.Done()
			w.markRead(u)
		}()
	}
}

// stopSending stops starting sends, lets those in flight finish for up to
// drain or until ctx ends (they keep retrying across sites), then abandons
// the rest and waits for every sender.
func (w *workload) stopSending(ctx context.Context, drain time.Duration) {
	close(w.stop)
	done := make(chan struct{})
	go func() {
		w.wg.Wait()
		close(done)
	}()
	t := time.NewTimer(drain)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	case <-ctx.Done():
	}
	w.sendAbort()
	<-done
}

// closeSubscriptions ends every subscription and waits for the receivers.
func (w *workload) closeSubscriptions() {
	for _, u := range w.users {
		if u.sub != nil {
			u.sub.Close()
		}
	}
	for _, d := range w.devices {
		if d.sub != nil {
			d.sub.Close()
		}
	}
	w.recvWG.Wait()
	w.hc.CloseIdleConnections()
}

// send is user u's sender: exponential pauses averaging 1/rate, then one
// message to a random room of u's, retried by the SDK until acknowledged.
func (w *workload) send(u *user) {
	for n := 0; ; n++ {
		pause := time.Duration(rand.ExpFloat64() / w.rate * float64(time.Second))
		t := time.NewTimer(pause)
		select {
		case <-w.stop:
			t.Stop()
			return
		case <-t.C:
		}
		r := u.rooms[rand.IntN(len(u.rooms))]
		id := client.NewClientID()
		rec := sendRecord{user: u.idx, room: r.id, clientID: id, start: time.Now(), text: fmt.Sprintf("drill message %d from %s", n, u.name)}
		res, err := u.c.SendWithID(w.sendCtx, r.id, id, rec.text)
		rec.end = time.Now()
		if err != nil {
			rec.err = errText(err)
		} else {
			rec.acked, rec.seq, rec.duplicate, rec.held = true, res.Message.Seq, res.Duplicate, res.Message.Held
		}
		w.mu.Lock()
		w.sends = append(w.sends, rec)
		w.mu.Unlock()
	}
}

// receive records every message u's subscription delivers and when.
func (w *workload) receive(u *user) {
	for ev := range u.sub.Events() {
		if ev.Type == salamander.EventReady {
			u.conns.ready(u.sub.Site())
		}
		if ev.Type == salamander.EventPresence && w.presence {
			u.mu.Lock()
			u.told = append(u.told, presenceEvent{user: ev.User, online: ev.Online, at: time.Now(), site: u.sub.Site()})
			u.mu.Unlock()
			continue
		}
		m := ev.Message
		if ev.Type != salamander.EventMessage || m == nil {
			continue
		}
		at := time.Now()
		u.mu.Lock()
		u.got[m.Room] = append(u.got[m.Room], delivery{seq: m.Seq, clientID: m.ClientID, sender: m.Sender, at: at})
		u.latest[m.Room] = max(u.latest[m.Room], m.Seq)
		if ev.Pos != nil {
			u.stream[m.Room] = ev.Pos.Stream
		}
		u.mu.Unlock()
	}
}

// markRead moves u's read markers to the newest delivered message of each
// room every 1–3 s, as a reading user would.
func (w *workload) markRead(u *user) {
	for {
		t := time.NewTimer(time.Second + rand.N(2*time.Second))
		select {
		case <-w.stop:
			t.Stop()
			return
		case <-t.C:
		}
		for _, r := range u.rooms {
			u.mu.Lock()
			seq, done := u.latest[r.id], u.marked[r.id]
			u.mu.Unlock()
			if seq <= done {
				continue
			}
			ctx, cancel := context.WithTimeout(w.sendCtx, 5*time.Second)
			err := u.c.MarkRead(ctx, r.id, seq)
			cancel()
			if err != nil {
				w.markErrs.Add(1)
				continue
			}
			w.marks.Add(1)
			u.mu.Lock()
			u.marked[r.id] = max(u.marked[r.id], seq)
			u.mu.Unlock()
		}
	}
}

// roomStream returns the log stream a room's messages were delivered from
// ("" when none was delivered).
func (w *workload) roomStream(r *room) string {
	for _, m := range r.members {
		m.mu.Lock()
		s := m.stream[r.id]
		m.mu.Unlock()
		if s != "" {
			return s
		}
	}
	return ""
}

// firstHeld returns when the first send to one of rooms acknowledged
// held at or after since was acknowledged; false when none was yet.
func (w *workload) firstHeld(rooms map[string]bool, since time.Time) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var first time.Time
	for _, rec := range w.sends {
		if rec.held && rooms[rec.room] && !rec.end.Before(since) && (first.IsZero() || rec.end.Before(first)) {
			first = rec.end
		}
	}
	return first, !first.IsZero()
}

// roomsIn returns the rooms whose messages come from stream.
func (w *workload) roomsIn(stream string) map[string]bool {
	out := map[string]bool{}
	for _, r := range w.rooms {
		if w.roomStream(r) == stream {
			out[r.id] = true
		}
	}
	return out
}

// records returns a copy of every send's outcome.
func (w *workload) records() []sendRecord {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]sendRecord(nil), w.sends...)
}

// deliveredUpTo reports whether every member of every room, and every
// other device of theirs, has been delivered the room's messages up to
// last[room].
func (w *workload) deliveredUpTo(last map[string]uint64) bool {
	for _, r := range w.rooms {
		for _, m := range r.members {
			m.mu.Lock()
			got := m.latest[r.id]
			m.mu.Unlock()
			if got < last[r.id] {
				return false
			}
		}
	}
	for _, d := range w.devices {
		for _, r := range d.owner.rooms {
			d.mu.Lock()
			got := d.latest[r.id]
			d.mu.Unlock()
			if got < last[r.id] {
				return false
			}
		}
	}
	return true
}

// parallel runs f for 0..n-1 on at most workers goroutines and returns the
// first error; the others' context is cancelled by it.
func parallel(ctx context.Context, n, workers int, f func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	jobs := make(chan int)
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for range min(workers, n) {
		wg.Go(func() {
			for i := range jobs {
				if err := f(ctx, i); err != nil {
					once.Do(func() { first = err; cancel() })
				}
			}
		})
	}
feed:
	for i := range n {
		select {
		case jobs <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		first = ctx.Err()
	}
	return first
}

// errText shortens an SDK error to its kind, for counting.
// errAbandoned is the error text of a send the drill stopped waiting for:
// the only way a send may end unacknowledged (the SDK retries across the
// sites until its context ends).
const errAbandoned = "abandoned (not acknowledged when the drill stopped waiting)"

func errText(err error) string {
	var coded *salamander.Error
	switch { // (the context first: such an error wraps the last site's refusal too)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return errAbandoned
	case errors.As(err, &coded):
		return string(coded.Code)
	default:
		return err.Error()
	}
}
