package main

import (
	"runtime"
	"strings"
	"testing"
)

// `salamander version` names the Go release that built it (and the commit,
// when the build recorded one): the upgrade drill reports it per site.
func TestVersionNamesTheBuild(t *testing.T) {
	var out, errOut strings.Builder
	if err := run(t.Context(), []string{"version"}, strings.NewReader(""), &out, &errOut); err != nil {
		t.Fatal(err)
	}
	line := strings.TrimSpace(out.String())
	if !strings.HasPrefix(line, "salamander "+version+" ") || !strings.HasSuffix(line, " "+runtime.Version()) {
		t.Errorf("version: %q, want %q, the commit if recorded, then %q", line, "salamander "+version, runtime.Version())
	}
}
