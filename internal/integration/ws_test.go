package integration

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/client"
)

// wsPeer is a raw WebSocket to one site, with a goroutine that reads its
// frames into events until the socket ends (err then says why).
type wsPeer struct {
	t      *testing.T
	conn   *websocket.Conn
	events chan salamander.Event
	done   chan struct{}
	err    error
}

// dialWS opens a WebSocket to site i as the holder of token and waits for
// its "ready".
func dialWS(t *testing.T, i int, token string) *wsPeer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(cluster.URL(i), "http")+"/v1/ws",
		&websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + token}}})
	if err != nil {
		t.Fatalf("dial site %d: %v", i, err)
	}
	conn.SetReadLimit(1 << 20)
	p := &wsPeer{t: t, conn: conn, events: make(chan salamander.Event, 4096), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		for {
			_, data, err := conn.Read(context.Background())
			if err != nil {
				p.err = err
				return
			}
			var ev salamander.Event
			if err := json.Unmarshal(data, &ev); err != nil {
				p.err = fmt.Errorf("undecodable frame %q: %w", data, err)
				return
			}
			p.events <- ev
		}
	}()
	t.Cleanup(func() {
		conn.CloseNow()
		<-p.done
	})
	p.next(salamander.EventReady, "", 10*time.Second)
	return p
}

// write sends one text frame: v encoded as JSON, or a string as it is.
func (p *wsPeer) write(v any) {
	p.t.Helper()
	data, ok := v.(string)
	if !ok {
		b, err := json.Marshal(v)
		if err != nil {
			p.t.Fatal(err)
		}
		data = string(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.conn.Write(ctx, websocket.MessageText, []byte(data)); err != nil {
		p.t.Fatalf("write: %v", err)
	}
}

func (p *wsPeer) send(room, clientID, text string) {
	p.t.Helper()
	p.write(salamander.ClientFrame{Type: salamander.FrameSend, RoomID: room, ClientID: clientID, Text: text})
}

// next returns the next event of type typ (and, if clientID is set, for
// that client id), skipping others; it fails the test after d.
func (p *wsPeer) next(typ salamander.EventType, clientID string, d time.Duration) salamander.Event {
	p.t.Helper()
	timeout := time.After(d)
	for {
		select {
		case ev := <-p.events:
			if ev.Type == typ && (clientID == "" || ev.ClientID == clientID) {
				return ev
			}
		case <-p.done:
			p.t.Fatalf("socket ended waiting for %s %s: %v", typ, clientID, p.err)
		case <-timeout:
			p.t.Fatalf("no %s %s within %s", typ, clientID, d)
		}
	}
}

// answer returns the ack or nack for clientID.
func (p *wsPeer) answer(clientID string) salamander.Event {
	p.t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case ev := <-p.events:
			if (ev.Type == salamander.EventAck || ev.Type == salamander.EventNack) && ev.ClientID == clientID {
				return ev
			}
		case <-p.done:
			p.t.Fatalf("socket ended waiting for the answer to %s: %v", clientID, p.err)
		case <-timeout:
			p.t.Fatalf("no answer to %s", clientID)
		}
	}
}

// closed waits until the site closes the socket and returns its status.
func (p *wsPeer) closed(d time.Duration) websocket.StatusCode {
	p.t.Helper()
	select {
	case <-p.done:
		return websocket.CloseStatus(p.err)
	case <-time.After(d):
		p.t.Fatalf("socket still open after %s", d)
		return 0
	}
}

func wantAck(t *testing.T, ev salamander.Event, room string, seq uint64, dup bool) {
	t.Helper()
	if ev.Type != salamander.EventAck || ev.RoomID != room || ev.Message == nil || ev.Message.Seq != seq ||
		ev.Message.ClientID != ev.ClientID || ev.Duplicate != dup {
		t.Fatalf("got %+v (message %+v, error %v), want ack of seq %d duplicate %v", ev, ev.Message, ev.Error, seq, dup)
	}
}

func wantNack(t *testing.T, ev salamander.Event, code salamander.Code) {
	t.Helper()
	if ev.Type != salamander.EventNack || ev.Error == nil || ev.Error.Code != code || ev.Error.Message == "" {
		t.Fatalf("got %+v (error %v), want nack %s", ev, ev.Error, code)
	}
}

// A send over the WebSocket is acked with its seq; a repeated client id is
// acked as a duplicate with the original seq; bad frames are refused with
// a clear nack and the socket stays up; typing and read frames work.
func TestWebSocketSendRoundTrip(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	a, aName := signedUp(t, 0, "wsa")
	b, bName := signedUp(t, 1, "wsb")
	room, err := a.DirectRoom(ctx, bName)
	if err != nil {
		t.Fatal(err)
	}
	other, err := b.CreateGroup(ctx, "not for a", nil)
	if err != nil {
		t.Fatal(err)
	}
	pa := dialWS(t, 0, a.Token())
	pb := dialWS(t, 1, b.Token())

	pa.send(room.ID, "c1", "hello")
	wantAck(t, pa.answer("c1"), room.ID, 1, false)
	if ev := pb.next(salamander.EventMessage, "", 10*time.Second); ev.Message.Text != "hello" || ev.Message.Sender != aName {
		t.Fatalf("b got %+v", ev.Message)
	}
	pa.send(room.ID, "c1", "hello again")
	wantAck(t, pa.answer("c1"), room.ID, 1, true)

	// Refused frames, each answered, none fatal.
	pa.write("this is not JSON")
	ev := pa.next(salamander.EventNack, "", 10*time.Second)
	wantNack(t, ev, salamander.CodeInvalid)
	for _, tc := range []struct {
		frame string
		cid   string
		code  salamander.Code
	}{
		{`{"type":"send","room_id":"` + room.ID + `","client_id":"c2"}`, "c2", salamander.CodeInvalid},
		{`{"type":"shout","room_id":"` + room.ID + `","client_id":"c3"}`, "c3", salamander.CodeInvalid},
		{`{"type":"send","room_id":"` + room.ID + `","client_id":"c4","text":"x","colour":"red"}`, "c4", salamander.CodeInvalid},
		{`{"type":"send","room_id":"` + room.ID + `","client_id":"c5","text":"` + strings.Repeat("é", 20000) + `"}`, "c5", salamander.CodeTooLarge},
		{`{"type":"send","room_id":"` + room.ID + `","client_id":"c6","text":"` + strings.Repeat("x", salamander.MaxMessageBytes+1) + `"}`, "c6", salamander.CodeTooLarge},
		{`{"type":"send","room_id":"` + other.ID + `","client_id":"c7","text":"let me in"}`, "c7", salamander.CodeForbidden},
		{`{"type":"send","room_id":"g_00000000000000000000","client_id":"c8","text":"anyone?"}`, "c8", salamander.CodeNotFound},
		{`{"type":"read","room_id":"` + room.ID + `","client_id":"c9","seq":99}`, "c9", salamander.CodeInvalid},
	} {
		pa.write(tc.frame)
		ev := pa.answer(tc.cid)
		wantNack(t, ev, tc.code)
		if ev.RoomID == "" {
			t.Errorf("nack for %s does not echo the room: %+v", tc.cid, ev)
		}
	}
	pa.send(room.ID, "c10", "still here")
	wantAck(t, pa.answer("c10"), room.ID, 2, false)

	// Typing reaches the other member; a read frame with an id is acked
	// and moves the marker.
	pa.write(salamander.ClientFrame{Type: salamander.FrameTyping, RoomID: room.ID, Typing: true})
	if ev := pb.next(salamander.EventTyping, "", 10*time.Second); ev.User != aName || ev.RoomID != room.ID || !ev.Typing {
		t.Fatalf("b got typing %+v", ev)
	}
	pb.write(salamander.ClientFrame{Type: salamander.FrameRead, RoomID: room.ID, Seq: 2, ClientID: "r1"})
	if ev := pb.answer("r1"); ev.Type != salamander.EventAck || ev.RoomID != room.ID {
		t.Fatalf("read answered %+v (%v)", ev, ev.Error)
	}
	checkFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		r, err := pinned(t, 1, b.Token()).Room(ctx, room.ID)
		if err != nil || r.ReadSeq != 2 {
			return fmt.Errorf("b's read marker: %d %v", r.ReadSeq, err)
		}
		return nil
	})
	page, err := a.History(ctx, room.ID, clientHistory(0, 0, 50))
	if err != nil || !reflect.DeepEqual(texts(page.Messages), []string{"hello", "still here"}) {
		t.Fatalf("history %v %v", texts(page.Messages), err)
	}
}

// A socket that keeps sending refused frames, a binary frame or a frame
// over the hard limit is closed; the session can connect again.
func TestWebSocketDropsAbusiveSockets(t *testing.T) {
	a, _ := signedUp(t, 2, "wsx")
	p := dialWS(t, 2, a.Token())
	for i := 0; i < 16; i++ {
		p.write(fmt.Sprintf(`{"type":"nonsense","n":%d}`, i))
	}
	// Frames written after the one that closes the socket are read and
	// dropped: the device reads the close frame, not a reset connection.
	writeOn := func(n int) {
		for range n {
			if p.conn.Write(testCtx(t, 10*time.Second), websocket.MessageText, []byte(`{"type":"nonsense"}`)) != nil {
				return // the close has come
			}
		}
	}
	writeOn(8)
	if code := p.closed(10 * time.Second); code != websocket.StatusPolicyViolation {
		t.Errorf("closed with %v after a flood of bad frames, want policy violation", code)
	}

	p = dialWS(t, 2, a.Token())
	ctx := testCtx(t, 10*time.Second)
	if err := p.conn.Write(ctx, websocket.MessageBinary, []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	writeOn(8)
	if code := p.closed(10 * time.Second); code != websocket.StatusUnsupportedData {
		t.Errorf("closed with %v after a binary frame, want unsupported data", code)
	}

	p = dialWS(t, 2, a.Token())
	p.write(`{"type":"send","text":"` + strings.Repeat("x", salamander.MaxBodyBytes) + `"}`)
	if code := p.closed(10 * time.Second); code != websocket.StatusMessageTooBig {
		t.Errorf("closed with %v after a %d-byte frame, want message too big", code, salamander.MaxBodyBytes)
	}
	dialWS(t, 2, a.Token()) // welcome back
}

// Many sends written back to back on one socket, to two rooms at once, are
// each acked, and every room's messages are committed in the order they
// were written.
func TestWebSocketPipelinedSendsLandInOrder(t *testing.T) {
	ctx := testCtx(t, 90*time.Second)
	a, _ := signedUp(t, 1, "wsp")
	_, bName := signedUp(t, 2, "wsp")
	r1, err := a.CreateGroup(ctx, "pipeline one", []string{bName})
	if err != nil {
		t.Fatal(err)
	}
	r2, err := a.CreateGroup(ctx, "pipeline two", []string{bName})
	if err != nil {
		t.Fatal(err)
	}
	p := dialWS(t, 1, a.Token())
	const n = 120 // per room; two rooms stay under the 256 frames in flight
	var want1, want2 []string
	for i := 0; i < n; i++ {
		t1, t2 := fmt.Sprintf("one-%03d", i), fmt.Sprintf("two-%03d", i)
		p.send(r1.ID, "p1-"+t1, t1)
		p.send(r2.ID, "p2-"+t2, t2)
		want1, want2 = append(want1, t1), append(want2, t2)
	}
	seqs := map[string]uint64{}
	for len(seqs) < 2*n {
		select {
		case ev := <-p.events:
			switch ev.Type {
			case salamander.EventAck:
				seqs[ev.ClientID] = ev.Message.Seq
			case salamander.EventNack:
				t.Fatalf("nack %s: %v", ev.ClientID, ev.Error)
			}
		case <-p.done:
			t.Fatalf("socket ended: %v", p.err)
		case <-ctx.Done():
			t.Fatalf("%d of %d acks", len(seqs), 2*n)
		}
	}
	for i := 0; i < n; i++ {
		if s := seqs["p1-"+want1[i]]; s != uint64(i+1) {
			t.Fatalf("room one: message %d acked with seq %d", i, s)
		}
		if s := seqs["p2-"+want2[i]]; s != uint64(i+1) {
			t.Fatalf("room two: message %d acked with seq %d", i, s)
		}
	}
	for _, tc := range []struct {
		room string
		want []string
	}{{r1.ID, want1}, {r2.ID, want2}} {
		var got []string
		var after uint64
		for {
			page, err := a.History(ctx, tc.room, clientHistory(0, after, 200))
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, texts(page.Messages)...)
			if !page.More {
				break
			}
			after = page.Messages[len(page.Messages)-1].Seq
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Fatalf("history of %s:\n%v\nwant\n%v", tc.room, got, tc.want)
		}
	}
}

// countingTransport counts the HTTP sends that pass through it.
type countingTransport struct {
	sends atomic.Int64
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/messages") {
		c.sends.Add(1)
	}
	return http.DefaultTransport.RoundTrip(r)
}

// With a Subscription connected, the SDK sends over its WebSocket, many
// at once; when the site burns, sends in flight move to another site and
// every message lands once, each goroutine's in the order it sent them.
func TestSDKSendsOverWebSocketAndFailsOver(t *testing.T) {
	ctx := testCtx(t, 150*time.Second)
	rt := &countingTransport{}
	alice, err := client.New(client.Config{Sites: cluster.URLs(), HTTPClient: &http.Client{Transport: rt},
		MinBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond, RequestTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.SignUp(ctx, uniqueName("sdkws"), "Alice", "correct horse battery"); err != nil {
		t.Fatal(err)
	}
	bob, bobName := signedUp(t, 1, "sdkwb")
	room, err := alice.CreateGroup(ctx, "over the socket", []string{bobName})
	if err != nil {
		t.Fatal(err)
	}
	subA := alice.Subscribe(ctx)
	defer subA.Close()
	waitReady(t, subA.Events())
	go func() { // the application keeps receiving
		for range subA.Events() {
		}
	}()
	subB := bob.Subscribe(ctx)
	defer subB.Close()

	// Phase 1: 8 goroutines × 10 sends, all over the socket.
	const workers = 8
	var mu sync.Mutex
	sent := map[int][]string{}
	sendAll := func(from, to int, during func(int)) {
		var wg sync.WaitGroup
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := from; i < to; i++ {
					if during != nil {
						during(i)
					}
					text := fmt.Sprintf("w%d-%02d", w, i)
					if _, err := alice.Send(ctx, room.ID, text); err != nil {
						t.Errorf("send %s: %v", text, err)
						return
					}
					mu.Lock()
					sent[w] = append(sent[w], text)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
	}
	sendAll(0, 10, nil)
	if t.Failed() {
		t.FailNow()
	}
	if n := rt.sends.Load(); n != 0 {
		t.Fatalf("%d sends went over HTTP with the socket open", n)
	}
	if subA.Site() != cluster.URL(0) {
		t.Fatalf("alice's socket is at %q, want site a", subA.Site())
	}

	// Phase 2: the site burns while sends are in flight.
	var once sync.Once
	t.Cleanup(func() {
		if cluster.Site(0) == nil {
			if err := cluster.Restart(testCtx(t, 60*time.Second), 0); err != nil {
				t.Errorf("restart site a: %v", err)
			}
		}
	})
	sendAll(10, 20, func(i int) {
		if i == 12 {
			once.Do(func() { cluster.Kill(0) })
		}
	})
	if t.Failed() {
		t.FailNow()
	}
	if len(alice.Pending()) != 0 {
		t.Fatalf("pending after every send returned: %+v", alice.Pending())
	}
	if err := cluster.Restart(ctx, 0); err != nil {
		t.Fatal(err)
	}

	// Every message once; each goroutine's in its order.
	total := workers * 20
	got := collect(t, "bob", subB.Events(), room.ID, total, 60*time.Second)
	pos := map[string]int{}
	for i, text := range got {
		if _, dup := pos[text]; dup {
			t.Fatalf("%s delivered twice", text)
		}
		pos[text] = i
	}
	for w, texts := range sent {
		for i := 1; i < len(texts); i++ {
			if pos[texts[i-1]] > pos[texts[i]] {
				t.Fatalf("worker %d: %s committed after %s", w, texts[i-1], texts[i])
			}
		}
	}
	checkFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		page, err := pinned(t, 0, alice.Token()).History(ctx, room.ID, clientHistory(0, 0, 200))
		if err != nil {
			return err
		}
		if !reflect.DeepEqual(texts(page.Messages), got) {
			return errors.New("site a's history differs from what bob received")
		}
		return nil
	})
}

// A socket whose session is logged out (at another site) sends nothing
// more: the socket is closed as soon as its site applies the logout, and a
// frame that reaches it first is refused.
func TestWebSocketFramesStopAfterLogout(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	a, _ := signedUp(t, 0, "wslo")
	b, bName := signedUp(t, 1, "wslp")
	room, err := a.DirectRoom(ctx, bName)
	if err != nil {
		t.Fatal(err)
	}
	pa := dialWS(t, 0, a.Token())
	pa.send(room.ID, "before", "still signed in")
	wantAck(t, pa.answer("before"), room.ID, 1, false)
	// Log the same session out at site 1.
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, cluster.URL(1)+"/v1/logout", nil)
	req.Header.Set("Authorization", "Bearer "+a.Token())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("logout: %d", resp.StatusCode)
	}
	// Once site 0 has applied the logout, a frame is refused.
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if ok, _ := cluster.Site(0).View().SessionRevoked(ctx, tokenClaim(t, a.Token(), "sid")); !ok {
			return fmt.Errorf("site 0 has not applied the logout yet")
		}
		return nil
	})
	// The socket may be closed already: the frame then goes nowhere.
	frame, _ := json.Marshal(salamander.ClientFrame{Type: salamander.FrameSend, RoomID: room.ID, ClientID: "after", Text: "signed out"})
	_ = pa.conn.Write(ctx, websocket.MessageText, frame)
	if code := pa.closed(10 * time.Second); code != websocket.StatusPolicyViolation {
		t.Fatalf("socket closed with %v, want policy violation", code)
	}
	page, err := b.History(ctx, room.ID, client.HistoryQuery{})
	if err != nil || len(page.Messages) != 1 {
		t.Fatalf("history after logout: %v messages, err %v (want only the one sent before)", len(page.Messages), err)
	}
}

// A ping frame is answered at once with an ack of its client id, ahead of
// any room's frames; one without a client id is refused. (Browsers see no
// WebSocket control pings: the web client pings this way.)
func TestWebSocketPingFrame(t *testing.T) {
	a, _ := signedUp(t, 1, "wsping")
	p := dialWS(t, 1, a.Token())
	p.write(map[string]any{"type": "ping", "client_id": "ping-1"})
	if ev := p.answer("ping-1"); ev.Type != salamander.EventAck {
		t.Fatalf("ping answered %+v", ev)
	}
	p.write(map[string]any{"type": "ping"})
	wantNack(t, p.answer(""), salamander.CodeInvalid)
}

// rawWS is a WebSocket spoken by hand over TCP, for what a library would
// not do: write many frames in one write, or break the protocol.
type rawWS struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

// dialRawWS opens a raw WebSocket to site i as the holder of token and
// reads frames until "ready".
func dialRawWS(t *testing.T, i int, token string) *rawWS {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(cluster.URL(i), "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(conn, "GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer %s\r\n\r\n", token)
	w := &rawWS{t: t, conn: conn, r: bufio.NewReader(conn)}
	resp, err := http.ReadResponse(w.r, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	for {
		if _, p := w.readFrame(); strings.Contains(string(p), `"type":"ready"`) {
			return w
		}
	}
}

// readFrame reads the site's next frame: its opcode and payload.
func (w *rawWS) readFrame() (op byte, payload []byte) {
	w.t.Helper()
	var hdr [2]byte
	if _, err := io.ReadFull(w.r, hdr[:]); err != nil {
		w.t.Fatalf("reading a frame: %v", err)
	}
	n := uint64(hdr[1] & 0x7f)
	switch n {
	case 126:
		var l [2]byte
		_, _ = io.ReadFull(w.r, l[:])
		n = uint64(binary.BigEndian.Uint16(l[:]))
	case 127:
		var l [8]byte
		_, _ = io.ReadFull(w.r, l[:])
		n = binary.BigEndian.Uint64(l[:])
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(w.r, payload); err != nil {
		w.t.Fatalf("reading a frame: %v", err)
	}
	return hdr[0] & 0x0f, payload
}

// writeTexts writes each payload as a masked text frame, all in one write.
func (w *rawWS) writeTexts(payloads ...[]byte) {
	w.t.Helper()
	var buf []byte
	mask := [4]byte{1, 2, 3, 4}
	for _, p := range payloads {
		buf = append(buf, 0x81)
		switch {
		case len(p) < 126:
			buf = append(buf, 0x80|byte(len(p)))
		default:
			buf = append(buf, 0x80|126, byte(len(p)>>8), byte(len(p)))
		}
		buf = append(buf, mask[:]...)
		for i, c := range p {
			buf = append(buf, c^mask[i%4])
		}
	}
	if _, err := w.conn.Write(buf); err != nil {
		w.t.Fatal(err)
	}
}

// A device that breaks the protocol gets a close frame with the reason,
// and the site goes on reading (and dropping) what the device still sends
// until the device closes too or a second passes — also when an event for
// the device comes meanwhile: its writer finds the socket closing and
// leaves the cut to the close handshake instead of cutting at once, which
// would reset a connection the device is still writing to.
func TestProtocolErrorCloseIsNotCutShortByAnEvent(t *testing.T) {
	ctx := testCtx(t, 30*time.Second)
	a, aName := signedUp(t, 0, "pcl")
	b, _ := signedUp(t, 0, "pcm")
	room, err := b.DirectRoom(ctx, aName)
	if err != nil {
		t.Fatal(err)
	}
	w := dialRawWS(t, 0, a.Token())
	// An unmasked frame: a protocol error (RFC 6455 5.1).
	broke := time.Now()
	if _, err := w.conn.Write([]byte{0x81, 2, 'h', 'i'}); err != nil {
		t.Fatal(err)
	}
	for {
		op, p := w.readFrame()
		if op != 0x8 {
			continue // an event written before the close
		}
		if len(p) < 2 || binary.BigEndian.Uint16(p) != 1002 {
			t.Fatalf("close frame %q, want 1002", p)
		}
		break
	}
	// An event for the device while the site drains the socket.
	if _, err := b.Send(ctx, room.ID, "are you there?"); err != nil {
		t.Fatal(err)
	}
	_, err = io.Copy(io.Discard, w.r) // until the site cuts the connection
	if took := time.Since(broke); took < 900*time.Millisecond {
		t.Fatalf("the site cut the connection %s after the protocol error (%v), before its close grace", took.Round(time.Millisecond), err)
	}
}

// Sends written beyond the socket's 256 frames in flight are refused in
// their room's order: the first refused one fails the room's lane, so no
// send written after it is committed before the client resends it — also
// one written once earlier sends have been answered and slots are free,
// and one written after the lane has ended.
func TestSendsBeyondTheInFlightCapAreRefusedInOrder(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	a, aName := signedUp(t, 0, "cap")
	b, _ := signedUp(t, 0, "caq")
	room, err := b.DirectRoom(ctx, aName)
	if err != nil {
		t.Fatal(err)
	}
	w := dialRawWS(t, 0, a.Token())
	// 14 beyond the cap, all in one write: a strike each (with the one
	// after), below the 16 that close the socket. The site reads them one
	// by one while the first are carried out, so a few may be answered
	// before the last are read, and fewer refused.
	const burst = 270
	frame := func(i int) []byte {
		data, _ := json.Marshal(salamander.ClientFrame{Type: salamander.FrameSend, RoomID: room.ID,
			ClientID: fmt.Sprintf("cap-%03d", i), Text: fmt.Sprint("m", i)})
		return data
	}
	var frames [][]byte
	for i := range burst {
		frames = append(frames, frame(i))
	}
	w.writeTexts(frames...)
	answers := map[string]salamander.Event{}
	acked := false
	take := func() {
		t.Helper()
		for {
			op, p := w.readFrame()
			if op != 0x1 {
				t.Fatalf("frame op %d (%q): the socket is closing", op, p)
			}
			var ev salamander.Event
			if err := json.Unmarshal(p, &ev); err != nil {
				t.Fatal(err)
			}
			if ev.Type == salamander.EventAck || ev.Type == salamander.EventNack {
				answers[ev.ClientID] = ev
				acked = acked || ev.Type == salamander.EventAck
				return
			}
		}
	}
	for !acked { // an ack: a slot is free again
		take()
	}
	w.writeTexts(frame(burst))
	for len(answers) < burst+1 {
		take()
	}
	firstNack := -1
	for i := range burst + 1 {
		ev := answers[fmt.Sprintf("cap-%03d", i)]
		switch {
		case ev.Type == salamander.EventNack && firstNack < 0:
			firstNack = i
			if ev.Error.Code != salamander.CodeTooManyRequests {
				t.Fatalf("send %d refused with %v, want too_many_requests", i, ev.Error)
			}
		case ev.Type == salamander.EventAck && firstNack >= 0:
			t.Fatalf("send %d was committed (seq %d) after send %d was refused", i, ev.Message.Seq, firstNack)
		case ev.Type == salamander.EventAck && ev.Message.Seq != uint64(i+1):
			t.Fatalf("send %d committed at seq %d", i, ev.Message.Seq)
		}
	}
	if firstNack < wsMaxInFlightForTest {
		t.Fatalf("first refusal at send %d; the burst should reach the cap of %d", firstNack, wsMaxInFlightForTest)
	}

	// Every answer is in: the room's lane has ended. A send written now
	// (the device had not heard of the refusals yet) is refused still,
	// until the first refused one comes again; from there the room goes
	// on in order.
	w.writeTexts(frame(burst + 1))
	for len(answers) < burst+2 {
		take()
	}
	if ev := answers[fmt.Sprintf("cap-%03d", burst+1)]; ev.Type != salamander.EventNack {
		t.Fatalf("a send written after the lane ended was committed (seq %d) ahead of refused send %d", ev.Message.Seq, firstNack)
	}
	// In one write: a send the failure still refuses, then the failed one
	// again and the one after it — from the failed one on, in order.
	id := func(i int) string { return fmt.Sprintf("cap-%03d", i) }
	delete(answers, id(firstNack))
	delete(answers, id(firstNack+1))
	w.writeTexts(frame(burst+2), frame(firstNack), frame(firstNack+1))
	for answers[id(burst+2)].Type == "" || answers[id(firstNack)].Type == "" || answers[id(firstNack+1)].Type == "" {
		take()
	}
	if ev := answers[id(burst+2)]; ev.Type != salamander.EventNack {
		t.Fatalf("a send ahead of the failed one's resend was committed (seq %d)", ev.Message.Seq)
	}
	for i := firstNack; i <= firstNack+1; i++ {
		if ev := answers[id(i)]; ev.Type != salamander.EventAck || ev.Message.Seq != uint64(i+1) {
			t.Fatalf("resent send %d answered %+v (%v), want committed at seq %d", i, ev.Type, ev.Error, i+1)
		}
	}
}

// wsMaxInFlightForTest is the gateway's cap on frames in flight per socket,
// as the API description states it.
const wsMaxInFlightForTest = 256

// One account's sockets at one site are bounded: the one beyond the bound
// closes the oldest (salamander.CloseTooManySockets, saying why), and every
// other stays open. The SDK does not reconnect a socket so closed: it
// would close the next oldest, whose device would reconnect in turn,
// round and round; its Subscription ends with ErrTooManySockets.
func TestSocketsPerAccountAreBounded(t *testing.T) {
	ctx := testCtx(t, time.Minute)
	c, _ := signedUp(t, 1, "sox")
	token := c.Token()
	sub := c.Subscribe(ctx)
	defer sub.Close()
	for ev := range sub.Events() {
		if ev.Type == salamander.EventReady {
			break
		}
	}
	var peers []*wsPeer
	for range salamander.MaxSocketsPerAccount {
		peers = append(peers, dialWS(t, 1, token))
	}
	select {
	case <-sub.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the oldest socket, the SDK's, is still open")
	}
	if !errors.Is(sub.Err(), client.ErrTooManySockets) {
		t.Fatalf("the SDK's Subscription ended with %v", sub.Err())
	}
	// One more closes the oldest raw socket, the first of peers: had the
	// SDK reconnected, it would have closed that one already.
	peers = append(peers, dialWS(t, 1, token))
	select {
	case <-peers[0].done:
	case <-time.After(10 * time.Second):
		t.Fatal("the oldest socket is still open")
	}
	var ce websocket.CloseError
	if !errors.As(peers[0].err, &ce) || ce.Code != salamander.CloseTooManySockets || !strings.Contains(ce.Reason, "oldest") {
		t.Fatalf("the oldest socket ended with %v", peers[0].err)
	}
	for i, p := range peers[1:] {
		select {
		case <-p.done:
			t.Fatalf("socket %d ended: %v", i+1, p.err)
		default:
		}
	}
}

// A browser, which cannot set the Authorization header, offers its token
// as a subprotocol (salamander.v1 and bearer.TOKEN): the site chooses
// salamander.v1 and the socket serves as with the header. A bad token so
// offered is refused like any.
func TestTokenAsASubprotocol(t *testing.T) {
	ctx := testCtx(t, 30*time.Second)
	c, _ := signedUp(t, 2, "sub")
	ws := "ws" + strings.TrimPrefix(cluster.URL(2), "http") + "/v1/ws"
	conn, _, err := websocket.Dial(ctx, ws, &websocket.DialOptions{Subprotocols: []string{"salamander.v1", "bearer." + c.Token()}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseNow()
	if p := conn.Subprotocol(); p != "salamander.v1" {
		t.Fatalf("subprotocol chosen %q", p)
	}
	_, data, err := conn.Read(ctx)
	if err != nil || !strings.Contains(string(data), `"type":"ready"`) {
		t.Fatalf("first frame %s %v, want ready", data, err)
	}
	_, res, err := websocket.Dial(ctx, ws, &websocket.DialOptions{Subprotocols: []string{"salamander.v1", "bearer.nonsense"}})
	if err == nil || res == nil || res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a bad token offered as a subprotocol: %v %v", res, err)
	}
}
