package natsnode_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/salamander-chat/salamander/internal/natsnode/natsnodetest"
)

// The meta leader's JetStream pauses at once, and resumes while the other
// servers keep asking the JetStream API: the server listens on the ports it had, its
// replica of an R3 stream catches up with what was written meanwhile, and
// a client connected through Node.InProcessConn reconnects by itself. Run
// with -race: resuming through the server's EnableJetStream raced those
// requests (see ResumeJetStream).
func TestResumeRejoinsWhileOthersAsk(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	nodes := natsnodetest.StartThree(t, ctx)
	// c is the cluster's meta leader: the server whose pause the server's
	// own ShutdownJetStream would hold up for 2 s (see PauseJetStream).
	metaLeader := -1
	for metaLeader < 0 {
		for i, node := range nodes {
			if node.Server().JetStreamIsLeader() {
				metaLeader = i
			}
		}
		if ctx.Err() != nil {
			t.Fatal("the cluster elected no meta leader")
		}
		time.Sleep(50 * time.Millisecond)
	}
	a, c := nodes[(metaLeader+1)%3], nodes[metaLeader]

	ncA, err := nats.Connect(a.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer ncA.Close()
	jsA, err := jetstream.New(ncA)
	if err != nil {
		t.Fatal(err)
	}
	var stream jetstream.Stream
	var last error
	for {
		try, cancelTry := context.WithTimeout(ctx, 2*time.Second)
		stream, err = jsA.CreateStream(try, jetstream.StreamConfig{Name: "RESUME", Subjects: []string{"resume.>"}, Replicas: 3})
		cancelTry()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("no R3 stream: %v", last)
		}
		last = err
		time.Sleep(100 * time.Millisecond) // the cluster is still electing its meta leader
	}
	// c's own client, through the pipe that must follow the restart.
	ncC, err := nats.Connect("", nats.InProcessServer(c), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer ncC.Close()
	clientURL, clusterAddr := c.ClientURL(), c.ClusterAddr()

	start := time.Now()
	if err := c.PauseJetStream(); err != nil {
		t.Fatal(err)
	}
	// Not a speed test: a pause through ShutdownJetStream waits 2 s on a
	// meta leader by construction, a restart does not wait at all.
	if took := time.Since(start); took >= 2*time.Second {
		t.Fatalf("pausing the meta leader took %v: it waited for a leadership transfer", took)
	}
	if !c.JetStreamPaused() || c.Server().JetStreamEnabled() || !c.Running() {
		t.Fatalf("after pause: paused %v, JetStream enabled %v, running %v", c.JetStreamPaused(), c.Server().JetStreamEnabled(), c.Running())
	}
	if c.ClientURL() != clientURL || c.ClusterAddr() != clusterAddr {
		t.Fatalf("the paused server moved: client %s → %s, cluster %s → %s", clientURL, c.ClientURL(), clusterAddr, c.ClusterAddr())
	}
	// a and b are a quorum; if c led the stream, they elect a leader
	// first (4–9 s), and a publish meanwhile goes unanswered: retry it,
	// with an id so that a retried one is stored once.
	const written = 20
	for i := range written {
		for {
			try, cancelTry := context.WithTimeout(ctx, 2*time.Second)
			_, err := jsA.Publish(try, "resume.x", []byte{byte(i)}, jetstream.WithMsgID(fmt.Sprint("w", i)))
			cancelTry()
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("write %d while c is paused: %v", i, err)
			}
		}
	}

	// Everyone asks the JetStream API while c resumes, as every site's log
	// check does.
	asking, stopAsking := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for asking.Err() == nil {
				_, _ = jsA.Stream(asking, "RESUME")
				_, _ = jsA.AccountInfo(asking)
			}
		})
	}
	err = c.ResumeJetStream()
	stopAsking()
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if c.JetStreamPaused() || !c.Running() {
		t.Fatalf("after resume: paused %v, running %v", c.JetStreamPaused(), c.Running())
	}
	if c.ClientURL() != clientURL || c.ClusterAddr() != clusterAddr {
		t.Fatalf("the restarted server moved: client %s → %s, cluster %s → %s", clientURL, c.ClientURL(), clusterAddr, c.ClusterAddr())
	}

	// c's replica catches up: every server, c included, current and at the
	// last sequence.
	for {
		try, cancelTry := context.WithTimeout(ctx, 2*time.Second)
		info, err := stream.Info(try)
		cancelTry()
		if err == nil && info.Cluster != nil && len(info.Cluster.Replicas) == 2 {
			current := 0
			for _, r := range info.Cluster.Replicas {
				if r.Current && r.Lag == 0 {
					current++
				}
			}
			if current == 2 && info.State.LastSeq == written {
				break
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("c's replica never caught up: %+v", info)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// c's own client is back, and its JetStream answers through c.
	jsC, err := jetstream.New(ncC)
	if err != nil {
		t.Fatal(err)
	}
	for {
		try, cancelTry := context.WithTimeout(ctx, 2*time.Second)
		ack, err := jsC.Publish(try, "resume.y", []byte("after"), jetstream.WithMsgID("after"))
		cancelTry()
		if err == nil {
			if ack.Sequence != written+1 {
				t.Fatalf("published through c at %d, want %d", ack.Sequence, written+1)
			}
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("c's in-process client never got back: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
