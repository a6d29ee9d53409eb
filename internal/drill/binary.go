package drill

import (
	"context"
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// BinaryInfo says which build of salamander a site ran: the upgrade
// scenario reports it per site, before and after.
type BinaryInfo struct {
	// Path is the executable's absolute path.
	Path string `json:"path"`
	// Version is the first line the binary printed for `salamander
	// version`.
	Version string `json:"version"`
	// Revision is the commit it was built from (the build information Go
	// records, vcs.revision; "" when it was built without it, e.g. with
	// -buildvcs=false), Modified whether that tree had uncommitted
	// changes.
	Revision string `json:"revision,omitempty"`
	Modified bool   `json:"modified,omitempty"`
	// GoVersion is the Go release that built it.
	GoVersion string `json:"go_version,omitempty"`
	// SHA256 is the first 12 hex digits of the file's SHA-256: two paths
	// of one build have the same.
	SHA256 string `json:"sha256"`
}

// String is the binary as one line of the text report.
func (b *BinaryInfo) String() string {
	if b == nil {
		return "?"
	}
	rev := b.Revision
	if rev == "" {
		rev = "no revision recorded"
	} else {
		rev = rev[:min(12, len(rev))]
		if b.Modified {
			rev += "+modified"
		}
	}
	return fmt.Sprintf("%s (%q, %s, sha256 %s)", b.Path, b.Version, rev, b.SHA256)
}

// checkExecutable refuses path, given for flag, unless it is a regular
// file someone may execute: the drill would otherwise find out only when a
// site's start fails, with sites already stopped.
func checkExecutable(flag, path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("drill: %s %s: %w", flag, path, errors.Unwrap(err))
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("drill: %s %s: not a regular file", flag, path)
	}
	if fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("drill: %s %s: not executable (mode %04o)", flag, path, fi.Mode().Perm())
	}
	return nil
}

// describeBinary runs `path version` and reads the build information Go
// recorded in the file. A file that is not a Go program or does not
// answer `version` is refused: it is not a salamander.
func describeBinary(ctx context.Context, path string) (*BinaryInfo, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("drill: %s: %w", path, err)
	}
	b := &BinaryInfo{Path: abs}
	bi, err := buildinfo.ReadFile(abs)
	if err != nil {
		return nil, fmt.Errorf("drill: %s is not a salamander binary (no Go build information: %v)", abs, err)
	}
	b.GoVersion = bi.GoVersion
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Revision = s.Value
		case "vcs.modified":
			b.Modified = s.Value == "true"
		}
	}
	vctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(vctx, abs, "version").Output()
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	if err != nil || !strings.HasPrefix(line, "salamander") {
		return nil, fmt.Errorf("drill: %s is not a salamander binary (`version` answered %q, %v)", abs, line, err)
	}
	b.Version = line
	f, err := os.Open(abs)
	if err != nil {
		return nil, fmt.Errorf("drill: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, fmt.Errorf("drill: reading %s: %w", abs, err)
	}
	b.SHA256 = hex.EncodeToString(h.Sum(nil))[:12]
	return b, nil
}
