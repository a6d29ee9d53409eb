package integration

import (
	"fmt"
	"testing"
	"time"

	"github.com/salamander-chat/salamander/internal/view"
)

// A room's dedupe window leaves memory at every site once the room has
// been quiet for the idle time, and the room works on: a resend of an
// earlier message is answered as the duplicate it is, a new message is
// applied once at every site (each reads the window back), and the
// metrics show the windows leave and come back.
func TestIdleWindowsLeaveAndComeBack(t *testing.T) {
	a, _ := signedUp(t, 0, "wina")
	b, bName := signedUp(t, 1, "winb")
	ctx := testCtx(t, 60*time.Second)
	room, err := a.DirectRoom(ctx, bName)
	if err != nil {
		t.Fatal(err)
	}
	first, err := a.SendWithID(ctx, room.ID, "window-1", "before the window left")
	if err != nil {
		t.Fatal(err)
	}
	before := make([]scraped, 3)
	for i := range before {
		before[i] = scrape(t, i)
		// Every window of the shared cluster may go: which rooms hold one
		// in memory changes nothing any test can see but their speed.
		cluster.Site(i).View().SetWindowIdle(time.Nanosecond)
		t.Cleanup(func() { cluster.Site(i).View().SetWindowIdle(view.WindowIdle) })
	}
	grew := func(i int, name string) (float64, error) {
		was, _ := before[i].sum(name)
		is, n := scrape(t, i).sum(name)
		if n != 1 {
			return 0, fmt.Errorf("site %d: %d series of %s", i, n, name)
		}
		return is - was, nil
	}
	// The idle time has passed for every room: once the store holds their
	// messages, no window is left in memory, this room's included.
	checkFor(t, 40*time.Second, 200*time.Millisecond, func() error {
		for i := range 3 {
			if d, err := grew(i, "salamander_view_dedupe_window_evictions_total"); err != nil || d < 1 {
				return fmt.Errorf("site %d: evictions +%v (%v)", i, d, err)
			}
			if n, _ := scrape(t, i).sum("salamander_view_dedupe_windows"); n != 0 {
				return fmt.Errorf("site %d: %v windows in memory", i, n)
			}
		}
		return nil
	})
	again, err := a.SendWithID(ctx, room.ID, "window-1", "before the window left")
	if err != nil || !again.Duplicate || again.Message.Seq != first.Message.Seq {
		t.Fatalf("resend after the window left: %+v %v, want a duplicate of seq %d", again, err, first.Message.Seq)
	}
	second, err := b.SendWithID(ctx, room.ID, "window-2", "after")
	if err != nil || second.Duplicate || second.Message.Seq != first.Message.Seq+1 {
		t.Fatalf("a new message after the window left: %+v %v", second, err)
	}
	checkFor(t, 20*time.Second, 100*time.Millisecond, func() error {
		for i := range 3 {
			if d, err := grew(i, "salamander_view_dedupe_window_loads_total"); err != nil || d < 1 {
				return fmt.Errorf("site %d: window loads +%v (%v)", i, d, err)
			}
		}
		return nil
	})
	checkFor(t, 20*time.Second, 100*time.Millisecond, func() error {
		for i := range 3 {
			page, err := cluster.Site(i).View().History(ctx, room.ID, 0, 0, false, 10)
			if err != nil || len(page.Messages) != 2 {
				return fmt.Errorf("site %d: history %+v %v, want the two messages", i, page, err)
			}
		}
		return nil
	})
}
