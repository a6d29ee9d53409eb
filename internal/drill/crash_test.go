package drill

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/client"
)

// A site SIGKILLed again and again while the log grows (its read model's
// writer and its own copy of the log mid-write, their ends lost or torn),
// once with its own copy damaged on disk between two starts and once
// stopped with SIGTERM, answers every user exactly as a site that never
// stopped: rooms, members, read markers, history and sync.
func TestCrashedSiteAnswersAsTheOthers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three server processes and kills one of them several times")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	cl, err := StartCluster(ctx, ClusterConfig{Binary: binary, Dir: t.TempDir(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	const burned = 2
	t.Cleanup(func() {
		if t.Failed() {
			for _, i := range []int{0, burned} {
				if st, err := cl.Status(context.Background(), i); err == nil {
					t.Logf("site %s applied %v", cl.Name(i), st.Applied)
				}
			}
			t.Logf("site c's log:\n%s", tail(cl.LogPath(burned), 6000))
		}
		cl.Close()
	})
	at := func(site int) *client.Client {
		c, err := client.New(client.Config{Sites: []string{cl.URL(site)}, MinBackoff: 50 * time.Millisecond,
			MaxBackoff: 500 * time.Millisecond, RequestTimeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.CloseIdleConnections)
		return c
	}
	names := []string{"crash-alice", "crash-bob", "crash-carol"}
	users := map[string]*client.Client{}
	for _, n := range names {
		users[n] = at(0)
		if _, err := users[n].SignUp(ctx, n, n, "correct horse battery"); err != nil {
			t.Fatal(err)
		}
	}
	alice, bob, carol := users[names[0]], users[names[1]], users[names[2]]
	group, err := alice.CreateGroup(ctx, "crash", names[1:])
	if err != nil {
		t.Fatal(err)
	}
	direct, err := alice.DirectRoom(ctx, names[1])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.AddFriend(ctx, names[1]); err != nil {
		t.Fatal(err)
	}

	// The load: messages to both rooms from the surviving sites, read
	// markers, and a rename, a leave and a rejoin along the way.
	var sent atomic.Int64
	loadCtx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	loadErr := make(chan error, 2)
	for i, sender := range []*client.Client{alice, bob} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			room := []string{group.ID, direct.ID}[i]
			for n := 0; loadCtx.Err() == nil; n++ {
				res, err := sender.Send(loadCtx, room, fmt.Sprintf("%s %d %s", sender.UserName(), n, strings.Repeat("x", 300)))
				if err != nil {
					if loadCtx.Err() == nil {
						loadErr <- err
					}
					return
				}
				sent.Add(1)
				if n%7 == 0 && res.Message.Seq > 0 {
					if err := users[names[1-i]].MarkRead(loadCtx, room, res.Message.Seq); err != nil && loadCtx.Err() == nil {
						loadErr <- err
						return
					}
				}
			}
		}()
	}
	// more waits for n more messages than now, so that each kill falls
	// in the middle of the load.
	more := func(n int64) {
		t.Helper()
		want := sent.Load() + n
		for sent.Load() < want {
			select {
			case err := <-loadErr:
				t.Fatalf("the load failed: %v", err)
			case <-ctx.Done():
				t.Fatal(ctx.Err())
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	dir := cl.sites[burned].dataDir
	for round := range 4 {
		more(150)
		switch round {
		case 1:
			if _, err := alice.Rename(ctx, group.ID, "renamed while c burned"); err != nil {
				t.Fatal(err)
			}
		case 2:
			if err := carol.Leave(ctx, group.ID); err != nil {
				t.Fatal(err)
			}
		}
		if round == 3 {
			t.Log("SIGTERM site c")
			if err := cl.Term(burned, 20*time.Second); err != nil {
				t.Fatal(err)
			}
		} else {
			t.Logf("SIGKILL site c (round %d, %d messages sent)", round, sent.Load())
			if err := cl.Kill(burned); err != nil {
				t.Fatal(err)
			}
		}
		if round == 1 {
			damageCopies(t, dir)
		}
		more(50)
		if round == 2 {
			if _, err := alice.Invite(ctx, group.ID, names[2]); err != nil {
				t.Fatal(err)
			}
		}
		if err := cl.Restart(ctx, burned); err != nil {
			t.Fatal(err)
		}
	}
	more(100)
	stopLoad()
	wg.Wait()

	// Every answer at c is every answer at a, once c has applied what a has.
	view := func(site int) (string, error) {
		var b strings.Builder
		for _, n := range names {
			c := at(site)
			c.SetToken(users[n].Token())
			rooms, err := c.Rooms(ctx)
			if err != nil {
				return "", err
			}
			put(&b, n+" rooms", rooms)
			for _, r := range []string{group.ID, direct.ID} {
				room, err := c.Room(ctx, r)
				if code := salamander.ErrorCode(err); code == salamander.CodeForbidden || code == salamander.CodeNotFound {
					continue // not a member (a direct room is not found by others)
				}
				if err != nil {
					return "", err
				}
				put(&b, n+" room "+r, room)
				var msgs []salamander.Message
				q := client.HistoryQuery{Forward: true, Limit: salamander.MaxPageSize}
				for {
					page, err := c.History(ctx, r, q)
					if err != nil {
						return "", err
					}
					msgs = append(msgs, page.Messages...)
					if !page.More || len(page.Messages) == 0 {
						break
					}
					q.After = page.Messages[len(page.Messages)-1].Seq
				}
				put(&b, n+" history "+r, msgs)
			}
			var events []salamander.Event
			cursor := ""
			for {
				res, err := c.Sync(ctx, cursor, 500)
				if err != nil {
					return "", err
				}
				events = append(events, res.Events...)
				cursor = res.Cursor
				if !res.More {
					break
				}
			}
			put(&b, n+" sync", events)
			put(&b, n+" cursor", cursor)
			friends, err := c.Friends(ctx)
			if err != nil {
				return "", err
			}
			put(&b, n+" friends", friends)
		}
		return b.String(), nil
	}
	var want, got string
	var last error
	wctx, stop := context.WithTimeout(ctx, 60*time.Second)
	defer stop()
	err = poll(wctx, 200*time.Millisecond, func() (bool, error) {
		if want, last = view(0); last != nil {
			last = fmt.Errorf("site a: %w", last)
			return false, nil
		}
		got, last = view(burned) // c may still be applying the last messages
		if last != nil {
			last = fmt.Errorf("site c: %w", last)
		}
		return last == nil && got == want, nil
	})
	if err != nil {
		if last != nil {
			t.Fatalf("after its crashes: %v", last)
		}
		t.Fatalf("site c answers otherwise than site a after its crashes:\n%s", firstDifference(want, got))
	}
	t.Logf("%d messages; site c answers as site a after three SIGKILLs, a damaged copy and a SIGTERM", sent.Load())
}

// damageCopies tears every own-copy file of the site at dir short in the
// middle of a record and writes garbage over the end of each index.
func damageCopies(t *testing.T, dir string) {
	t.Helper()
	logs, err := filepath.Glob(filepath.Join(dir, "log", "*", "*.log"))
	if err != nil || len(logs) == 0 {
		t.Fatalf("no own copy under %s: %v", dir, err)
	}
	for _, p := range logs {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() > 100 {
			if err := os.Truncate(p, st.Size()*2/3+7); err != nil {
				t.Fatal(err)
			}
		}
		f, err := os.OpenFile(p+".idx", os.O_RDWR|os.O_APPEND, 0)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.Write([]byte{0xde, 0xad, 0xbe, 0xef, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3})
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("damaged %d copies of the log", len(logs))
}

func put(b *strings.Builder, what string, x any) {
	j, _ := json.Marshal(x)
	fmt.Fprintf(b, "%s: %s\n", what, j)
}

// firstDifference shows the first line where want and got differ.
func firstDifference(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := range max(len(w), len(g)) {
		var a, b string
		if i < len(w) {
			a = w[i]
		}
		if i < len(g) {
			b = g[i]
		}
		if a != b {
			return fmt.Sprintf("a: %.2000s\nc: %.2000s", a, b)
		}
	}
	return ""
}
