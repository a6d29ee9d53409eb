package view

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/internal/jsstore"
)

// BenchmarkStoreWrite measures the store writer's cost per message under
// the bench's p2p load: 200 1:1 rooms, records of 6 100-byte messages to
// different rooms (group commit), ids as long as the product's (a direct
// room's 34 characters, an SDK client id's 32), and one
// transaction per 750 messages (the writer's 250 ms pace at ~3,000
// msg/s). It reports the writer's time per message; applying to the model
// is outside the timer.
func BenchmarkStoreWrite(b *testing.B) {
	const rooms, perRecord, perWrite = 200, 6, 750
	v, err := Open(filepath.Join(b.TempDir(), "view.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer v.Close()
	v.src = &memLog{}
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	seq := map[string]uint64{}
	entry := func(stream string, rec salamander.Record) jsstore.Entry {
		seq[stream]++
		rec.At = at
		return jsstore.Entry{Pos: jsstore.PositionOf(stream, seq[stream], 0), Last: true, Record: rec}
	}
	user := func(i int) string { return fmt.Sprintf("user%06d", i) }
	roomName := func(r int) string { return fmt.Sprintf("d_%032x", r*7919) }
	var setup []jsstore.Entry
	for i := range 2 * rooms {
		setup = append(setup, entry("acct", salamander.Record{Type: salamander.RecUserCreated, User: user(i), PasswordHash: "h"}))
	}
	for r := range rooms {
		setup = append(setup, entry("p0", salamander.Record{Type: salamander.RecRoomCreated, Room: roomName(r),
			Kind: salamander.RoomDirect, Members: []string{user(2 * r), user(2*r + 1)}, By: user(2 * r)}))
	}
	if err := v.applyBatch(setup); err != nil {
		b.Fatal(err)
	}
	n := 0
	// record returns one record's entries: perRecord messages to rooms
	// in turn, the two members taking turns (a send also moves the
	// sender's own read marker).
	record := func() []jsstore.Entry {
		s := seq["p0"] + 1
		seq["p0"] = s
		var out []jsstore.Entry
		for k := range perRecord {
			r := n % rooms
			out = append(out, jsstore.Entry{Pos: jsstore.PositionOf("p0", s, k), Record: salamander.Record{
				Type: salamander.RecMessageSent, Room: roomName(r), User: user(2*r + n/rooms%2),
				ClientID: fmt.Sprintf("%032x", n), Text: strings.Repeat("x", 100), At: at}})
			n++
		}
		out[len(out)-1].Last = true
		return out
	}
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		var batches []*dbBatch
		for range perWrite / perRecord {
			db, err := v.applyModel(record())
			if err != nil {
				b.Fatal(err)
			}
			batches = append(batches, db)
		}
		b.StartTimer()
		if err := v.write(batches); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*perWrite/perRecord*perRecord), "ns/msg")
}

// BenchmarkColdRooms measures what a restarted site's applier does when
// the first messages reach rooms with long histories: 64 rooms of
// DedupeWindow+100 messages each, the store reopened, then one record
// with a message to every room. It reports how long the model's write
// lock is held applying that record ("lock-ms", what every request of
// the site waits behind), and how long reading the rooms' windows takes
// ("read-ms", outside the lock when preloaded); "preload=off" loads each
// window while applying, under the lock.
func BenchmarkColdRooms(b *testing.B) {
	const rooms = 64
	path := filepath.Join(b.TempDir(), "view.db")
	v, err := Open(path, nil)
	if err != nil {
		b.Fatal(err)
	}
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var seq uint64
	entry := func(rec salamander.Record) jsstore.Entry {
		seq++
		rec.At = at
		return jsstore.Entry{Pos: salamander.Position{Stream: "p0", Seq: seq}, Record: rec}
	}
	roomName := func(r int) string { return fmt.Sprintf("d_%032x", r*7919) }
	send := func(r, i int) jsstore.Entry {
		return entry(salamander.Record{Type: salamander.RecMessageSent, Room: roomName(r), User: "alice",
			ClientID: fmt.Sprintf("%032x", r<<32|i), Text: "x"})
	}
	var setup []jsstore.Entry
	for r := range rooms {
		setup = append(setup, entry(salamander.Record{Type: salamander.RecRoomCreated, Room: roomName(r),
			Kind: salamander.RoomGroup, Name: "g", Members: []string{"alice"}, By: "alice"}))
	}
	for i := range DedupeWindow + 100 {
		for r := range rooms {
			setup = append(setup, send(r, i))
		}
		if len(setup) >= 8192 {
			if err := v.applyBatch(setup); err != nil {
				b.Fatal(err)
			}
			setup = setup[:0]
		}
	}
	if err := v.applyBatch(setup); err != nil {
		b.Fatal(err)
	}
	v.Close()
	base := seq
	for _, preload := range []bool{true, false} {
		b.Run(fmt.Sprintf("preload=%v", map[bool]string{true: "on", false: "off"}[preload]), func(b *testing.B) {
			var lock, read time.Duration
			for i := range b.N {
				v, err := Open(path, nil)
				if err != nil {
					b.Fatal(err)
				}
				v.src = &memLog{}
				// The same positions every round: the store is reopened
				// as the set-up left it.
				seq = base
				var batch []jsstore.Entry
				for r := range rooms {
					batch = append(batch, send(r, DedupeWindow+100+i))
				}
				start := time.Now()
				if preload {
					v.preloadWindows(batch)
				}
				mid := time.Now()
				if _, err := v.applyModel(batch); err != nil {
					b.Fatal(err)
				}
				read += mid.Sub(start)
				lock += time.Since(mid)
				v.Close()
			}
			b.ReportMetric(float64(lock.Microseconds())/1000/float64(b.N), "lock-ms")
			b.ReportMetric(float64(read.Microseconds())/1000/float64(b.N), "read-ms")
		})
	}
}

// BenchmarkSyncFirstPage measures a page of one event from the start of a
// room with a long history (50,000 messages and as many read markers), as
// a device that syncs from nothing, or a WebSocket's replay, asks for it.
// The work must not grow with the history behind the page.
func BenchmarkSyncFirstPage(b *testing.B) {
	const messages = 50000
	v, err := Open(filepath.Join(b.TempDir(), "view.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer v.Close()
	log := &memLog{}
	v.src = log
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	seq := map[string]uint64{}
	var batch []jsstore.Entry
	add := func(stream string, rec salamander.Record) {
		seq[stream]++
		rec.At = at
		batch = append(batch, jsstore.Entry{Pos: jsstore.PositionOf(stream, seq[stream], 0), Last: true, Record: rec})
		if len(batch) == 2000 {
			log.add(batch)
			if err := v.applyBatch(batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	for _, u := range []string{"alice", "bob"} {
		add("acct", salamander.Record{Type: salamander.RecUserCreated, User: u, PasswordHash: "h"})
	}
	add("p0", salamander.Record{Type: salamander.RecRoomCreated, Room: "g_long", Kind: salamander.RoomGroup, Name: "long",
		Members: []string{"alice", "bob"}, By: "alice"})
	for i := range messages {
		add("p0", salamander.Record{Type: salamander.RecMessageSent, Room: "g_long", User: "alice", ClientID: fmt.Sprint("m", i), Text: "x"})
		add("p0", salamander.Record{Type: salamander.RecMessageRead, Room: "g_long", User: "bob", Seq: uint64(i + 1)})
	}
	log.add(batch)
	if err := v.applyBatch(batch); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if _, err := v.Sync(ctx, "bob", salamander.Cursor{}, 1); err != nil { // waits for the store to hold it all
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		res, err := v.Sync(ctx, "bob", salamander.Cursor{}, 1)
		if err != nil || len(res.Events) != 1 || !res.More {
			b.Fatalf("%d events, more %v, %v", len(res.Events), res.More, err)
		}
	}
}

// BenchmarkReportsOfAUser reads one user's damage reports (a page of 20)
// and one report by id among 20,000 reports of 2,000 users: what the
// console and a filer's every view and answer ask.
func BenchmarkReportsOfAUser(b *testing.B) {
	v, err := Open(filepath.Join(b.TempDir(), "view.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer v.Close()
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var seq uint64
	var batch []jsstore.Entry
	add := func(rec salamander.Record) {
		seq++
		rec.At = at.Add(time.Duration(seq) * time.Millisecond)
		batch = append(batch, jsstore.Entry{Pos: jsstore.PositionOf("acct", seq, 0), Last: true, Record: rec})
	}
	add(salamander.Record{Type: salamander.RecUserCreated, User: "op", PasswordHash: "h"})
	add(salamander.Record{Type: salamander.RecRoleSet, User: "op", Role: "operator"})
	add(salamander.Record{Type: salamander.RecIncidentOpened, By: "op", Incident: &salamander.IncidentChange{ID: "inc-bench0001",
		Title: salamander.Localized{EN: "t"}, State: "investigating", Impact: "major", Services: []string{"login"},
		Message: salamander.Localized{EN: "m"}}})
	amount := int64(100)
	const users, reports = 2000, 20000
	for u := range users {
		add(salamander.Record{Type: salamander.RecUserCreated, User: fmt.Sprint("u", u), PasswordHash: "h"})
	}
	for i := range reports {
		u := fmt.Sprint("u", i%users)
		add(salamander.Record{Type: salamander.RecReportFiled, User: u, By: u, Report: &salamander.ReportChange{
			ID: fmt.Sprintf("rep-%09d", i), Incident: "inc-bench0001", Category: "other", Description: "d", Currency: "KRW", Amount: &amount}})
	}
	if err := v.applyBatch(batch); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if got, err := v.Reports(ctx, ReportFilter{User: "u7", Limit: 20}); err != nil || len(got) != reports/users {
		b.Fatalf("%d reports of u7, %v", len(got), err)
	}
	b.ResetTimer()
	for i := range b.N {
		if got, err := v.Reports(ctx, ReportFilter{User: fmt.Sprint("u", i%users), Limit: 20}); err != nil || len(got) != reports/users {
			b.Fatalf("%d reports, %v", len(got), err)
		}
		if got, err := v.Reports(ctx, ReportFilter{ID: fmt.Sprintf("rep-%09d", i%reports)}); err != nil || len(got) != 1 {
			b.Fatalf("%d reports by id, %v", len(got), err)
		}
	}
}
