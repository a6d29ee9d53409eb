package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/salamander-chat/salamander"
)

// orderCluster is a fake deployment of several sites sharing one log: a
// send over HTTP at any site is committed to it once per client id, in
// the order the sites commit them. The first WebSocket any of its sites
// accepts reads send frames until it has want of them, reports each on
// frames, and then fails them all with fail; every later handshake is
// refused (503), so that what the SDK sends again goes over HTTP, where
// sends race. The first HTTP send of holdID is held, uncommitted, until
// another send reaches the cluster or its request ends: a site that
// commits a later one of two requests in progress at once first.
type orderCluster struct {
	t      *testing.T
	sites  []*site
	want   int
	fail   func(conn *websocket.Conn, frames []salamander.ClientFrame)
	holdID string
	frames chan salamander.ClientFrame

	socketTaken atomic.Bool
	mu          sync.Mutex
	committed   []string      // client ids, in commit order
	holding     bool          // holdID's first send is held
	held        chan struct{} // closed when holdID's first send is held
	arrived     chan struct{} // closed when another send arrives while it is
}

func newOrderCluster(t *testing.T, n, want int, holdID string, fail func(*websocket.Conn, []salamander.ClientFrame)) *orderCluster {
	oc := &orderCluster{t: t, want: want, fail: fail, holdID: holdID,
		frames: make(chan salamander.ClientFrame, want), held: make(chan struct{}), arrived: make(chan struct{})}
	for range n {
		oc.sites = append(oc.sites, newSite(t, oc.serve))
	}
	return oc
}

func (oc *orderCluster) serve(w http.ResponseWriter, r *http.Request) {
	if answerMe(w, r) {
		return
	}
	if r.URL.Path == "/v1/ws" {
		if oc.socketTaken.Swap(true) {
			unavailable(w, r)
			return
		}
		oc.firstSocket(w, r)
		return
	}
	var req salamander.SendRequest
	_ = json.NewDecoder(r.Body).Decode(&req)
	oc.mu.Lock()
	if req.ClientID == oc.holdID && !oc.holding && !slices.Contains(oc.committed, req.ClientID) {
		oc.holding = true
		close(oc.held)
		oc.mu.Unlock()
		select {
		case <-oc.arrived:
		case <-r.Context().Done():
			return // the client gave up on it: never committed
		}
		oc.mu.Lock()
	} else if oc.holding {
		oc.holding = false
		close(oc.arrived)
	}
	if !slices.Contains(oc.committed, req.ClientID) {
		oc.committed = append(oc.committed, req.ClientID)
	}
	seq := uint64(slices.Index(oc.committed, req.ClientID) + 1)
	oc.mu.Unlock()
	writeJSON(w, http.StatusCreated, salamander.SendResult{Message: salamander.Message{Room: room, Seq: seq, ClientID: req.ClientID, Text: req.Text}})
}

// firstSocket says ready, reads want send frames, then fails them.
func (oc *orderCluster) firstSocket(w http.ResponseWriter, r *http.Request) {
	conn, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer conn.CloseNow()
	ctx := r.Context()
	b, _ := json.Marshal(salamander.Event{Type: salamander.EventReady})
	if conn.Write(ctx, websocket.MessageText, b) != nil {
		return
	}
	var got []salamander.ClientFrame
	for len(got) < oc.want {
		_, data, err := conn.Read(ctx)
		if err != nil {
			return
		}
		var f salamander.ClientFrame
		if err := json.Unmarshal(data, &f); err != nil {
			oc.t.Errorf("undecodable frame %q", data)
			return
		}
		got = append(got, f)
		oc.frames <- f
	}
	oc.fail(conn, got)
	// Keep the socket until the client closes it (it leaves the site).
	for {
		if _, _, err := conn.Read(ctx); err != nil {
			return
		}
	}
}

func (oc *orderCluster) commitOrder() []string {
	oc.mu.Lock()
	defer oc.mu.Unlock()
	return slices.Clone(oc.committed)
}

// sendInOrder sends ids[i] (text: the id) from a goroutine of its own,
// each once the site has the previous one's frame, so that their frames
// go out in that order; the returned channel (with room for one more)
// yields each one's error.
func sendInOrder(t *testing.T, cl *Client, oc *orderCluster, ids ...string) chan error {
	t.Helper()
	errs := make(chan error, len(ids)+1)
	for _, id := range ids {
		go func() {
			_, err := cl.SendWithID(t.Context(), room, id, id)
			if err != nil {
				err = fmt.Errorf("send %s: %w", id, err)
			}
			errs <- err
		}()
		select {
		case f := <-oc.frames:
			if f.ClientID != id {
				t.Fatalf("frame %q went out, want %q", f.ClientID, id)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("the frame of %s never came", id)
		}
	}
	return errs
}

// After a failure, a room's unacknowledged sends go again one at a time
// in the order their frames went out, and a send made meanwhile waits
// behind them — whether the site refused the first for now (and, as the
// gateway does, the ones behind it with "resend them in order") or the
// socket closed with all of them in flight. Each is committed once, in
// that order, although the site they move to commits a later request
// first when two are in progress at once.
func TestSendsGoAgainInOrderAfterAFailure(t *testing.T) {
	refuse := func(conn *websocket.Conn, frames []salamander.ClientFrame) {
		for i, f := range frames {
			ev := nackWith(f, salamander.CodeUnavailable)
			if i > 0 {
				ev.Error = salamander.Errorf(salamander.CodeUnavailable,
					"not sent: an earlier message to this room on this socket failed (no quorum); resend them in order")
			}
			b, _ := json.Marshal(ev)
			if conn.Write(context.Background(), websocket.MessageText, b) != nil {
				return
			}
		}
	}
	drop := func(conn *websocket.Conn, _ []salamander.ClientFrame) { conn.CloseNow() }
	for _, tc := range []struct {
		name string
		fail func(*websocket.Conn, []salamander.ClientFrame)
	}{{"refused for now", refuse}, {"socket closed", drop}} {
		t.Run(tc.name, func(t *testing.T) {
			oc := newOrderCluster(t, 2, 3, "m1", tc.fail)
			cl := subscribed(t, oc.sites...)
			errs := sendInOrder(t, cl, oc, "m1", "m2", "m3")
			// While m1 is being sent again (held at a site), m4 is sent.
			select {
			case <-oc.held:
			case <-time.After(5 * time.Second):
				t.Fatal("m1 was never sent again")
			}
			go func() {
				_, err := cl.SendWithID(t.Context(), room, "m4", "m4")
				if err != nil {
					err = fmt.Errorf("send m4: %w", err)
				}
				errs <- err
			}()
			for range 4 {
				if err := <-errs; err != nil {
					t.Error(err)
				}
			}
			if got, want := oc.commitOrder(), []string{"m1", "m2", "m3", "m4"}; !slices.Equal(got, want) {
				t.Fatalf("committed %q, want %q", got, want)
			}
			if p := cl.Pending(); len(p) != 0 {
				t.Fatalf("Pending() = %+v", p)
			}
		})
	}
}

// laneSite is a fake site whose WebSocket carries out one socket's send
// frames to one room one at a time, in the order they came, each taking
// latency (the commit), as the gateway does; rooms are independent. It
// acks with the message's place in its room. Its HTTP send endpoint acks
// with seq 1000 and records the client id.
func laneSite(t *testing.T, latency time.Duration) *frameSite {
	fs := &frameSite{}
	fs.site = newSite(t, func(w http.ResponseWriter, r *http.Request) {
		if answerMe(w, r) {
			return
		}
		if r.URL.Path != "/v1/ws" {
			fs.sendOverHTTP(w, r)
			return
		}
		conn, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer conn.CloseNow()
		ctx := r.Context()
		var wmu sync.Mutex
		write := func(ev salamander.Event) error {
			b, _ := json.Marshal(ev)
			wmu.Lock()
			defer wmu.Unlock()
			return conn.Write(ctx, websocket.MessageText, b)
		}
		if write(salamander.Event{Type: salamander.EventReady}) != nil {
			return
		}
		lanes := map[string]chan salamander.ClientFrame{}
		var wg sync.WaitGroup
		defer wg.Wait()
		for {
			_, data, err := conn.Read(ctx)
			if err != nil {
				return
			}
			var f salamander.ClientFrame
			if err := json.Unmarshal(data, &f); err != nil {
				t.Errorf("undecodable frame %q", data)
				return
			}
			lane, ok := lanes[f.RoomID]
			if !ok {
				lane = make(chan salamander.ClientFrame, 1024)
				lanes[f.RoomID] = lane
				wg.Go(func() {
					var seq uint64
					for f := range lane {
						select {
						case <-time.After(latency):
						case <-ctx.Done():
							return
						}
						seq++
						if write(*ack(f, seq)) != nil {
							return
						}
					}
				})
			}
			select {
			case lane <- f:
			default:
				t.Error("lane full")
				return
			}
		}
	})
	return fs
}

// A site carries out one socket's sends to a room one at a time, so a
// send pipelined behind many others waits for their commits first: that
// wait does not count against its timeout (its site is answering), and
// it stays on the socket instead of failing over. Sends to another room
// are not held up behind them.
func TestPipelinedSendsToOneRoomDoNotTimeOut(t *testing.T) {
	const (
		timeout = 400 * time.Millisecond
		latency = 40 * time.Millisecond
		n       = 30 // n·latency is three times the timeout
	)
	const other = "g_fedcba9876543210"
	a := laneSite(t, latency)
	cl, err := New(Config{Sites: []string{a.URL}, RequestTimeout: timeout, MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	subscribeDrained(t, cl)

	var done atomic.Int64
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			res, err := cl.SendWithID(t.Context(), room, fmt.Sprint("x-", i), "hi")
			if err != nil || res.Message.Seq == 1000 {
				t.Errorf("send %d: %+v, %v; want an ack on the socket", i, res.Message, err)
			}
			done.Add(1)
		})
	}
	// Another room's send, meanwhile, is carried out beside them.
	res, err := cl.SendWithID(t.Context(), other, "y-1", "hi")
	if err != nil || res.Message.Seq != 1 {
		t.Errorf("send to another room: %+v, %v", res.Message, err)
	}
	if d := done.Load(); d == n {
		t.Errorf("the other room's send waited for all %d sends to the first", n)
	}
	wg.Wait()
	if got := a.sentOverHTTP(); len(got) != 0 {
		t.Errorf("%d sends went over HTTP: %q", len(got), got)
	}
	cl.mu.Lock()
	bad := cl.badAt[0]
	cl.mu.Unlock()
	if !bad.IsZero() {
		t.Errorf("the site was marked unusable")
	}
}

// A send's clock starts only once the sends ahead of it in its room are
// answered, but a site that leaves one unanswered for the whole timeout
// does not make each of those behind it wait out a timeout of its own in
// turn: the socket is closed (also when its site is the only one), and
// they all go again at once, in order.
func TestUnansweredSendFailsTheSendsBehindItAtOnce(t *testing.T) {
	const timeout = 300 * time.Millisecond
	hung := make(chan struct{})
	a := newSocketSite(t, func(socket int64, f salamander.ClientFrame) *salamander.Event {
		if socket == 1 {
			<-hung // the first socket's site never answers
			return nil
		}
		return ack(f, 1)
	})
	t.Cleanup(func() { close(hung) }) // (before the site closes)
	cl, err := New(Config{Sites: []string{a.URL}, RequestTimeout: timeout, MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	subscribeDrained(t, cl)
	// Each waiting out its own timeout would take n of them; the bound is
	// half that, far from both outcomes on a loaded machine.
	const n = 10
	began := time.Now()
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if _, err := cl.SendWithID(t.Context(), room, fmt.Sprint("h-", i), "hi"); err != nil {
				t.Errorf("send %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	if took := time.Since(began); took > n/2*timeout {
		t.Errorf("%d sends took %s with a timeout of %s: each waited out its own", n, took.Round(time.Millisecond), timeout)
	}
}
