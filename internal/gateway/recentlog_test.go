package gateway

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// A RecentLog keeps warnings and errors (even those its handler drops),
// newest first, only the last few, with every attribute of the logger
// they came through; everything else only passes through.
func TestRecentLogKeepsTheLastWarnings(t *testing.T) {
	var out bytes.Buffer
	rl := NewRecentLog(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelError}), 3)
	log := slog.New(rl).With("site", "a")
	log.Info("routine")
	log.Warn("first warning", "n", 1)
	log.WithGroup("tail").With("stream", "p0").Error("tail failed", "err", "boom")
	if got := rl.Recent(); len(got) != 2 || got[0].Message != "tail failed" || got[1].Message != "first warning" {
		t.Fatalf("kept %+v", got)
	}
	got := rl.Recent()[0]
	if got.Level != "ERROR" || got.Attrs["site"] != "a" || got.Attrs["tail.stream"] != "p0" || got.Attrs["tail.err"] != "boom" {
		t.Fatalf("error record: %+v", got)
	}
	if s := out.String(); strings.Contains(s, "routine") || strings.Contains(s, "first warning") || !strings.Contains(s, "tail failed") {
		t.Fatalf("the wrapped handler's level was not kept: %q", s)
	}
	for i := range 5 {
		log.Warn(fmt.Sprintf("w%d", i))
	}
	var msgs []string
	for _, r := range rl.Recent() {
		msgs = append(msgs, r.Message)
	}
	if strings.Join(msgs, ",") != "w4,w3,w2" {
		t.Fatalf("after overflow: %v", msgs)
	}
	if rl.Recent()[0].Attrs["n"] != "" || rl.Recent()[0].At.IsZero() {
		t.Fatalf("record: %+v", rl.Recent()[0])
	}
}
