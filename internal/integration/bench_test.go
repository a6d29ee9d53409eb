package integration

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/client"
)

// benchRoom signs up two users and returns a client of the first, pinned to
// site 0, and their 1:1 room.
func benchRoom(b *testing.B) (*client.Client, string) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	mk := func(i int) (*client.Client, string) {
		c, err := client.New(client.Config{Sites: cluster.URLs(), Prefer: i})
		if err != nil {
			b.Fatal(err)
		}
		name := uniqueName("bench")
		if _, err := c.SignUp(ctx, name, name, "correct horse battery"); err != nil {
			b.Fatal(err)
		}
		return c, name
	}
	a, _ := mk(0)
	_, bName := mk(1)
	room, err := a.DirectRoom(ctx, bName)
	if err != nil {
		b.Fatal(err)
	}
	return a, room.ID
}

// BenchmarkSend measures one client's acknowledged sends: validation, an R3
// append with sync_interval always (quorum of three fsyncing servers), and
// this site's apply (read-your-writes) — the latency a user waits for "sent".
func BenchmarkSend(b *testing.B) {
	c, room := benchRoom(b)
	ctx := context.Background()
	timeSends(ctx, b, c, room)
}

// timeSends sends b.N messages one after the other and reports their
// latency percentiles.
func timeSends(ctx context.Context, b *testing.B, c *client.Client, room string) {
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if _, err := c.Send(ctx, room, fmt.Sprintf("bench %d", i)); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	reportPercentiles(b, lat)
}

// BenchmarkSendWebSocket is BenchmarkSend for a client with a live
// Subscription, whose SDK then sends over that WebSocket (a send frame
// answered by an ack frame, no HTTP request, no token check per send); the
// subscription drains its events, the sender's own messages among them.
func BenchmarkSendWebSocket(b *testing.B) {
	c, room := benchRoom(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sub := c.Subscribe(ctx)
	defer sub.Close()
	ready := make(chan struct{})
	go func() {
		for ev := range sub.Events() {
			if ev.Type == salamander.EventReady {
				close(ready)
				break
			}
		}
		for range sub.Events() {
		}
	}()
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		b.Fatal("the subscription never got ready")
	}
	timeSends(ctx, b, c, room)
}

// BenchmarkSendParallel measures throughput with many concurrent senders,
// each in its own room. Users, rooms and connections are set up before the
// timer starts, so only sends are measured.
func BenchmarkSendParallel(b *testing.B) {
	const senders = 16
	type sender struct {
		c    *client.Client
		room string
	}
	ready := make(chan sender, senders)
	for i := 0; i < senders; i++ {
		c, room := benchRoom(b)
		ready <- sender{c, room}
	}
	var n atomic.Int64
	b.SetParallelism(senders / 2) // GOMAXPROCS is 2 here: 16 goroutines
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var s sender
		select {
		case s = <-ready:
		default:
			s.c, s.room = benchRoom(b) // more goroutines than expected
		}
		ctx := context.Background()
		for pb.Next() {
			if _, err := s.c.Send(ctx, s.room, fmt.Sprintf("p %d", n.Add(1))); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkHistory measures reading a 50-message page from the read model.
func BenchmarkHistory(b *testing.B) {
	c, room := benchRoom(b)
	ctx := context.Background()
	for i := 0; i < 60; i++ {
		if _, err := c.Send(ctx, room, fmt.Sprintf("h %d", i)); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.History(ctx, room, client.HistoryQuery{Limit: 50}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWebSocketConnect measures a device's (re)connect: the
// handshake, the token check and the replay up to "ready", for a user
// with messages in two rooms — what every device of a burned site does at
// once at the sites that remain. from-nothing connects without a cursor
// (replays all 40 messages and their read markers), from-cursor with the
// cursor of the first connection's ready (nothing to replay: a device
// that was up to date).
func BenchmarkWebSocketConnect(b *testing.B) {
	ctx := context.Background()
	c, _ := benchRoom(b)
	for range 2 {
		other, _ := benchRoom(b)
		room, err := other.DirectRoom(ctx, mustMe(b, c))
		if err != nil {
			b.Fatal(err)
		}
		for i := range 20 {
			if _, err := other.Send(ctx, room.ID, fmt.Sprintf("c %d", i)); err != nil {
				b.Fatal(err)
			}
		}
	}
	addr := strings.TrimPrefix(cluster.URL(0), "http://")
	connect := func(b *testing.B, cursor string) []byte {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
		path := "/v1/ws"
		if cursor != "" {
			path += "?cursor=" + url.QueryEscape(cursor)
		}
		if _, err := io.WriteString(conn, "GET "+path+" HTTP/1.1\r\nHost: "+addr+"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"+
			"Authorization: Bearer "+c.Token()+"\r\n\r\n"); err != nil {
			b.Fatal(err)
		}
		got, err := readUntilReady(conn, 64<<10)
		if err != nil {
			b.Fatal(err)
		}
		return got
	}
	run := func(b *testing.B, cursor string) {
		lat := make([]time.Duration, 0, b.N)
		b.ResetTimer()
		for range b.N {
			start := time.Now()
			connect(b, cursor)
			lat = append(lat, time.Since(start))
		}
		b.StopTimer()
		reportPercentiles(b, lat)
	}
	b.Run("from-nothing", func(b *testing.B) { run(b, "") })
	b.Run("from-cursor", func(b *testing.B) {
		got := connect(b, "")
		_, after, _ := bytes.Cut(got[bytes.Index(got, []byte(`"type":"ready"`)):], []byte(`"cursor":"`))
		cursor, _, ok := bytes.Cut(after, []byte(`"`))
		if !ok || len(cursor) == 0 {
			b.Fatalf("no cursor in the ready event: %s", got)
		}
		run(b, string(cursor))
	})
}

// mustMe returns the user c is logged in as.
func mustMe(b *testing.B, c *client.Client) string {
	me, err := c.Me(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	return me.Name
}

func reportPercentiles(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}
