package integration

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/crypto/bcrypt"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/internal/gateway"
	"github.com/salamander-chat/salamander/internal/secrets"
)

// A name that would put an empty token into a NATS subject is refused at
// once at every site (it used to hang for the append's 7 s and answer
// 503), and nothing is written: the name cannot log in afterwards.
func TestSubjectBreakingNamesAreRefusedAtOnce(t *testing.T) {
	base := uniqueName("dot")
	for i, name := range []string{base + ".", "a.." + base, base + "..x"} {
		site := i % 3
		body := []byte(`{"name":"` + name + `","password":"correct horse battery"}`)
		start := time.Now()
		r := raw(t, site, "POST", "/v1/signup", "", "", body)
		if r.status != 400 || r.code != salamander.CodeInvalid || !strings.Contains(string(r.body), "'.'") {
			t.Fatalf("sign-up %q at site %d: %d %s", name, site, r.status, r.body)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("sign-up %q took %s to be refused", name, d)
		}
		if r := raw(t, site, "POST", "/v1/login", "", "", body); r.status != 401 {
			t.Fatalf("login as refused name %q: %d %s", name, r.status, r.body)
		}
	}
}

// A lone surrogate in a WebSocket frame is refused like in an HTTP body,
// and nothing is stored.
func TestLoneSurrogateFrameIsRefused(t *testing.T) {
	ctx := testCtx(t, 30*time.Second)
	a, _ := signedUp(t, 0, "sur")
	_, bName := signedUp(t, 1, "sur")
	room, err := a.DirectRoom(ctx, bName)
	if err != nil {
		t.Fatal(err)
	}
	p := dialWS(t, 0, a.Token())
	p.write(`{"type":"send","room_id":"` + room.ID + `","client_id":"s1","text":"x\ud800"}`)
	wantNack(t, p.answer("s1"), salamander.CodeInvalid)
	p.send(room.ID, "s2", "after")
	wantAck(t, p.answer("s2"), room.ID, 1, false)
}

// Whether a 1:1 room exists is not told to those outside it: for a room
// of two other users and for a pair that has none, every room endpoint
// answers alike, status and body (but for the id the caller sent).
func TestDirectRoomExistenceIsNotRevealed(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	a, aName := signedUp(t, 0, "dra")
	_, bName := signedUp(t, 1, "drb")
	_, cName := signedUp(t, 2, "drc")
	room, err := a.DirectRoom(ctx, bName)
	if err != nil {
		t.Fatal(err)
	}
	if want := directRoomID(aName, bName); room.ID != want {
		t.Fatalf("room id %s, want %s", room.ID, want)
	}
	none := directRoomID(aName, cName) // never created
	stranger, _ := signedUp(t, 2, "drx")
	tok := stranger.Token()
	for _, ep := range []struct{ method, path, body string }{
		{"GET", "", ""},
		{"GET", "/messages", ""},
		{"POST", "/messages", `{"client_id":"x1","text":"hi"}`},
		{"POST", "/read", `{"seq":1}`},
		{"POST", "/typing", `{"typing":true}`},
		{"POST", "/invite", `{"users":["` + cName + `"]}`},
		{"POST", "/rename", `{"name":"mine"}`},
		{"POST", "/leave", ""},
	} {
		for site := range 3 {
			exists := raw(t, site, ep.method, "/v1/rooms/"+room.ID+ep.path, tok, "", []byte(ep.body))
			missing := raw(t, site, ep.method, "/v1/rooms/"+none+ep.path, tok, "", []byte(ep.body))
			eb := strings.ReplaceAll(string(exists.body), room.ID, "ID")
			mb := strings.ReplaceAll(string(missing.body), none, "ID")
			if exists.status != 404 || exists.status != missing.status || eb != mb {
				t.Errorf("%s %s at site %d: existing room %d %s, no room %d %s", ep.method, ep.path, site,
					exists.status, exists.body, missing.status, missing.body)
			}
		}
	}
	// Over the WebSocket too.
	p := dialWS(t, 1, tok)
	for i, id := range []string{room.ID, none} {
		cid := "w" + strconv.Itoa(i)
		p.send(id, cid, "hi")
		ev := p.answer(cid)
		wantNack(t, ev, salamander.CodeNotFound)
		if got := strings.ReplaceAll(ev.Error.Message, id, "ID"); got != `no room "ID"` {
			t.Errorf("nack for %s: %q", id, ev.Error.Message)
		}
	}
	// The members still see their room.
	if _, err := a.Room(ctx, room.ID); err != nil {
		t.Fatal(err)
	}
	if page, err := a.History(ctx, room.ID, clientHistory(0, 0, 10)); err != nil || len(page.Messages) != 0 {
		t.Fatalf("history after the stranger's attempts: %+v %v", page, err)
	}
}

// directRoomID is the id the API gives the 1:1 room of a and b.
func directRoomID(a, b string) string {
	if b < a {
		a, b = b, a
	}
	sum := sha256.Sum256([]byte(a + "\n" + b))
	return "d_" + hex.EncodeToString(sum[:16])
}

// A login with a name nobody has is answered exactly as one with a wrong
// password, at every site.
func TestUnknownLoginNameAnswersLikeAWrongPassword(t *testing.T) {
	_, name := signedUp(t, 0, "who")
	for site := range 3 {
		wrong := raw(t, site, "POST", "/v1/login", "", "", []byte(`{"name":"`+name+`","password":"not the password"}`))
		unknown := raw(t, site, "POST", "/v1/login", "", "", []byte(`{"name":"`+uniqueName("nobody")+`","password":"not the password"}`))
		if wrong.status != 401 || unknown.status != wrong.status || !bytes.Equal(unknown.body, wrong.body) {
			t.Fatalf("site %d: wrong password %d %s, unknown name %d %s", site, wrong.status, wrong.body, unknown.status, unknown.body)
		}
	}
}

// Concurrent guesses cannot slip through the failed-login budget: each
// attempt reserves its unit before the password is checked, so of many at
// once only a site's share of the burst is checked at all.
func TestConcurrentLoginGuessesAreLimited(t *testing.T) {
	_, name := signedUp(t, 2, "conc")
	body := []byte(`{"name":"` + name + `","password":"not the password"}`)
	const guesses = 40
	var mu sync.Mutex
	counts := map[int]int{}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range guesses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			r := raw(t, 2, "POST", "/v1/login", "", "", body)
			mu.Lock()
			counts[r.status]++
			mu.Unlock()
		}()
	}
	close(start)
	wg.Wait()
	share := gateway.DefaultLimits().LoginFailuresPerUser.Burst / 3
	if counts[401] > share || counts[401]+counts[429] != guesses {
		t.Fatalf("of %d concurrent guesses: %v; at most %d may be checked", guesses, counts, share)
	}
}

// limitedGateway serves the API of site a's store and read model through a
// gateway of its own with limits l, for a cluster of three sites, and with
// no exempt addresses (the test cluster's sites exempt loopback, as every
// site does by default). It is a real gateway on the real log.
func limitedGateway(t *testing.T, l gateway.Limits) string {
	t.Helper()
	s := cluster.Site(0)
	cfg := gateway.DefaultConfig("a", s.Store(), s.View())
	for i, n := range []string{"a", "b", "c"} {
		cfg.Sites = append(cfg.Sites, gateway.SiteInfo{Name: n, URL: cluster.URL(i)})
	}
	cfg.BcryptCost = bcrypt.MinCost
	sec, err := secrets.LoadSite(cluster.SiteFile(0))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Keys = sec
	l.Exempt = nil
	cfg.Limits = l
	g := gateway.New(cfg)
	g.SetCatchUp(map[string]uint64{}) // site a's view, which is caught up
	srv := httptest.NewServer(g)
	t.Cleanup(func() {
		srv.Close()
		g.Close()
	})
	return srv.URL
}

// wantLimited checks a 429 answer: the API's JSON error and Retry-After
// in whole seconds, within (0, max].
func wantLimited(t *testing.T, what string, r rawResp, maxWait time.Duration) {
	t.Helper()
	if r.status != 429 || r.code != salamander.CodeTooManyRequests {
		t.Fatalf("%s: %d %s, want 429 too_many_requests", what, r.status, r.body)
	}
	secs, err := strconv.Atoi(r.header.Get("Retry-After"))
	if err != nil || secs < 1 || time.Duration(secs)*time.Second > maxWait {
		t.Fatalf("%s: Retry-After %q, want 1-%.0f s", what, r.header.Get("Retry-After"), maxWait.Seconds())
	}
}

// Sign-ups, sends, members added and WebSocket connects are limited per
// address and per account; each site enforces its third of the cluster
// budget; a limited request answers 429 with Retry-After and changes
// nothing.
func TestRateLimitsAnswer429WithRetryAfter(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	hour := time.Hour
	// Cluster budgets of 6 (or 9): two (or three) at this one site.
	url := limitedGateway(t, gateway.Limits{
		SignUpsPerAddr:  gateway.Rate{Burst: 6, Every: hour},
		LoginsPerUser:   gateway.Rate{Burst: 6, Every: hour},
		ChangesPerUser:  gateway.Rate{Burst: 6, Every: hour},
		SendsPerUser:    gateway.Rate{Burst: 9, Every: hour},
		InvitesPerUser:  gateway.Rate{Burst: 6, Every: hour},
		ConnectsPerUser: gateway.Rate{Burst: 6, Every: hour},
	})
	signUp := func(name string) rawResp {
		return rawTo(t, url, "POST", "/v1/signup", "", "", []byte(`{"name":"`+name+`","password":"correct horse battery"}`))
	}
	var names, tokens []string
	for range 2 {
		name := uniqueName("lim")
		r := signUp(name)
		if r.status != 201 {
			t.Fatalf("sign-up within the budget: %d %s", r.status, r.body)
		}
		var s salamander.Session
		mustUnmarshal(t, r.body, &s)
		names, tokens = append(names, name), append(tokens, s.Token)
	}
	refused := uniqueName("lim")
	wantLimited(t, "third sign-up", signUp(refused), 3*hour)

	// Successful logins: two per account here. Each costs a bcrypt
	// comparison, so a loop of correct passwords is limited too.
	login := func() rawResp {
		return rawTo(t, url, "POST", "/v1/login", "", "", []byte(`{"name":"`+names[1]+`","password":"correct horse battery"}`))
	}
	for i := range 2 {
		if r := login(); r.status != 200 {
			t.Fatalf("login %d within the budget: %d %s", i, r.status, r.body)
		}
	}
	wantLimited(t, "third login", login(), 3*hour)
	if r := raw(t, 1, "POST", "/v1/login", "", "", []byte(`{"name":"`+refused+`","password":"correct horse battery"}`)); r.status != 401 {
		t.Fatalf("the refused sign-up was written: login %d %s", r.status, r.body)
	}

	// Sends: three per account here; a resend of a stored message is free.
	_, third := signedUp(t, 0, "lim")
	create := rawTo(t, url, "POST", "/v1/rooms/group", tokens[0], "",
		[]byte(`{"name":"limits","members":["`+names[1]+`","`+third+`"]}`))
	if create.status != 201 {
		t.Fatalf("group with two others (the whole budget): %d %s", create.status, create.body)
	}
	var room salamander.Room
	mustUnmarshal(t, create.body, &room)
	send := func(cid string) rawResp {
		return rawTo(t, url, "POST", "/v1/rooms/"+room.ID+"/messages", tokens[0], "",
			[]byte(`{"client_id":"`+cid+`","text":"hello"}`))
	}
	for i := range 3 {
		if r := send("m" + strconv.Itoa(i)); r.status != 201 {
			t.Fatalf("send %d: %d %s", i, r.status, r.body)
		}
	}
	wantLimited(t, "fourth send", send("m3"), 3*hour)
	if r := send("m0"); r.status != 200 || !strings.Contains(string(r.body), `"duplicate":true`) {
		t.Fatalf("resend of a stored message: %d %s", r.status, r.body)
	}
	// Another account at the same address is not limited by this one's.
	if r := rawTo(t, url, "POST", "/v1/rooms/"+room.ID+"/messages", tokens[1], "",
		[]byte(`{"client_id":"b1","text":"me too"}`)); r.status != 201 {
		t.Fatalf("another account's send: %d %s", r.status, r.body)
	}

	// Members added: the group's creation spent both of this site's units.
	_, fourth := signedUp(t, 0, "lim")
	wantLimited(t, "invite", rawTo(t, url, "POST", "/v1/rooms/"+room.ID+"/invite", tokens[0], "",
		[]byte(`{"users":["`+fourth+`"]}`)), 3*hour)
	// Inviting a member again (a retry after a lost answer) adds no one and
	// spends nothing: it answers the room.
	if r := rawTo(t, url, "POST", "/v1/rooms/"+room.ID+"/invite", tokens[0], "",
		[]byte(`{"users":["`+names[1]+`"]}`)); r.status != 200 {
		t.Fatalf("inviting a member again over the budget: %d %s", r.status, r.body)
	}

	// WebSocket connects: two per account here.
	ws := "ws" + strings.TrimPrefix(url, "http") + "/v1/ws"
	hdr := http.Header{"Authorization": {"Bearer " + tokens[1]}}
	for i := range 2 {
		conn, _, err := websocket.Dial(ctx, ws, &websocket.DialOptions{HTTPHeader: hdr})
		if err != nil {
			t.Fatalf("connect %d: %v", i, err)
		}
		t.Cleanup(func() { conn.CloseNow() })
	}
	_, res, err := websocket.Dial(ctx, ws, &websocket.DialOptions{HTTPHeader: hdr})
	if err == nil || res == nil {
		t.Fatalf("third connect: %v", err)
	}
	if res.StatusCode != 429 || res.Header.Get("Retry-After") == "" {
		t.Fatalf("third connect: %d, Retry-After %q", res.StatusCode, res.Header.Get("Retry-After"))
	}

	// Other writes (rooms, friends, profile, reports): two per account
	// here. A request whose input is refused (400, 413) costs nothing.
	profile := func(status string) rawResp {
		return rawTo(t, url, "PATCH", "/v1/me", tokens[1], "", []byte(`{"status":"`+status+`"}`))
	}
	for range 3 {
		if r := rawTo(t, url, "PATCH", "/v1/me", tokens[1], "", []byte(`{"display_name":""}`)); r.status != 400 {
			t.Fatalf("a blank display name: %d %s", r.status, r.body)
		}
	}
	for _, st := range []string{"one", "two"} {
		if r := profile(st); r.status != 200 {
			t.Fatalf("profile change %s: %d %s", st, r.status, r.body)
		}
	}
	wantLimited(t, "third profile change", profile("three"), 3*hour)
	wantLimited(t, "a group after two changes", rawTo(t, url, "POST", "/v1/rooms/group", tokens[1], "",
		[]byte(`{"name":"one too many"}`)), 3*hour)
	if r := raw(t, 0, "GET", "/v1/me", tokens[1], "", nil); !strings.Contains(string(r.body), `"status":"two"`) {
		t.Fatalf("a refused profile change was made: %d %s", r.status, r.body)
	}

	// Nothing the refused requests asked for happened.
	r := raw(t, 0, "GET", "/v1/rooms/"+room.ID, tokens[0], "", nil)
	mustUnmarshal(t, r.body, &room)
	if len(room.Members) != 3 || room.LastSeq != 4 {
		t.Fatalf("room after refused requests: %d members, last seq %d", len(room.Members), room.LastSeq)
	}
}

func mustUnmarshal(t *testing.T, data []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("decode %s: %v", data, err)
	}
}

// The test cluster's sites run with the default limits, which exempt
// loopback, where every test and salamander bench connect from: many
// sign-ups and fast sends from one address are not limited there.
func TestLoopbackIsNotLimitedByDefault(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	a, _ := signedUp(t, 0, "loop")
	_, bName := signedUp(t, 0, "loop")
	room, err := a.DirectRoom(ctx, bName)
	if err != nil {
		t.Fatal(err)
	}
	n := gateway.DefaultLimits().SendsPerUser.Burst + 5
	for i := range n {
		if _, err := a.Send(ctx, room.ID, fmt.Sprint("fast ", i)); err != nil {
			t.Fatalf("send %d of %d: %v", i, n, err)
		}
	}
}

// A lookup that misses (no such user, no such room) costs a unit of the
// changes budget, as a taken name costs a sign-up: a 404 is otherwise a
// free way to learn, name by name, who exists. What is found costs
// nothing, and once the budget is spent every lookup is refused alike.
func TestLookupsThatMissAreLimited(t *testing.T) {
	// A cluster budget of 6: two at this one site.
	url := limitedGateway(t, gateway.Limits{ChangesPerUser: gateway.Rate{Burst: 6, Every: time.Hour}})
	_, known := signedUp(t, 1, "lkknown")
	signUp := func() string {
		r := rawTo(t, url, "POST", "/v1/signup", "", "", []byte(`{"name":"`+uniqueName("lk")+`","password":"correct horse battery"}`))
		var s salamander.Session
		if r.status != 201 || json.Unmarshal(r.body, &s) != nil {
			t.Fatalf("sign-up: %d %s", r.status, r.body)
		}
		return s.Token
	}
	lookup := func(token, name string) rawResp { return rawTo(t, url, "GET", "/v1/users/"+name, token, "", nil) }
	token := signUp()
	checkFor(t, 10*time.Second, 50*time.Millisecond, func() error { // site a has applied the other site's sign-up
		if r := lookup(token, known); r.status != 200 {
			return fmt.Errorf("a known user: %d %s", r.status, r.body)
		}
		return nil
	})
	for i := range 10 {
		if r := lookup(token, known); r.status != 200 {
			t.Fatalf("lookup %d of a known user: %d %s", i, r.status, r.body)
		}
	}
	for i, name := range []string{uniqueName("nobody"), "Not-A-Name"} {
		if r := lookup(token, name); r.status != 404 {
			t.Fatalf("miss %d: %d %s", i, r.status, r.body)
		}
	}
	wantLimited(t, "a third miss", lookup(token, uniqueName("nobody")), 3*time.Hour)
	wantLimited(t, "a known user, once the budget is spent", lookup(token, known), 3*time.Hour)

	// An invitation naming nobody costs a unit as well.
	token = signUp()
	r := rawTo(t, url, "POST", "/v1/rooms/group", token, "", []byte(`{"name":"lookups"}`)) // a unit
	var room salamander.Room
	if r.status != 201 || json.Unmarshal(r.body, &room) != nil {
		t.Fatalf("group: %d %s", r.status, r.body)
	}
	invite := func() rawResp {
		return rawTo(t, url, "POST", "/v1/rooms/"+room.ID+"/invite", token, "", []byte(`{"users":["`+uniqueName("nobody")+`"]}`))
	}
	if r := invite(); r.status != 404 {
		t.Fatalf("inviting nobody: %d %s", r.status, r.body)
	}
	wantLimited(t, "inviting nobody again", invite(), 3*time.Hour)
}

// Concurrent requests for the same read marker write one record, not one
// each (every site would keep them all): the ones that find the mark
// being written wait for its outcome. All are answered as marked.
func TestConcurrentReadMarksWriteOneRecord(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	a, _ := signedUp(t, 0, "rmark")
	b, bName := signedUp(t, 0, "rmarkb")
	op, _ := operator(t, ctx, 0, "rmarkop")
	room, err := a.DirectRoom(ctx, bName)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Send(ctx, room.ID, "read me"); err != nil {
		t.Fatal(err)
	}
	applied := func() uint64 {
		code, body := opsCall(t, 0, "GET", "/v1/ops/site", op.Token(), nil)
		var st struct {
			Entries uint64 `json:"entries_applied"`
		}
		if code != http.StatusOK || json.Unmarshal(body, &st) != nil {
			t.Fatalf("status: %d %s", code, body)
		}
		return st.Entries
	}
	before := applied()
	const n = 50
	var wg sync.WaitGroup
	codes := make([]int, n)
	for i := range n {
		wg.Go(func() {
			codes[i], _ = opsCall(t, 0, "POST", "/v1/rooms/"+room.ID+"/read", b.Token(), map[string]any{"seq": 1})
		})
	}
	wg.Wait()
	for i, code := range codes {
		if code != http.StatusNoContent && code != http.StatusOK {
			t.Fatalf("mark %d: %d", i, code)
		}
	}
	// Each answer came once site a had applied the mark: every record
	// written is counted. (The suite runs one test at a time; a few more
	// would be another test's.)
	got := applied() - before
	if got > 3 {
		t.Fatalf("%d concurrent marks of one message wrote %d log entries", n, got)
	}
	if got == 0 {
		t.Fatal("no mark was written")
	}
}
