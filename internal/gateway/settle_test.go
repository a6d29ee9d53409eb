package gateway

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

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

// A process restarted after it died without a goodbye (SIGKILL, a burned
// host) does not wait for its earlier self, which the others still mirror
// until its TTL runs out but which will never be heard again: an instance
// of its site under its own instance name is not expected.
func TestARestartedProcessDoesNotWaitForItsEarlierSelf(t *testing.T) {
	url := presenceNATS(t)
	live := startInstance(t, url, "a") // the one that answers the roll call
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	// The earlier self's last beat; then it died.
	beat, _ := json.Marshal(presenceMsgV2{Kind: kindBeat, Inst: "00000000000000d1", Site: "a", Name: "gw-1", TTLms: 16_000})
	if err := nc.Publish(subjPresenceV2, beat); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		live.g.eph.mu.Lock()
		defer live.g.eph.mu.Unlock()
		if live.g.eph.remotes["00000000000000d1"] == nil {
			return errors.New("the live process has not heard the earlier self")
		}
		return nil
	})
	restarted := startInstanceWith(t, url, "a", nil, func(c *Config) { c.Instance = "gw-1" })
	start := time.Unix(0, restarted.g.eph.startedAt.Load())
	checkFor(t, presenceSettleMax, 5*time.Millisecond, func() error {
		if !restarted.g.eph.settled(time.Now()) {
			return errors.New("not settled")
		}
		return nil
	})
	if took := time.Since(start); took > presenceSettleMax/2 {
		t.Fatalf("settled %v after its start: it waited for its earlier self", took)
	}
}
