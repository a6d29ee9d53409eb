package backup_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/salamander-chat/salamander/internal/backup"
	"github.com/salamander-chat/salamander/internal/jsstore"
	"github.com/salamander-chat/salamander/internal/natsnode"
)

// loneCluster starts a one-server JetStream (R1) holding a Salamander log
// of one partition, SAL_P0 filled with about 1.2 MiB that does not
// compress (its snapshot is some ten chunks of 128 KiB), and returns the
// server's client URL. Everything stops when the test ends.
func loneCluster(t *testing.T, ctx context.Context) string {
	t.Helper()
	cfg := natsnode.DefaultConfig("a")
	cfg.StoreDir, cfg.ClusterAddr = filepath.Join(t.TempDir(), "nats"), ""
	node, err := natsnode.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(node.Shutdown)
	scfg := jsstore.DefaultConfig(node.ClientURL())
	scfg.Replicas, scfg.Partitions = 1, 1
	store, err := jsstore.Open(ctx, scfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	if err := store.EnsureStreams(ctx); err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(store.Conn())
	if err != nil {
		t.Fatal(err)
	}
	for range 6 {
		b := make([]byte, 200<<10)
		rand.Read(b)
		if _, err := js.Publish(ctx, "sal.p0.backup-test-bulk", b); err != nil {
			t.Fatal(err)
		}
	}
	return node.ClientURL()
}

// lossyLink is a TCP proxy between a NATS client and its server that drops
// the server's messages drop picks: the loss core NATS allows (a route or
// a connection that drops and comes back while a snapshot's leader keeps
// sending), made to happen where a test wants it.
type lossyLink struct {
	ln      net.Listener
	server  string
	drop    func(subject, reply string, payload []byte) bool
	dropped atomic.Int32

	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

func newLossyLink(t *testing.T, serverURL string, drop func(subject, reply string, payload []byte) bool) *lossyLink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &lossyLink{ln: ln, server: strings.TrimPrefix(serverURL, "nats://"), drop: drop}
	l.wg.Add(1)
	go l.accept()
	t.Cleanup(l.close)
	return l
}

func (l *lossyLink) url() string { return "nats://" + l.ln.Addr().String() }

func (l *lossyLink) accept() {
	defer l.wg.Done()
	for {
		c, err := l.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", l.server)
		if err != nil {
			c.Close()
			continue
		}
		l.mu.Lock()
		l.conns = append(l.conns, c, s)
		l.mu.Unlock()
		l.wg.Add(2)
		go func() {
			defer l.wg.Done()
			io.Copy(s, c)
			s.Close()
		}()
		go func() {
			defer l.wg.Done()
			l.relay(c, s)
			c.Close()
		}()
	}
}

// relay copies the server's protocol to the client, message by message
// (MSG subject sid [reply] size, HMSG subject sid [reply] hsize size),
// leaving out the ones drop picks.
func (l *lossyLink) relay(client, server net.Conn) {
	br := bufio.NewReaderSize(server, 64<<10)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		f := strings.Fields(line)
		if len(f) < 4 || f[0] != "MSG" && f[0] != "HMSG" {
			if _, err := io.WriteString(client, line); err != nil {
				return
			}
			continue
		}
		withReply, hsize := len(f) == 5, 0
		if f[0] == "HMSG" {
			withReply = len(f) == 6
			hsize, _ = strconv.Atoi(f[len(f)-2])
		}
		size, _ := strconv.Atoi(f[len(f)-1])
		body := make([]byte, size+2)
		if _, err := io.ReadFull(br, body); err != nil {
			return
		}
		reply := ""
		if withReply {
			reply = f[3]
		}
		if l.drop(f[1], reply, body[hsize:size]) {
			l.dropped.Add(1)
			continue
		}
		if _, err := client.Write(append([]byte(line), body...)); err != nil {
			return
		}
	}
}

func (l *lossyLink) close() {
	l.ln.Close()
	l.mu.Lock()
	for _, c := range l.conns {
		c.Close()
	}
	l.mu.Unlock()
	l.wg.Wait()
}

// A snapshot chunk lost on the way fails the stream's snapshot, which is
// taken again; one lost every time fails the backup, saying so, and leaves
// no backup behind. Whether a numbered chunk is lost (the next one's number
// tells) or the last, short one (nothing numbered follows it: the archive
// then lacks its end marker).
func TestABackupRefusesASnapshotWithAChunkLost(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	url := loneCluster(t, ctx)
	const ackPrefix = "$JS.SNAPSHOT.ACK.SAL_P0."
	numbered := func(n int) func(string, string, []byte) bool {
		return func(_, reply string, _ []byte) bool {
			return strings.HasPrefix(reply, ackPrefix) && strings.HasSuffix(reply, "."+strconv.Itoa(n))
		}
	}
	// The last, short chunk goes to the inbox the numbered ones went to,
	// with no reply subject.
	var inbox atomic.Value
	last := func(subject, reply string, payload []byte) bool {
		if strings.HasPrefix(reply, ackPrefix) {
			inbox.Store(subject)
		}
		return reply == "" && len(payload) > 0 && inbox.Load() == subject
	}
	var once atomic.Bool
	cases := []struct {
		name string
		drop func(string, string, []byte) bool
		want string // in the error; "" for a backup that succeeds
	}{
		{"numbered chunk 2, every time", numbered(2), "chunk 3 arrived where chunk 2 was due"},
		{"the last chunk, every time", last, "not whole"},
		{"numbered chunk 4, once", func(s, r string, p []byte) bool {
			return numbered(4)(s, r, p) && once.CompareAndSwap(false, true)
		}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			link := newLossyLink(t, url, c.drop)
			nc, err := nats.Connect(link.url(), nats.Timeout(5*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			dir := filepath.Join(t.TempDir(), "backup")
			log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
			m, err := backup.Backup(ctx, nc, dir, log)
			if link.dropped.Load() == 0 {
				t.Fatalf("no message dropped (backup: %v)", err)
			}
			if c.want == "" {
				if err != nil {
					t.Fatalf("a backup with one chunk lost once: %v", err)
				}
				if err := m.Verify(dir); err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "SAL_P0") {
				t.Fatalf("a backup with a chunk lost: %v, want an error saying %q", err, c.want)
			}
			if _, serr := os.Stat(dir); !errors.Is(serr, os.ErrNotExist) {
				t.Fatalf("a failed backup left its directory: %v", serr)
			}
		})
	}
}
