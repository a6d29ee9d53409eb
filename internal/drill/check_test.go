package drill

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/salamander-chat/salamander"
)

// A room's history has settled for the checker only once every message
// acknowledged held in it has its place: a fire-merge drill once judged
// ten held messages lost 5 s after the load stopped, checking histories
// that agreed on their newest seq while the merge placing those ten had
// yet to land.
func TestPlacesAllWaitsForHeldMessages(t *testing.T) {
	msgs := []salamander.Message{{Seq: 1, ClientID: "a"}, {Seq: 2, ClientID: "b"}}
	cases := []struct {
		held []string
		want bool
	}{
		{nil, true},
		{[]string{"b"}, true},
		{[]string{"a", "b"}, true},
		{[]string{"a", "c"}, false},
		{[]string{"c"}, false},
	}
	for _, c := range cases {
		if got := placesAll(msgs, c.held); got != c.want {
			t.Errorf("placesAll(%v) = %v, want %v", c.held, got, c.want)
		}
	}
	if placesAll(nil, []string{"a"}) {
		t.Error("an empty history places a held message")
	}
}

// checkSite serves one room's fixed history and the caller's rooms, as a
// site does to the checker.
func checkSite(t *testing.T, roomID string, hist []salamander.Message) string {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/rooms/{id}/messages", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(salamander.HistoryPage{Messages: hist})
	})
	mux.HandleFunc("GET /v1/rooms", func(w http.ResponseWriter, r *http.Request) {
		var last uint64
		if len(hist) > 0 {
			last = hist[len(hist)-1].Seq
		}
		_ = json.NewEncoder(w).Encode(salamander.RoomsPage{Rooms: []salamander.Room{{ID: roomID, LastSeq: last}}})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

// judgeHistory checks the sends recs (by users u0 and u1 of one room)
// against two sites that both hold hist, every member and u0's second
// device having received every message of it unless tweak changes what
// they got, and returns the judged report. In hist and recs, the sender
// "u0" or "u1" stands for the workload's user of that index.
func judgeHistory(t *testing.T, hist []salamander.Message, recs []sendRecord, tweak func(w *workload)) *Report {
	t.Helper()
	const roomID = "g_room"
	hist, recs = slices.Clone(hist), slices.Clone(recs) // named and placed below
	// The sites serve hist as it is when asked: its senders are named
	// below, once the workload has named its users.
	cl := &Cluster{log: slog.New(slog.DiscardHandler),
		sites: []*siteProc{{name: "b", url: checkSite(t, roomID, hist)}, {name: "c", url: checkSite(t, roomID, hist)}}}
	w := newWorkload(cl, 2, 1, 1, 5)
	for i := range hist {
		hist[i].Room = roomID
		if n, ok := strings.CutPrefix(hist[i].Sender, "u"); ok {
			i2, _ := strconv.Atoi(n)
			hist[i].Sender = w.users[i2].name
		}
	}
	r := &room{id: roomID, kind: salamander.RoomGroup, members: w.users}
	w.rooms = []*room{r}
	for _, u := range w.users {
		u.token, u.rooms = "tok", []*room{r}
		for _, m := range hist {
			u.got[roomID] = append(u.got[roomID], delivery{seq: m.Seq, clientID: m.ClientID})
			u.latest[roomID] = m.Seq
		}
	}
	for _, d := range w.devices {
		d.got[roomID], d.latest[roomID] = slices.Clone(d.owner.got[roomID]), d.owner.latest[roomID]
	}
	if tweak != nil {
		tweak(w)
	}
	for i := range recs {
		recs[i].room = roomID
		if recs[i].text == "" {
			recs[i].text = "drill message " + recs[i].clientID
		}
	}
	ch, err := newChecker(w, []int{0, 1}, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	v, err := ch.check(context.Background(), recs)
	if err != nil {
		t.Fatal(err)
	}
	rep := &Report{Verdict: v}
	rep.judge()
	return rep
}

// The checker compares what was sent with what every site holds, not only
// client ids: a message held with another text or sender, a message no
// send wrote (a copy under another client id), and a send refused for good
// fail the drill; what was sent, held as sent, passes.
func TestCheckerComparesWhatWasSentWithWhatIsHeld(t *testing.T) {
	at := time.Now()
	send := func(user int, id string, seq uint64, n int) sendRecord {
		s := at.Add(time.Duration(n) * time.Second)
		return sendRecord{user: user, clientID: id, start: s, end: s.Add(10 * time.Millisecond), acked: seq > 0, seq: seq}
	}
	held := func(seq uint64, sender, id, text string) salamander.Message {
		return salamander.Message{Seq: seq, Sender: sender, ClientID: id, Text: text}
	}
	two := []salamander.Message{held(1, "u0", "A", "drill message A"), held(2, "u1", "B", "drill message B")}
	twoSent := []sendRecord{send(0, "A", 1, 0), send(1, "B", 2, 1)}
	for _, tc := range []struct {
		name    string
		hist    []salamander.Message
		recs    []sendRecord
		failure string // "" for a pass
		tweak   func(w *workload)
	}{
		{"as sent", two, twoSent, "", nil},
		{"another text", []salamander.Message{held(1, "u0", "A", "not what was typed")},
			[]sendRecord{send(0, "A", 1, 0)}, "another sender or text", nil},
		{"another sender", []salamander.Message{held(1, "u1", "A", "drill message A")},
			[]sendRecord{send(0, "A", 1, 0)}, "another sender or text", nil},
		{"a copy under another client id", []salamander.Message{held(1, "u0", "A", "drill message A"), held(2, "u0", "A2", "drill message A")},
			[]sendRecord{send(0, "A", 1, 0)}, "written by no send", nil},
		{"a send refused", []salamander.Message{held(1, "u1", "B", "drill message B")},
			func() []sendRecord {
				r := send(0, "A", 0, 0)
				r.err = "not_found"
				return []sendRecord{r, send(1, "B", 1, 1)}
			}(), "refused or never served", nil},
		{"a maybe-sent message placed after the sender's next", []salamander.Message{held(1, "u0", "B", "drill message B"),
			held(2, "u0", "A", "drill message A")},
			func() []sendRecord {
				r := send(0, "A", 0, 0)
				r.err = errAbandoned
				return []sendRecord{r, send(0, "B", 1, 1)}
			}(), "reordered", nil},
		{"a send still unacknowledged when the drain ended", []salamander.Message{held(1, "u1", "B", "drill message B")},
			func() []sendRecord {
				r := send(0, "A", 0, 0)
				r.err = errAbandoned
				return []sendRecord{r, send(1, "B", 1, 1)}
			}(), "unacknowledged when the drain ended", nil},
		{"a second device never got a message", two, twoSent, "never delivered", func(w *workload) {
			w.devices[0].got["g_room"] = w.devices[0].got["g_room"][:1]
		}},
		{"a second device got a message twice", two, twoSent, "duplicated", func(w *workload) {
			d := w.devices[0]
			d.got["g_room"] = append(d.got["g_room"], d.got["g_room"][1])
		}},
		{"a member got a message after a later one", two, twoSent, "reordered", func(w *workload) {
			got := w.users[1].got["g_room"]
			got[0], got[1] = got[1], got[0]
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := judgeHistory(t, tc.hist, tc.recs, tc.tweak)
			failed := strings.Join(rep.Failures, "; ")
			if tc.failure == "" && !rep.OK || tc.failure != "" && !strings.Contains(failed, tc.failure) {
				t.Fatalf("failures %q, want %q (problems %q)", failed, tc.failure, rep.Problems)
			}
		})
	}
}
