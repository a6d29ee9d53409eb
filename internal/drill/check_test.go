package drill

import (
	"testing"

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
