package gateway

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/salamander-chat/salamander"
)

// FuzzPresenceMessages hands a sequence of presence messages, one a line,
// to one process's handlers as NATS would: a line starting with '1' to the
// v1 handler, with 's' to the resync request handler (whose reply goes
// nowhere), with '@' and a letter to the v2 handler as heard on the
// subject of the site of that letter's name, anything else (after an
// optional '2') to the v2 handler as heard on the earlier versions'
// subject. After
// every message the mirror is consistent: every instance's set has the
// size, hashes and buckets its members give; a user's count is the number
// of instances listing them; only known instances are marked for resync;
// an instance heard on a site's subject is one of that site's;
// instances are named as the protocol names them, of sites named as sites
// are, under names a gateway gives itself, listing only valid user names,
// and at most maxRemoteInstances besides this one; and the users held are
// never more than the bytes that came in (a claimed count or version
// allocates nothing). The last push about a user says what the counts say.
func FuzzPresenceMessages(f *testing.F) {
	// (More seeds in testdata/fuzz/FuzzPresenceMessages.)
	f.Add([]byte(`{"kind":"delta","inst":"ab12","site":"b","ver":1,"on":["alice"]}` + "\n" +
		`{"kind":"delta","inst":"ab12","site":"b","ver":5,"on":["carol"]}` + "\n" +
		`{"kind":"beat","inst":"ab12","site":"b","name":"gw-b-1:8080","ver":5,"count":2,"hash":7,"ttl_ms":600000}`))
	f.Add([]byte(`{"kind":"beat","inst":"cc","site":"a","name":"<b>x</b>"}` + "\n" +
		`{"kind":"beat","inst":"dd","site":"A B","name":"gw"}` + "\n" +
		`{"kind":"delta","inst":"ee","ver":1,"on":["carol"]}`))
	f.Add([]byte(`{"kind":"delta","inst":"ab12","site":"b","ver":1,"on":["alice"]}` + "\n" +
		`{"kind":"bye","inst":"ab12","grace_ms":1}` + "\n" +
		`{"kind":"delta","inst":"ab12","site":"b","ver":2,"off":["alice"],"left_ms":-5}` + "\n" +
		`{"kind":"bye","inst":"ab12"}`))
	f.Add([]byte(`@b{"kind":"delta","inst":"b-ab12","site":"b","ver":1,"on":["alice"]}` + "\n" +
		`@a{"kind":"bye","inst":"b-ab12","site":"a"}` + "\n" +
		`{"kind":"delta","inst":"b-ab12","site":"b","ver":2,"off":["alice"]}` + "\n" +
		`@a{"kind":"delta","inst":"a-cd34","site":"b","ver":1,"on":["bob"]}`))
	f.Add([]byte(`@a{"kind":"beat","inst":"b-ab12","site":"a","ver":9,"ttl_ms":600000}` + "\n" +
		`@a{"kind":"delta","inst":"a-b-ab12","site":"a","ver":1,"on":["carol"]}` + "\n" +
		`@b{"kind":"delta","inst":"b-ab12","site":"b","ver":1,"on":["alice"]}`))
	f.Add([]byte(`1{"site":"Old Site","users":["carol"],"full":true}` + "\n" +
		`1{"site":"old","users":["carol","Not A Name","","x"],"full":true}` + "\n" +
		`1{"site":"old","users":["dave"],"offline":["carol","a..b"]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		d := &fuzzDevices{}
		e := newFuzzEphemeral(d)
		in := 0
		for _, line := range bytes.Split(data, []byte("\n")) {
			in += len(line) + 1
			msg := &nats.Msg{Data: line}
			switch {
			case len(line) > 0 && line[0] == '1':
				msg.Subject, msg.Data = subjPresence, line[1:]
				e.onPresenceV1(msg)
			case len(line) > 1 && line[0] == '@':
				msg.Subject, msg.Data = subjPresenceAt+string(line[1]), line[2:]
				e.onPresence(msg)
			case len(line) > 0 && line[0] == 's':
				msg.Subject, msg.Reply, msg.Data = subjPresenceSync+e.id, "_INBOX.fuzz", line[1:]
				e.onSyncRequest(msg)
			default:
				msg.Subject, msg.Data = subjPresenceV2, bytes.TrimPrefix(line, []byte("2"))
				e.onPresence(msg)
			}
			select {
			case <-e.beatNow:
			default:
			}
			checkPresenceState(t, e, in)
		}
		last := map[string]bool{}
		for _, p := range d.sent {
			last[p.ev.User] = p.ev.Online
			if want := fuzzWatchers(e, p.ev.User); !slices.Equal(sorted(p.to), want) {
				t.Fatalf("presence of %q pushed to %v, want its watchers %v", p.ev.User, p.to, want)
			}
		}
		for u, on := range last {
			if on != (e.count[u] > 0) {
				t.Fatalf("last push says %q online=%v, count %d", u, on, e.count[u])
			}
		}
	})
}

// FuzzPresenceSyncList pages through a set of users the way a resync
// does: list replies for the buckets it wants, from the name after, until
// every bucket is done. Whatever the names and the reply budget (as long
// as one name fits a reply), every reply makes progress as the resync
// demands, stays within the budget, and the pages together give exactly
// the users of the wanted buckets, each once.
func FuzzPresenceSyncList(f *testing.F) {
	f.Fuzz(func(t *testing.T, names []byte, pick []byte, budget uint16) {
		s := newUserSet()
		for _, n := range bytes.FieldsFunc(names, func(r rune) bool { return r == ',' || r == '\n' }) {
			s.add(fuzzUserName(string(n)))
		}
		// The budget: the real one, or any in which one part of one
		// longest name fits.
		b := syncReplyBudget
		if budget != 0 {
			least := syncPartOverhead + 32 + 3
			b = least + int(budget)%(syncReplyBudget-least)
		}
		// Wanted buckets, ascending and distinct as resync asks for them:
		// those pick names (two bytes each), plus every non-empty one when
		// pick is empty or its length odd.
		var want []int
		for i := 0; i+1 < len(pick); i += 2 {
			want = append(want, (int(pick[i])<<8|int(pick[i+1]))%presenceBuckets)
		}
		if len(pick)%2 == 1 || len(pick) == 0 {
			for i, m := range s.buckets {
				if len(m) > 0 {
					want = append(want, i)
				}
			}
		}
		slices.Sort(want)
		want = slices.Compact(want)
		got := map[int][]string{}
		rest, after := want, ""
		for round := 0; len(rest) > 0; round++ {
			if round > s.n+len(want)+1 {
				t.Fatalf("no end after %d replies for %d users in %d buckets", round, s.n, len(want))
			}
			parts, done, next := s.list(rest, after, b)
			if done < 0 || done > len(rest) || done == len(rest) && next != "" || done == 0 && next == "" {
				t.Fatalf("reply makes no progress: %d of %d buckets done, next %q", done, len(rest), next)
			}
			if next != "" && after != "" && done == 0 && next <= after {
				t.Fatalf("reply goes back: after %q, next %q", after, next)
			}
			size := 0
			for _, p := range parts {
				size += syncPartOverhead
				for _, u := range p.Users {
					size += len(u) + 3
				}
				if !slices.Contains(rest, p.Bucket) {
					t.Fatalf("part for bucket %d, not asked for", p.Bucket)
				}
				got[p.Bucket] = append(got[p.Bucket], p.Users...)
			}
			if size > b {
				t.Fatalf("reply of %d bytes over its budget %d", size, b)
			}
			enc, _ := json.Marshal(syncReply{Ver: ^uint64(0), Parts: parts, Done: done, After: next})
			if len(enc) > b+256 {
				t.Fatalf("reply of %d bytes: over its budget %d and the 256 bytes left for its other fields", len(enc), b)
			}
			rest, after = rest[done:], next
		}
		for _, bkt := range want {
			var all []string
			for u := range s.buckets[bkt] {
				all = append(all, u)
			}
			if g := sorted(got[bkt]); !slices.Equal(g, sorted(all)) {
				t.Fatalf("bucket %d listed as %v, holds %v", bkt, g, sorted(all))
			}
		}
	})
}

// checkPresenceState checks the mirror after in bytes of messages.
func checkPresenceState(t *testing.T, e *ephemeral, in int) {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	counts := map[string]int{}
	held := 0
	if e.others() > maxRemoteInstances {
		t.Fatalf("%d instances mirrored besides this one, over %d", e.others(), maxRemoteInstances)
	}
	for id, r := range e.remotes {
		if !validInstance(id) && !(r.v1 && id == "v1."+r.site && r.site != "") {
			t.Fatalf("instance %q (site %q, v1 %v) is not a name the protocol gives", id, r.site, r.v1)
		}
		if !salamander.ValidSiteName(r.site) || !validInstanceName(r.name) {
			t.Fatalf("instance %q of site %.40q named %.40q", id, r.site, r.name)
		}
		if r.sited && !instanceOfSite(id, r.site) {
			t.Fatalf("instance %q mirrored from site %q's subject", id, r.site)
		}
		if r.ttl < minPresenceTTL || r.ttl > maxPresenceTTL {
			t.Fatalf("instance %q kept for %v", id, r.ttl)
		}
		n, size, sum := 0, 0, uint64(0)
		for b, m := range r.set.buckets {
			bs := uint64(0)
			for u := range m {
				h := userHash(u)
				if bucketOf(h) != b {
					t.Fatalf("user %q in bucket %d, hashes to %d", u, b, bucketOf(h))
				}
				if salamander.ValidateUserName(u) != nil {
					t.Fatalf("instance %q lists %.40q, not a user's name", id, u)
				}
				bs ^= h
				n++
				size += len(u)
				counts[u]++
			}
			if bs != r.set.sums[b] {
				t.Fatalf("instance %q bucket %d: hash %x, members give %x", id, b, r.set.sums[b], bs)
			}
			sum ^= bs
		}
		if n != r.set.n || sum != r.set.sum || size != r.set.bytes {
			t.Fatalf("instance %q: size %d hash %x bytes %d, members give %d %x %d", id, r.set.n, r.set.sum, r.set.bytes, n, sum, size)
		}
		held += n + len(r.held)
	}
	if held > in/2 {
		t.Fatalf("%d users held after %d bytes of messages", held, in)
	}
	for u, c := range e.count {
		if c != counts[u] {
			t.Fatalf("user %q counted %d times, listed by %d instances", u, c, counts[u])
		}
	}
	for u, c := range counts {
		if e.count[u] != c {
			t.Fatalf("user %q listed by %d instances, counted %d", u, c, e.count[u])
		}
	}
	for id := range e.dirty {
		if e.remotes[id] == nil {
			t.Fatalf("unknown instance %q marked for resync", id)
		}
	}
}

// newFuzzEphemeral is an ephemeral without NATS: local users alice, bob
// and a few more, and alice and bob each watching the other and carol.
func newFuzzEphemeral(d devices) *ephemeral {
	e := &ephemeral{id: instanceID("a", "f00d"), site: "a", ttl: DefaultPresenceTTL, beat: DefaultPresenceBeat, grace: DefaultPresenceGrace,
		hub: d, log: slog.New(slog.DiscardHandler), now: time.Now,
		local: newUserSet(), leaving: map[string]time.Time{}, remotes: map[string]*remote{}, count: map[string]int{}, lastSeen: newSeenTimes(maxLastSeen),
		dirty: map[string]bool{}, follows: map[string][]string{}, watchers: map[string]map[string]struct{}{},
		kick: make(chan struct{}, 1), beatNow: make(chan struct{}, 1)}
	for _, u := range []string{"alice", "bob", "dave", "erin", "frank", strings.Repeat("z", 32)} {
		e.local.add(u)
		e.ver++
	}
	e.follow("alice", "bob")
	e.follow("alice", "carol")
	e.follow("bob", "alice")
	e.follow("bob", "carol")
	return e
}

func fuzzWatchers(e *ephemeral, user string) []string {
	var out []string
	for w := range e.watchers[user] {
		out = append(out, w)
	}
	return sorted(out)
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	sort.Strings(s)
	return s
}
