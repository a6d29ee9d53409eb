package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/salamander-chat/salamander/client"
)

// user is one simulated user: an SDK client preferring its home site, and
// (for p2p and group) a receiver holding a WebSocket to that site.
type user struct {
	idx   int
	name  string
	home  int // index of the preferred site
	c     *client.Client
	token string
	rooms []*room
	recv  *receiver
}

// room is a bench room, its members and which of them send.
type room struct {
	id      string
	members []*user
	pos     map[int]int // user idx → position in members
	senders []int       // positions in members
}

// password is every bench user's password.
const password = "bench-password-not-secret"

// newUsers makes n users, user i preferring site home(i), with SDK clients
// that share the bench's transport.
func (r *run) newUsers(n int, home func(i int) int) ([]*user, error) {
	users := make([]*user, n)
	for i := range users {
		u := &user{idx: i, name: fmt.Sprintf("%su%d", r.prefix, i), home: home(i)}
		c, err := client.New(client.Config{Sites: r.cfg.Sites, Prefer: u.home, HTTPClient: r.net.hc})
		if err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		u.c = c
		users[i] = u
	}
	return users, nil
}

// signUp signs every user up at its home site, SetupParallel at a time.
func (r *run) signUp(ctx context.Context, users []*user) error {
	start := time.Now()
	err := parallel(ctx, len(users), r.cfg.SetupParallel, func(ctx context.Context, i int) error {
		u := users[i]
		s, err := u.c.SignUp(ctx, u.name, u.name, password)
		if err != nil {
			return fmt.Errorf("signing up %s: %w", u.name, err)
		}
		u.token = s.Token
		return nil
	})
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	r.log.Info("users signed up", "users", len(users), "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// makeRooms creates the scenario's rooms and returns them: pairs of
// neighbours for p2p (their homes differ), consecutive runs of GroupSize
// users for group (their homes rotate over the sites).
func (r *run) makeRooms(ctx context.Context, users []*user) ([]*room, error) {
	var groups [][]*user
	size := 2
	if r.cfg.Scenario == ScenarioGroup {
		size = r.cfg.GroupSize
	}
	for i := 0; i < len(users); i += size {
		groups = append(groups, users[i:min(i+size, len(users))])
	}
	if last := groups[len(groups)-1]; len(last) < 2 {
		if r.cfg.Scenario == ScenarioP2P {
			// The odd one out pairs with the first user.
			groups[len(groups)-1] = []*user{last[0], users[0]}
		} else {
			// The odd one out joins the group before it.
			prev := groups[len(groups)-2]
			groups = groups[:len(groups)-1]
			groups[len(groups)-1] = users[prev[0].idx:]
		}
	}
	rooms := make([]*room, len(groups))
	err := parallel(ctx, len(groups), r.cfg.SetupParallel, func(ctx context.Context, i int) error {
		members := groups[i]
		owner := members[0]
		var id string
		if r.cfg.Scenario == ScenarioP2P {
			rm, err := owner.c.DirectRoom(ctx, members[1].name)
			if err != nil {
				return fmt.Errorf("1:1 room of %s and %s: %w", owner.name, members[1].name, err)
			}
			id = rm.ID
		} else {
			names := make([]string, 0, len(members)-1)
			for _, m := range members[1:] {
				names = append(names, m.name)
			}
			rm, err := owner.c.CreateGroup(ctx, fmt.Sprintf("bench group %d", i), names)
			if err != nil {
				return fmt.Errorf("group room of %s: %w", owner.name, err)
			}
			id = rm.ID
		}
		rm := &room{id: id, members: members, pos: map[int]int{}}
		for p, m := range members {
			rm.pos[m.idx] = p
		}
		n := len(members)
		if r.cfg.Senders > 0 {
			n = min(n, r.cfg.Senders)
		}
		for p := range n {
			rm.senders = append(rm.senders, p) // consecutive users: homes rotate over the sites
		}
		rooms[i] = rm
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("bench: creating rooms: %w", err)
	}
	for _, rm := range rooms {
		for _, m := range rm.members {
			m.rooms = append(m.rooms, rm)
		}
	}
	return rooms, nil
}

// waitApplied waits until every site's read model has applied the whole
// log as it stands now (e.g. every sign-up, before rooms name the users at
// other sites).
func (r *run) waitApplied(ctx context.Context) error {
	var ref siteStatus
	var why string
	err := poll(ctx, 50*time.Millisecond, func() bool {
		var err error
		if ref, err = r.streamList(ctx, -1); err != nil {
			why = err.Error()
		}
		return err == nil
	})
	if err != nil {
		return fmt.Errorf("bench: reading the log's positions (%s): %w", why, err)
	}
	err = poll(ctx, 50*time.Millisecond, func() bool {
		for _, s := range r.cfg.Sites {
			st, err := r.net.status(ctx, s)
			if err != nil {
				why = err.Error()
				return false
			}
			if behind := lag(st, ref); behind != "" {
				why = fmt.Sprintf("site %s: %s", st.Site, behind)
				return false
			}
		}
		return true
	})
	if err != nil {
		return fmt.Errorf("bench: waiting for every site to apply the log (%s): %w", why, err)
	}
	return nil
}

// streamList returns the status of the first site, other than site skip,
// that lists the log's streams: the log's positions to wait for.
func (r *run) streamList(ctx context.Context, skip int) (siteStatus, error) {
	err := errors.New("no other site")
	for i, s := range r.cfg.Sites {
		if i == skip {
			continue
		}
		st, serr := r.net.status(ctx, s)
		if serr == nil && st.StreamsError == "" && len(st.Streams) > 0 {
			return st, nil
		}
		err = fmt.Errorf("no stream list from %s: %v %s", s, serr, st.StreamsError)
	}
	return siteStatus{}, err
}

// lag says on which stream st has applied less than ref's last sequence
// ("" when on none).
func lag(st, ref siteStatus) string {
	for _, s := range ref.Streams {
		if st.Applied[s.Stream] < s.LastSeq {
			return fmt.Sprintf("stream %s applied %d of %d", s.Stream, st.Applied[s.Stream], s.LastSeq)
		}
	}
	return ""
}

// parallel calls f(ctx, i) for every i in [0, n), at most workers at a
// time, and returns the first error (the context given to the others is
// then cancelled). It returns when every call has returned.
func parallel(ctx context.Context, n, workers int, f func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var next atomic.Int64
	var once sync.Once
	var first error
	var wg sync.WaitGroup
	for range min(workers, n) {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := f(ctx, i); err != nil {
					once.Do(func() { first = err })
					cancel()
					return
				}
			}
		})
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return first
}

// poll calls cond every interval until it reports true or ctx ends.
func poll(ctx context.Context, interval time.Duration, cond func() bool) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if cond() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
