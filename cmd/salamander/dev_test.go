package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// dev refuses a record-slot bound outside 0–1024 before it starts or
// writes anything.
func TestDevRefusesABadRecordSlotBound(t *testing.T) {
	for _, bad := range []string{"-1", "1025"} {
		data := filepath.Join(t.TempDir(), "data")
		err := runDev(t.Context(), []string{"--data", data, "--record-slots", bad}, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "--record-slots") {
			t.Errorf("--record-slots %s: %v", bad, err)
		}
		if _, statErr := os.Stat(data); !os.IsNotExist(statErr) {
			t.Errorf("--record-slots %s: the data directory was created (%v)", bad, statErr)
		}
	}
}
