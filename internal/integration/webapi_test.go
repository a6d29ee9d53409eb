package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/client"
)

// A room can be paged forward from its first message: after=0 means "from
// the start", not "unset" (absent means the newest page).
func TestHistoryPagesForwardFromTheFirstMessage(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	a, _ := signedUp(t, 0, "fwd")
	room, err := a.CreateGroup(ctx, "forward", nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 5; i++ {
		if _, err := a.Send(ctx, room.ID, fmt.Sprintf("m%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	q := client.HistoryQuery{Forward: true, Limit: 2}
	for {
		page, err := a.History(ctx, room.ID, q)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, texts(page.Messages)...)
		if !page.More {
			break
		}
		q.After = page.Messages[len(page.Messages)-1].Seq
	}
	if strings.Join(got, ",") != "m1,m2,m3,m4,m5" {
		t.Fatalf("forward pages: %v", got)
	}
	newest, err := a.History(ctx, room.ID, client.HistoryQuery{Limit: 2})
	if err != nil || strings.Join(texts(newest.Messages), ",") != "m4,m5" || !newest.More {
		t.Fatalf("newest page: %v %v", texts(newest.Messages), err)
	}
	code, body := opsCall(t, 0, "GET", "/v1/rooms/"+room.ID+"/messages?after=0&before=3", a.Token(), nil)
	if code != http.StatusBadRequest {
		t.Fatalf("before and after: %d %s", code, body)
	}
	// An empty after is no after, as for every other parameter.
	code, body = opsCall(t, 0, "GET", "/v1/rooms/"+room.ID+"/messages?after=&limit=2", a.Token(), nil)
	var page salamander.HistoryPage
	if code != http.StatusOK || json.Unmarshal(body, &page) != nil || strings.Join(texts(page.Messages), ",") != "m4,m5" {
		t.Fatalf("an empty after: %d %s, want the newest page", code, body)
	}
}

// A page served by one site may call another's API and open a WebSocket
// there (its failover); an origin outside the deployment may not.
func TestOtherSitesOriginsMayCallTheAPI(t *testing.T) {
	ctx := testCtx(t, 30*time.Second)
	a, _ := signedUp(t, 0, "cors")
	preflight := func(origin string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodOptions, cluster.URL(0)+"/v1/rooms", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "authorization, content-type")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}
	siteB := cluster.URL(1)
	res := preflight(siteB)
	if res.StatusCode != http.StatusNoContent || res.Header.Get("Access-Control-Allow-Origin") != siteB ||
		!strings.Contains(res.Header.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Fatalf("preflight from site b: %d %v", res.StatusCode, res.Header)
	}
	if res := preflight("https://evil.example"); res.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("preflight from a stranger: %v", res.Header)
	}
	req, _ := http.NewRequest(http.MethodGet, cluster.URL(0)+"/v1/rooms", nil)
	req.Header.Set("Origin", siteB)
	req.Header.Set("Authorization", "Bearer "+a.Token())
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK || res.Header.Get("Access-Control-Allow-Origin") != siteB {
		t.Fatalf("a call from site b's page: %d %v", res.StatusCode, res.Header)
	}
	dial := func(origin string) error {
		h := http.Header{"Origin": {origin}, "Authorization": {"Bearer " + a.Token()}}
		ws := "ws" + strings.TrimPrefix(cluster.URL(0), "http") + "/v1/ws"
		conn, _, err := websocket.Dial(ctx, ws, &websocket.DialOptions{HTTPHeader: h})
		if err == nil {
			conn.CloseNow()
		}
		return err
	}
	if err := dial(siteB); err != nil {
		t.Fatalf("a WebSocket from site b's page: %v", err)
	}
	if err := dial("https://evil.example"); err == nil {
		t.Fatal("a WebSocket from a stranger's page was accepted")
	}
}

// A group created with a client id is created once: a retry, at any
// site, answers 200 with the same room.
func TestGroupCreationRetryAnswersTheSameRoom(t *testing.T) {
	a, _ := signedUp(t, 0, "grpretry")
	req := map[string]any{"name": "retry", "members": []string{}, "client_id": "group-1"}
	code, body := opsCall(t, 0, "POST", "/v1/rooms/group", a.Token(), req)
	first := decode[struct{ ID string }](t, http.StatusCreated, code, body)
	code, body = opsCall(t, 2, "POST", "/v1/rooms/group", a.Token(), req)
	if again := decode[struct{ ID string }](t, http.StatusOK, code, body); again.ID != first.ID {
		t.Fatalf("a retry made room %s, the first %s", again.ID, first.ID)
	}
}

// A user's rooms are listed in pages of at most 500 (each room carries its
// members and their read markers), by room id: every room once, at every
// site; the SDK reads them all and orders them most recently active first.
// A bad limit or place is refused.
func TestRoomsAreListedInPages(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	a, _ := signedUp(t, 0, "pages")
	var want []string
	for i := range 5 {
		room, err := a.CreateGroup(ctx, fmt.Sprintf("page %d", i), nil)
		if err != nil {
			t.Fatal(err)
		}
		want = append([]string{room.ID}, want...) // the newest first
	}
	for site := range 3 {
		var got []string
		after := ""
		for range len(want) + 1 {
			path := "/v1/rooms?limit=2"
			if after != "" {
				path += "&after=" + url.QueryEscape(after)
			}
			code, body := opsCall(t, site, "GET", path, a.Token(), nil)
			var page salamander.RoomsPage
			if code != http.StatusOK || json.Unmarshal(body, &page) != nil || len(page.Rooms) > 2 {
				t.Fatalf("site %d, %s: %d %s", site, path, code, body)
			}
			for _, r := range page.Rooms {
				got = append(got, r.ID)
			}
			if after = page.Next; after == "" {
				break
			}
		}
		if !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(want))) {
			t.Fatalf("site %d: pages of 2 listed %v, want each of %v once", site, got, want)
		}
	}
	rooms, err := a.Rooms(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rooms {
		got = append(got, r.ID)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("the SDK's Rooms: %v, want %v (the newest first)", got, want)
	}
	for _, q := range []string{"limit=501", "limit=-1", "after=x", "after=12:g_1", "after=not%20a%20room"} {
		if code, body := opsCall(t, 0, "GET", "/v1/rooms?"+q, a.Token(), nil); code != http.StatusBadRequest {
			t.Errorf("GET /v1/rooms?%s: %d %s, want 400", q, code, body)
		}
	}
}
