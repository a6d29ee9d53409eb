package drill

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/salamander-chat/salamander/internal/jsstore"
)

// The fire-merge scenario burns a partition's standby leader while the
// partition places the messages its standby held (see "No send waits for
// an election" in docs/ARCHITECTURE.md):
//
//  1. At FaultAt it SIGKILLs the site leading the most streams (X). The
//     partitions X led elect new leaders; sends to their rooms are held in
//     their standbys after a second.
//  2. It watches those partitions (elections.go: their leader every
//     10 ms, through a live site's admin connection) and the workload's
//     acknowledgments. The first partition P with a held acknowledgment
//     whose new leader is found is the one: at once it reads P's standby's
//     leader and last record, and P's last merge record (how far the held
//     records are placed). If some held records are not placed yet, P has
//     its leader and they are about to be merged (every process that
//     knows of them retries its merge every ≤ 0.4 s, and the first one
//     lands within a few hundred ms of the election): it SIGKILLs the site
//     leading P's standby (Y) then, a few ms after reading. If everything
//     is placed already, the merge was over before the drill looked: it
//     skips P and waits for another partition X led.
//  3. One site is left (Z): no stream has a quorum; Z cuts itself off.
//  4. Down after the second fire, X comes back on its old disk; with X
//     and Z every stream elects again, P places its held records, and X
//     catches up. After Pause, Y comes back on its old disk and catches
//     up; the load runs on until Duration or Pause after that. Then every
//     acknowledged message must be placed once, in its sender's order,
//     at all three sites.
//
// If no partition reaches step 2 with records unplaced within
// mergeStrikeWait, it burns the standby leader of the first partition X
// led anyway, and the report says the second fire was not during a merge.

// mergeStrikeWait bounds how long after the first fire the drill waits for
// a partition's merge to strike in: elections take 4–9 s.
const mergeStrikeWait = 30 * time.Second

// MergeFire is what the fire-merge scenario found and did. Times are
// seconds since the load started; the fires and returns themselves are
// Report.Faults[0] (X) and [1] (Y).
type MergeFire struct {
	// Partition is the partition whose merge the second fire struck, and
	// Standby its standby stream.
	Partition string `json:"partition"`
	Standby   string `json:"standby"`
	// FirstHeldAtS is when the first send to one of the partition's rooms
	// was acknowledged held after the first fire.
	FirstHeldAtS float64 `json:"first_held_at_s"`
	// NewLeader is the site the election watch found leading the
	// partition, at ElectedAtS.
	NewLeader  string  `json:"new_leader"`
	ElectedAtS float64 `json:"elected_at_s"`
	// Read just before the second fire: StandbyLeader is the site leading
	// the standby (the one burned), StandbyLastSeq its last record,
	// MergedTo the last standby record the partition's merge records had
	// placed and MergeSeq the sequence of the last of those in the
	// partition (0: none yet). ReadMS is how long that took, KillAtS when
	// the second fire struck.
	StandbyLeader  string  `json:"standby_leader"`
	StandbyLastSeq uint64  `json:"standby_last_seq"`
	MergedTo       uint64  `json:"merged_to"`
	MergeSeq       uint64  `json:"merge_seq"`
	ReadMS         float64 `json:"read_ms"`
	KillAtS        float64 `json:"kill_at_s"`
	// Pending is StandbyLastSeq - MergedTo: the held records waiting for
	// their merge. DuringMerge is set when some were, with the partition
	// led again: the second fire struck during the merge.
	Pending     uint64 `json:"pending"`
	DuringMerge bool   `json:"during_merge"`
	// Skipped lists the partitions the drill looked at first whose held
	// records were all placed by then (or which had none).
	Skipped []string `json:"skipped,omitempty"`
	// PlacedAtS is when the drill found a merge record in the partition
	// placing every record the standby held at the second fire, PlacedSeq
	// its sequence, and PlacedAfterReturnMS the time from the first site's
	// return; -1 when it was not found before the load stopped.
	PlacedAtS           float64 `json:"placed_at_s,omitempty"`
	PlacedSeq           uint64  `json:"placed_merge_seq,omitempty"`
	PlacedAfterReturnMS float64 `json:"placed_after_return_ms"`
}

// mergeState is how far a partition's held records are placed.
type mergeState struct {
	standbyLeader         string
	standbyLast, mergedTo uint64
	mergeSeq              uint64
}

// fireMerge runs the fire-merge scenario (see above).
func (r *run) fireMerge() error {
	xi, err := r.victim()
	if err != nil {
		return err
	}
	hit := ledBy(r.rep.LeadersAtFault, r.cl.Name(xi), true)
	if len(hit) == 0 {
		return fmt.Errorf("drill: fire-merge: site %s led no partition at the fault (leaders %v)", r.cl.Name(xi), r.rep.LeadersAtFault)
	}
	fx := r.addFault(FaultKill, xi, r.rep.LeadersAtFault)
	if err := r.cl.Kill(xi); err != nil {
		return err
	}
	r.watchFault(fx)
	r.log.Info("fire", "site", fx.Site, "partitions", strings.Join(hit, ","))
	mf := &MergeFire{PlacedAfterReturnMS: -1}
	r.rep.MergeFire = mf
	fy, err := r.strikeMerge(fx, hit, mf)
	if err != nil {
		return err
	}
	// The first fire's watch ends here: with one site left, nothing is
	// elected until a site returns.
	r.stopElections()
	r.log.Info("second fire: the standby's leader", "site", fy.Site, "partition", mf.Partition, "standby", mf.Standby,
		"pending", mf.Pending, "during_merge", mf.DuringMerge)

	if err := sleepUntil(r.ctx, fy.at.Add(r.cfg.Down)); err != nil {
		return err
	}
	back := time.Now()
	r.watchElections(len(r.faults), r.partitions(), nil, back)
	pctx, stopPlaced := context.WithCancel(r.ctx)
	var placed sync.WaitGroup
	placed.Go(func() { r.watchPlaced(pctx, mf, back) })
	defer func() {
		stopPlaced()
		placed.Wait()
	}()
	// The site that stayed up is the reference for both returns.
	zi := r.others(fx.site)[0]
	if zi == fy.site {
		zi = r.others(fx.site)[1]
	}
	if err := r.bringBack(fx, back, zi, false); err != nil {
		return err
	}
	if err := sleepUntil(r.ctx, time.Now().Add(r.cfg.Pause)); err != nil {
		return err
	}
	if err := r.bringBack(fy, time.Now(), zi, true); err != nil {
		return err
	}
	if err := r.loadUntilDone(); err != nil {
		return err
	}
	stopPlaced()
	placed.Wait()
	return r.checkAllSites()
}

// strikeMerge waits until a partition of hit has held messages and its new
// leader, reads how far its held records are placed and, while some are
// not, burns its standby's leader site at once (see fireMerge). It returns
// that fault.
func (r *run) strikeMerge(fx *Fault, hit []string, mf *MergeFire) (*Fault, error) {
	skipped := map[string]bool{}
	rooms := map[string]map[string]bool{}
	for _, p := range hit {
		rooms[p] = r.w.roomsIn(p)
	}
	deadline := fx.at.Add(mergeStrikeWait)
	for n := 0; ; n++ {
		if time.Now().After(deadline) || len(skipped) == len(hit) {
			break
		}
		for _, p := range hit {
			if skipped[p] {
				continue
			}
			leader, elected, ok := r.elected(1, p)
			if !ok {
				continue
			}
			heldAt, held := r.w.firstHeld(rooms[p], fx.at)
			if !held {
				// Sends are held within a second of the fire, and none once
				// the partition answers again.
				if time.Since(elected) > 2*time.Second {
					skipped[p] = true
					mf.Skipped = append(mf.Skipped, p)
				}
				continue
			}
			read := time.Now()
			ms0, err := r.readMerge(p, n)
			if err != nil {
				r.log.Debug("merge state unknown; looking again", "partition", p, "error", err)
				continue
			}
			yi := r.cl.Index(ms0.standbyLeader)
			if yi < 0 || yi == fx.site || !r.cl.Alive(yi) {
				continue // the standby elects a leader of its own
			}
			if ms0.standbyLast <= ms0.mergedTo {
				skipped[p] = true
				mf.Skipped = append(mf.Skipped, p)
				r.log.Info("held messages already placed; waiting for another partition", "partition", p)
				continue
			}
			fy := r.addFault(FaultKill, yi, nil)
			if err := r.cl.Kill(yi); err != nil {
				return nil, err
			}
			mf.fill(r, p, leader, elected, heldAt, ms0, read, fy)
			mf.DuringMerge = true
			return fy, nil
		}
		if err := sleepUntil(r.ctx, time.Now().Add(5*time.Millisecond)); err != nil {
			return nil, err
		}
	}
	// No merge to strike in: burn the first partition's standby leader
	// anyway.
	p := hit[0]
	r.log.Warn("no partition's merge found in progress; burning the standby leader of the first anyway", "partition", p,
		"skipped", strings.Join(mf.Skipped, ","))
	var ms0 mergeState
	var read time.Time
	err := poll(r.ctx, 100*time.Millisecond, func() (bool, error) {
		var err error
		read = time.Now()
		ms0, err = r.readMerge(p, 0)
		yi := r.cl.Index(ms0.standbyLeader)
		return err == nil && yi >= 0 && yi != fx.site, nil
	})
	if err != nil {
		return nil, fmt.Errorf("drill: fire-merge: standby of %s: %w", p, err)
	}
	yi := r.cl.Index(ms0.standbyLeader)
	fy := r.addFault(FaultKill, yi, nil)
	if err := r.cl.Kill(yi); err != nil {
		return nil, err
	}
	leader, elected, _ := r.elected(1, p)
	heldAt, _ := r.w.firstHeld(rooms[p], fx.at)
	mf.fill(r, p, leader, elected, heldAt, ms0, read, fy)
	return fy, nil
}

// fill records the partition struck and the state read before the kill.
func (mf *MergeFire) fill(r *run, p, leader string, elected, heldAt time.Time, ms0 mergeState, read time.Time, fy *Fault) {
	mf.Partition, mf.Standby = p, jsstore.StandbyOf(p)
	mf.NewLeader = leader
	if !elected.IsZero() {
		mf.ElectedAtS = r.since(elected)
	}
	if !heldAt.IsZero() {
		mf.FirstHeldAtS = r.since(heldAt)
	}
	mf.StandbyLeader, mf.StandbyLastSeq, mf.MergedTo, mf.MergeSeq = ms0.standbyLeader, ms0.standbyLast, ms0.mergedTo, ms0.mergeSeq
	mf.ReadMS = ms(fy.at.Sub(read))
	mf.KillAtS = fy.AtS
	if ms0.standbyLast > ms0.mergedTo {
		mf.Pending = ms0.standbyLast - ms0.mergedTo
	}
}

// readMerge reads, at once and through a live site's admin connection
// (from site k on), the leader and last record of partition's standby and
// how far the partition's merge records have placed them.
func (r *run) readMerge(partition string, k int) (mergeState, error) {
	st := r.cl.liveAdmin(k)
	if st == nil {
		return mergeState{}, ErrNoAdmin
	}
	ctx, cancel := context.WithTimeout(r.ctx, 300*time.Millisecond)
	defer cancel()
	var sb jsstore.StreamStatus
	var sbErr error
	var wg sync.WaitGroup
	wg.Go(func() { sb, sbErr = st.StatusOf(ctx, jsstore.StandbyOf(partition)) })
	seq, last, err := st.LastMerge(ctx, partition)
	wg.Wait()
	if err != nil {
		return mergeState{}, err
	}
	if sbErr != nil {
		return mergeState{}, sbErr
	}
	if sb.Leader == "" {
		return mergeState{}, fmt.Errorf("standby %s has no leader", jsstore.StandbyOf(partition))
	}
	return mergeState{standbyLeader: jsstore.ServerSite(sb.Leader), standbyLast: sb.LastSeq, mergedTo: last.To, mergeSeq: seq}, nil
}

// watchPlaced polls, from the first site's return on, the struck
// partition's last merge record until it places everything the standby
// held at the second fire.
func (r *run) watchPlaced(ctx context.Context, mf *MergeFire, back time.Time) {
	if mf.StandbyLastSeq == 0 {
		return
	}
	n := 0
	_ = poll(ctx, 50*time.Millisecond, func() (bool, error) {
		st := r.cl.liveAdmin(n) // spread over the live sites
		n++
		if st == nil {
			return false, nil
		}
		actx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		seq, last, err := st.LastMerge(actx, mf.Partition)
		cancel()
		if err != nil || last.To < mf.StandbyLastSeq {
			return false, nil
		}
		now := time.Now()
		mf.PlacedAtS, mf.PlacedSeq, mf.PlacedAfterReturnMS = r.since(now), seq, ms(now.Sub(back))
		return true, nil
	}) // ends with ctx when never placed
}

// bringBack restarts fault f's site on its old disk (it went back at
// back), waits until it is ready and caught up, compares its histories
// with site ref's and, with replicas (no other site is down), waits until
// every stream replica is current.
func (r *run) bringBack(f *Fault, back time.Time, ref int, replicas bool) error {
	f.BackAtS, f.Disk = r.since(back), DiskOld
	r.log.Info("restarting a burned site on its old disk", "site", f.Site)
	rctx, cancel := context.WithTimeout(r.ctx, r.cfg.Settle+time.Minute)
	defer cancel()
	if err := r.cl.Restart(rctx, f.site); err != nil {
		return err
	}
	f.ReadyMS = ms(time.Since(back))
	r.log.Info("site back", "site", f.Site, "ready_ms", int(f.ReadyMS))
	at, err := r.cl.WaitCaughtUp(rctx, f.site, false)
	if err != nil {
		return err
	}
	f.CaughtUpMS = ms(at.Sub(back))
	n, err := prefixDiverged(r.ctx, r.w, f.site, ref)
	if err != nil {
		return err
	}
	f.ComparedWith, f.DivergedRooms, f.ComparedMS = r.cl.Name(ref), n, ms(time.Since(back))
	if replicas {
		at, err = r.cl.WaitCaughtUp(rctx, f.site, true)
		if err != nil {
			return err
		}
		f.ReplicasCurrentMS = ms(at.Sub(back))
	}
	r.log.Info("site caught up", "site", f.Site, "ready_ms", int(f.ReadyMS), "caught_up_ms", int(f.CaughtUpMS),
		"diverged_rooms", n, "replicas_current_ms", int(f.ReplicasCurrentMS))
	return nil
}

// partitions lists the room partitions, as the stream leaders at the
// first fault name them.
func (r *run) partitions() []string {
	var out []string
	for _, site := range SiteNames {
		out = append(out, ledBy(r.rep.LeadersAtFault, site, true)...)
	}
	return out
}

// text is the summary's lines on the fire-merge scenario.
func (mf *MergeFire) text(r *Report) string {
	var b strings.Builder
	if mf.Partition == "" {
		return ""
	}
	first := r.Faults[0]
	fmt.Fprintf(&b, "  %s (led by site %s): first held ack at %.2fs; new leader site %s found at %.2fs; standby %s led by site %s\n",
		mf.Partition, first.Site, mf.FirstHeldAtS, orNone(mf.NewLeader), mf.ElectedAtS, mf.Standby, mf.StandbyLeader)
	fmt.Fprintf(&b, "  second fire at %.2fs (%s after reading): %s held records up to %d, %s's merges had placed up to %d: %d unplaced",
		mf.KillAtS, waitText(mf.ReadMS), mf.Standby, mf.StandbyLastSeq, mf.Partition, mf.MergedTo, mf.Pending)
	if mf.DuringMerge {
		b.WriteString(" — during the merge\n")
	} else {
		b.WriteString(" — NOT during a merge (none was found in progress)\n")
	}
	if len(mf.Skipped) > 0 {
		fmt.Fprintf(&b, "    skipped first (their held records already placed, or none): %s\n", strings.Join(mf.Skipped, ", "))
	}
	if mf.PlacedAfterReturnMS >= 0 {
		fmt.Fprintf(&b, "  %s's records up to %d placed by %s's merge record %d, found at %.2fs (%s after site %s's return)\n",
			mf.Standby, mf.StandbyLastSeq, mf.Partition, mf.PlacedSeq, mf.PlacedAtS, sec(mf.PlacedAfterReturnMS), first.Site)
	} else {
		fmt.Fprintf(&b, "  the merge placing %s's records up to %d was not found before the load stopped\n", mf.Standby, mf.StandbyLastSeq)
	}
	return b.String()
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
