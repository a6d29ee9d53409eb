package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
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

// Gateways restarted after they died without a goodbye (SIGKILL, a
// burned host) do not wait for their earlier selves, which the others
// still mirror until their TTL runs out but which will never be heard
// again: an instance of this site under this process's own instance name
// is not expected, nor one whose name another instance of its site beats
// under now (it restarted). Here gw-1 and gw-2 died; gw-2 is back and
// answers gw-1's roll call, naming both dead ones.
func TestARestartedProcessDoesNotWaitForTheDead(t *testing.T) {
	url := presenceNATS(t)
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	dead := map[string]string{"00000000000000d1": "gw-1", "00000000000000d2": "gw-2"}
	for id, name := range dead { // their last beats
		beat, _ := json.Marshal(presenceMsgV2{Kind: kindBeat, Inst: id, Site: "a", Name: name, TTLms: 16_000})
		if err := nc.Publish(subjPresenceV2, beat); err != nil {
			t.Fatal(err)
		}
	}
	live := startInstanceWith(t, url, "a", nil, func(c *Config) { c.Instance = "gw-2" })
	for id, name := range dead { // heard by the live one, which started after them: beat again
		beat, _ := json.Marshal(presenceMsgV2{Kind: kindBeat, Inst: id, Site: "a", Name: name, TTLms: 16_000})
		if err := nc.Publish(subjPresenceV2, beat); err != nil {
			t.Fatal(err)
		}
	}
	checkFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		live.g.eph.mu.Lock()
		defer live.g.eph.mu.Unlock()
		for id := range dead {
			if live.g.eph.remotes[id] == nil {
				return fmt.Errorf("the live process has not heard %s", id)
			}
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
		t.Fatalf("settled %v after its start: it waited for the dead", took)
	}
}
