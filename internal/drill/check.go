package drill

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/client"
)

// Verdict is what the checker found, message by message.
type Verdict struct {
	// Acked counts sends the cluster acknowledged.
	Acked int `json:"acked"`
	// Unacked counts sends still unacknowledged when the drill stopped
	// waiting; each must be committed once or not at all.
	Unacked          int `json:"unacked"`
	UnackedCommitted int `json:"unacked_committed"`
	UnackedAbsent    int `json:"unacked_absent"`
	// Held counts sends acknowledged as held (their partition was electing
	// a leader): each must be placed once, after the sender's earlier ones.
	Held int `json:"held"`
	// Lost counts acknowledged messages missing from some checked site's
	// history or from some member's live delivery.
	Lost int `json:"lost"`
	// LostAtSites counts (message, site) pairs where an acknowledged
	// message was missing from the site's history.
	LostAtSites int `json:"lost_at_sites"`
	// MissingDeliveries counts (message, device) pairs where a message the
	// sites hold was never delivered live to a device of a member of its
	// room (each member's own subscription and Config.Devices more),
	// whether or not its send was acknowledged.
	MissingDeliveries int `json:"missing_deliveries"`
	// Refused counts sends that ended with an error before the drill
	// stopped waiting: a refusal for good, or no site serving them for as
	// long as the SDK tried. Every send must be acknowledged in the end.
	Refused int `json:"refused"`
	// Abandoned counts sends still unacknowledged when the load's drain
	// ended (Config.Drain after the load stopped): clients that could not
	// write for all that time, through every site.
	Abandoned int `json:"abandoned"`
	// Altered counts messages held at the checked sites with another
	// sender or text than their send's.
	Altered int `json:"altered"`
	// Foreign counts messages in the workload's rooms that no send of the
	// workload made: a copy under another client id, or a stray write.
	Foreign int `json:"foreign"`
	// Duplicated counts messages stored twice under one client id, or
	// delivered twice to one member.
	Duplicated int `json:"duplicated"`
	// Reordered counts deliveries that arrived after a later message of
	// the same room, and history pages out of seq order.
	Reordered int `json:"reordered"`
	// Converged is true when every checked site holds the same history for
	// every room and reports the same unread count and read marker for
	// every member of every room.
	Converged bool `json:"converged"`
	// CheckedSites are the sites whose histories and unread counts were
	// compared.
	CheckedSites []string `json:"checked_sites"`
	// HeldPlaceWaitMS is how long the check waited for messages
	// acknowledged held to get their place once the sites agreed on
	// everything else (0: they had it by then; all of --settle if some
	// never did). Held messages acknowledged in the last moments of the
	// load are placed by a merge that may land after the check starts.
	HeldPlaceWaitMS float64 `json:"held_place_wait_ms,omitempty"`
	// Problems describes the first few failures found.
	Problems []string `json:"problems,omitempty"`
}

// maxProblems bounds Verdict.Problems.
const maxProblems = 20

func (v *Verdict) problem(format string, args ...any) {
	if len(v.Problems) < maxProblems {
		v.Problems = append(v.Problems, fmt.Sprintf(format, args...))
	}
}

// checker verifies a finished workload against the sites in sites.
type checker struct {
	w      *workload
	sites  []int
	settle time.Duration // bound on each wait for the sites to agree
	// pinned[u][k] is user u's client pinned to sites[k].
	pinned map[*user][]*client.Client
}

func newChecker(w *workload, sites []int, settle time.Duration) (*checker, error) {
	ch := &checker{w: w, sites: sites, settle: settle, pinned: map[*user][]*client.Client{}}
	for _, u := range w.users {
		for _, i := range sites {
			c, err := w.pinned(u, i)
			if err != nil {
				return nil, fmt.Errorf("drill: checker client: %w", err)
			}
			ch.pinned[u] = append(ch.pinned[u], c)
		}
	}
	return ch, nil
}

// histories fetches every room's full history from every checked site,
// polling until the sites agree on each room's newest seq, it is at least
// the newest acknowledged one (read models apply the log asynchronously)
// and every message acknowledged held in it has its place (a merge places
// held messages once their partition has a leader), or until ctx ends;
// then it returns what it has.
//
// heldWait is how long it waited for held messages alone: from the first
// look at which everything else had settled to the one at which they were
// placed too (0 when they were by then).
func (ch *checker) histories(ctx context.Context, minSeq map[string]uint64, held map[string][]string) (_ map[string][][]salamander.Message, heldWait time.Duration, _ error) {
	var out map[string][][]salamander.Message
	var lastErr error
	var waitingForHeld time.Time // the first look at which only held messages were missing
	err := poll(ctx, 500*time.Millisecond, func() (bool, error) {
		h := map[string][][]salamander.Message{}
		settled, placed := true, true
		for _, r := range ch.w.rooms {
			var last uint64
			for k := range ch.sites {
				msgs, err := fullHistory(ctx, ch.pinned[r.members[0]][k], r.id)
				if err != nil {
					lastErr = err
					return false, nil
				}
				h[r.id] = append(h[r.id], msgs)
				top := uint64(0)
				if len(msgs) > 0 {
					top = msgs[len(msgs)-1].Seq
				}
				if k > 0 && top != last || top < minSeq[r.id] {
					settled = false
				}
				placed = placed && placesAll(msgs, held[r.id])
				last = top
			}
		}
		out = h
		// The clock runs from the first look at which only held messages
		// were missing; a look in between at which the sites disagree
		// (applying the very merge that places them) does not restart it.
		switch {
		case settled && placed:
			if !waitingForHeld.IsZero() {
				heldWait = time.Since(waitingForHeld)
			}
		case settled && waitingForHeld.IsZero():
			waitingForHeld = time.Now()
		}
		return settled && placed, nil
	})
	if err != nil && !waitingForHeld.IsZero() {
		heldWait = time.Since(waitingForHeld) // they were never placed: all of it
	}
	if out == nil {
		if lastErr == nil {
			lastErr = err
		}
		return nil, 0, fmt.Errorf("drill: reading histories: %w", lastErr)
	}
	return out, heldWait, nil
}

// placesAll reports whether msgs holds a message with each client id.
func placesAll(msgs []salamander.Message, clientIDs []string) bool {
	if len(clientIDs) == 0 {
		return true
	}
	have := make(map[string]bool, len(msgs))
	for _, m := range msgs {
		have[m.ClientID] = true
	}
	for _, id := range clientIDs {
		if !have[id] {
			return false
		}
	}
	return true
}

// fullHistory pages backwards from the newest message to the first.
func fullHistory(ctx context.Context, c *client.Client, roomID string) ([]salamander.Message, error) {
	var pages [][]salamander.Message
	var before uint64
	for {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		p, err := c.History(ctx, roomID, client.HistoryQuery{Before: before, Limit: salamander.MaxPageSize})
		cancel()
		if err != nil {
			return nil, fmt.Errorf("history of %s at %s: %w", roomID, c.Site(), err)
		}
		if len(p.Messages) == 0 {
			break
		}
		pages = append(pages, p.Messages)
		before = p.Messages[0].Seq
		if !p.More || before <= 1 {
			break
		}
	}
	var out []salamander.Message
	for i := len(pages) - 1; i >= 0; i-- {
		out = append(out, pages[i]...)
	}
	return out, nil
}

// check verifies every send and delivery against the sites' histories.
func (ch *checker) check(ctx context.Context, recs []sendRecord) (Verdict, error) {
	v := Verdict{Converged: true}
	for _, i := range ch.sites {
		v.CheckedSites = append(v.CheckedSites, ch.w.cl.Name(i))
	}
	minSeq := map[string]uint64{}
	held := map[string][]string{}
	for _, r := range recs {
		switch {
		case r.acked && r.held:
			held[r.room] = append(held[r.room], r.clientID)
		case r.acked:
			minSeq[r.room] = max(minSeq[r.room], r.seq)
		}
	}
	hctx, cancel := context.WithTimeout(ctx, ch.settle)
	hist, heldWait, err := ch.histories(hctx, minSeq, held)
	cancel()
	if err != nil {
		return v, err
	}
	v.HeldPlaceWaitMS = ms(heldWait)
	// Per room and site: client id -> seqs holding it.
	type index map[string][]uint64
	idx := map[string][]index{}
	bad := map[string]bool{} // client ids counted as lost or duplicated
	dup := map[string]bool{}
	for _, r := range ch.w.rooms {
		for k, msgs := range hist[r.id] {
			ix := index{}
			for j, m := range msgs {
				if j > 0 && m.Seq <= msgs[j-1].Seq {
					v.Reordered++
					v.problem("site %s: history of %s out of order at seq %d", ch.w.cl.Name(ch.sites[k]), r.id, m.Seq)
				}
				ix[m.ClientID] = append(ix[m.ClientID], m.Seq)
			}
			for id, seqs := range ix {
				if len(seqs) > 1 && !dup[id] {
					dup[id] = true
					v.Duplicated++
					v.problem("site %s: room %s holds client id %s at seqs %v", ch.w.cl.Name(ch.sites[k]), r.id, id, seqs)
				}
			}
			idx[r.id] = append(idx[r.id], ix)
			if k > 0 && !sameHistory(hist[r.id][0], msgs) {
				v.Converged = false
				v.problem("room %s: history at %s (%d messages) differs from %s (%d)", r.id,
					ch.w.cl.Name(ch.sites[k]), len(msgs), ch.w.cl.Name(ch.sites[0]), len(hist[r.id][0]))
			}
		}
	}
	// What every send wrote: its sender and text, at the place its client
	// id has at the first checked site (the others are compared with it);
	// and every message of the rooms was written by one of the sends.
	sentBy := map[string]sendRecord{}
	for _, rec := range recs {
		sentBy[rec.clientID] = rec
	}
	for _, r := range ch.w.rooms {
		if len(hist[r.id]) == 0 {
			continue
		}
		for _, m := range hist[r.id][0] {
			rec, ok := sentBy[m.ClientID]
			switch {
			case !ok:
				v.Foreign++
				v.problem("room %s seq %d (client id %s, sender %s) was written by no send of the drill", r.id, m.Seq, m.ClientID, m.Sender)
			case rec.text != "" && (m.Sender != ch.w.users[rec.user].name || m.Text != rec.text || m.Room != rec.room && m.Room != ""):
				v.Altered++
				v.problem("room %s seq %d (client id %s) holds %q from %s, sent as %q from %s", r.id, m.Seq, m.ClientID,
					m.Text, m.Sender, rec.text, ch.w.users[rec.user].name)
			}
		}
	}
	for _, rec := range recs {
		if !rec.acked && rec.err != "" && rec.err != errAbandoned {
			v.Refused++
			v.problem("send %s to room %s by %s ended with %q", rec.clientID, rec.room, ch.w.users[rec.user].name, rec.err)
		}
		if !rec.acked && rec.err == errAbandoned {
			v.Abandoned++
			v.problem("send %s to room %s by %s was still unacknowledged when the drain ended", rec.clientID, rec.room, ch.w.users[rec.user].name)
		}
		if !rec.acked {
			v.Unacked++
			n := len(idx[rec.room][0][rec.clientID])
			switch {
			case n == 0:
				v.UnackedAbsent++
			case n == 1:
				v.UnackedCommitted++
			}
			continue
		}
		v.Acked++
		if rec.held {
			v.Held++
		}
		for k := range ch.sites {
			seqs := idx[rec.room][k][rec.clientID]
			// A held message has its place only from its merge on.
			if len(seqs) == 0 || !rec.held && seqs[0] != rec.seq {
				v.LostAtSites++
				if !bad[rec.clientID] {
					bad[rec.clientID] = true
					v.Lost++
				}
				v.problem("acked message %s (room %s seq %d) missing at site %s (found at %v)", rec.clientID, rec.room, rec.seq,
					ch.w.cl.Name(ch.sites[k]), seqs)
			}
		}
	}
	// Each sender's messages to a room are placed in the order they were
	// sent: the acknowledged ones, held ones included, and those stored
	// though their send ended unacknowledged (maybe sent) — one that
	// landed after the sender's next message was reordered all the same.
	type senderRoom struct {
		user int
		room string
	}
	lastSent := map[senderRoom]sendRecord{}
	for _, rec := range slices.SortedFunc(slices.Values(recs), func(a, b sendRecord) int { return a.start.Compare(b.start) }) {
		if bad[rec.clientID] || len(idx[rec.room]) == 0 || !rec.acked && len(idx[rec.room][0][rec.clientID]) != 1 {
			continue
		}
		k := senderRoom{rec.user, rec.room}
		seqs := idx[rec.room][0][rec.clientID]
		if prev, ok := lastSent[k]; ok && len(seqs) > 0 && prev.end.Before(rec.start) {
			if before := idx[rec.room][0][prev.clientID]; len(before) > 0 && before[0] >= seqs[0] {
				v.Reordered++
				v.problem("room %s: a sender's message %s (seq %d) was placed before its earlier %s (seq %d)",
					rec.room, rec.clientID, seqs[0], prev.clientID, before[0])
			}
		}
		lastSent[k] = rec
	}
	// Messages stored though their sends ended unacknowledged, and held
	// ones placed by a merge at the end, may reach the devices after the
	// histories settled: wait (up to settle) until every device has been
	// delivered every room's newest message before judging what each got.
	tops := map[string]uint64{}
	for _, r := range ch.w.rooms {
		if ref := hist[r.id][0]; len(ref) > 0 {
			tops[r.id] = ref[len(ref)-1].Seq
		}
	}
	dctx, cancel := context.WithTimeout(ctx, ch.settle)
	_ = poll(dctx, 200*time.Millisecond, func() (bool, error) { return ch.w.deliveredUpTo(tops), nil })
	cancel()
	j := deliveryJudge{v: &v, sentBy: sentBy, bad: bad, dup: dup}
	for _, r := range ch.w.rooms {
		for _, m := range r.members {
			m.mu.Lock()
			got := slices.Clone(m.got[r.id])
			m.mu.Unlock()
			j.judge(m.name, r.id, hist[r.id][0], got)
		}
	}
	for n, d := range ch.w.devices {
		for _, r := range d.owner.rooms {
			d.mu.Lock()
			got := slices.Clone(d.got[r.id])
			d.mu.Unlock()
			j.judge(fmt.Sprintf("%s's device %d", d.owner.name, n), r.id, hist[r.id][0], got)
		}
	}
	uctx, cancel := context.WithTimeout(ctx, ch.settle)
	defer cancel()
	if ok, why := ch.unreadConverged(uctx, hist); !ok {
		v.Converged = false
		v.problem("unread counts: %s", why)
	}
	return v, nil
}

// deliveryJudge compares what each device was delivered live with a
// room's history.
type deliveryJudge struct {
	v      *Verdict
	sentBy map[string]sendRecord
	bad    map[string]bool // client ids counted as lost
	dup    map[string]bool // client ids counted as duplicated
}

// judge checks got, what the device called who was delivered in room
// roomID, against ref, the room's history: each message once, in seq order,
// every message of the history, and only what the history holds. A stored
// message a device never got is a missing delivery whether or not its send
// was acknowledged (one the SDK dropped as stale after a later one shows
// only as such a gap); an acknowledged one is lost too.
func (j deliveryJudge) judge(who, roomID string, ref []salamander.Message, got []delivery) {
	v := j.v
	seen := map[uint64]bool{}
	var prev uint64
	for _, d := range got {
		if seen[d.seq] {
			if !j.dup[d.clientID] {
				j.dup[d.clientID] = true
				v.Duplicated++
			}
			v.problem("%s got room %s seq %d twice", who, roomID, d.seq)
		} else if d.seq < prev {
			v.Reordered++
			v.problem("%s got room %s seq %d after seq %d", who, roomID, d.seq, prev)
		}
		seen[d.seq] = true
		prev = max(prev, d.seq)
	}
	for _, msg := range ref {
		if !seen[msg.Seq] {
			v.MissingDeliveries++
			if j.sentBy[msg.ClientID].acked && !j.bad[msg.ClientID] {
				j.bad[msg.ClientID] = true
				v.Lost++
			}
			v.problem("%s was never delivered room %s seq %d", who, roomID, msg.Seq)
		}
	}
	for _, d := range got {
		i, ok := slices.BinarySearchFunc(ref, d.seq, func(m salamander.Message, s uint64) int { return cmpU(m.Seq, s) })
		if !ok || ref[i].ClientID != d.clientID {
			v.Converged = false
			v.problem("%s was delivered room %s seq %d as %s, which the history does not hold", who, roomID, d.seq, d.clientID)
		}
	}
}

// unreadConverged polls until every checked site reports, for every member
// of every room, the same read marker and unread count, the room's newest
// seq as the history has it, and a marker at least the last one the member
// set. It returns false and the last disagreement when ctx ends first.
func (ch *checker) unreadConverged(ctx context.Context, hist map[string][][]salamander.Message) (bool, string) {
	var why string
	err := poll(ctx, 500*time.Millisecond, func() (bool, error) {
		why = ""
		for _, u := range ch.w.users {
			if len(u.rooms) == 0 {
				continue
			}
			var first map[string]salamander.Room
			for k, c := range ch.pinned[u] {
				rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				rooms, err := c.Rooms(rctx)
				cancel()
				if err != nil {
					why = fmt.Sprintf("rooms of %s at %s: %v", u.name, ch.w.cl.Name(ch.sites[k]), err)
					return false, nil
				}
				got := map[string]salamander.Room{}
				for _, r := range rooms {
					got[r.ID] = r
				}
				for _, r := range u.rooms {
					sr, ok := got[r.id]
					ref := hist[r.id][0]
					var last uint64
					if len(ref) > 0 {
						last = ref[len(ref)-1].Seq
					}
					u.mu.Lock()
					marked := u.marked[r.id]
					u.mu.Unlock()
					switch {
					case !ok:
						why = fmt.Sprintf("site %s does not list room %s for %s", ch.w.cl.Name(ch.sites[k]), r.id, u.name)
					case sr.LastSeq != last:
						why = fmt.Sprintf("site %s: room %s last seq %d, history %d", ch.w.cl.Name(ch.sites[k]), r.id, sr.LastSeq, last)
					case sr.ReadSeq < marked:
						why = fmt.Sprintf("site %s: %s's marker in %s is %d, set to %d", ch.w.cl.Name(ch.sites[k]), u.name, r.id, sr.ReadSeq, marked)
					case first != nil && (first[r.id].Unread != sr.Unread || first[r.id].ReadSeq != sr.ReadSeq):
						why = fmt.Sprintf("%s in %s: unread %d (marker %d) at %s, %d (marker %d) at %s", u.name, r.id,
							first[r.id].Unread, first[r.id].ReadSeq, ch.w.cl.Name(ch.sites[0]),
							sr.Unread, sr.ReadSeq, ch.w.cl.Name(ch.sites[k]))
					}
					if why != "" {
						return false, nil
					}
				}
				if first == nil {
					first = got
				}
			}
		}
		return true, nil
	})
	return err == nil, why
}

// sameHistory reports whether two histories hold the same messages at the
// same seqs.
func sameHistory(a, b []salamander.Message) bool {
	return slices.EqualFunc(a, b, func(x, y salamander.Message) bool {
		return x.Seq == y.Seq && x.ClientID == y.ClientID && x.Sender == y.Sender && x.Text == y.Text
	})
}

func cmpU(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
