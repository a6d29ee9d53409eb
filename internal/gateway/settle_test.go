package gateway

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/salamander-chat/salamander/internal/faultlink"
)

// A process that starts beside a slow one — whose answer to its hello
// takes longer than presenceSettle, as under load — counts as settled
// only once it has that one's users: settled earlier, it would tell a
// follower that a friend online there is offline, then online. Here the
// slow process beats at the default pace (so nothing of it comes by
// chance meanwhile) and every byte between it and NATS takes 0.4 s.
func TestSettlingWaitsForASlowProcess(t *testing.T) {
	url := presenceNATS(t)
	link, err := faultlink.Start(strings.TrimPrefix(url, "nats://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(link.Close)
	slow := startInstanceWith(t, "nats://"+link.Addr(), "a", nil, func(c *Config) {
		c.PresenceBeat, c.PresenceTTL = DefaultPresenceBeat, DefaultPresenceTTL
	})
	slow.connect("ann")
	link.SetDelay(400*time.Millisecond, 0)
	fresh := startInstance(t, url, "a")
	checkFor(t, 2*presenceSettleMax, 5*time.Millisecond, func() error {
		if !fresh.g.eph.settled(time.Now()) {
			return errors.New("not settled")
		}
		return nil
	})
	if !fresh.online("ann") {
		t.Fatal("settled without the slow process's users: ann, online there, is offline here")
	}
}

// A process alone (no other listens to its roll call) settles as before:
// presenceSettle after its start, not at presenceSettleMax.
func TestALoneProcessSettlesAfterPresenceSettle(t *testing.T) {
	lone := startInstance(t, presenceNATS(t), "a")
	start := time.Unix(0, lone.g.eph.startedAt.Load())
	checkFor(t, presenceSettleMax, 5*time.Millisecond, func() error {
		if !lone.g.eph.settled(time.Now()) {
			return errors.New("not settled")
		}
		return nil
	})
	if took := time.Since(start); took < presenceSettle || took > presenceSettleMax/2 {
		t.Fatalf("settled %v after its start; want presenceSettle (%v), well before presenceSettleMax", took, presenceSettle)
	}
}
