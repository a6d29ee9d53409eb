package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// certs refuses what no deployment can be — a site named twice, fewer
// than three sites, a stray word — before it writes anything.
func TestCertsRefusesBadSitesWritingNothing(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--sites", "a,a,b", "--plain"}, "named twice"},
		{[]string{"--sites", "a,b", "--plain"}, "three sites or more"},
		{[]string{"--sites", "a,b,c", "--plain", "extra"}, `unexpected "extra"`},
	} {
		dir := filepath.Join(t.TempDir(), "secrets")
		err := runCerts(context.Background(), append([]string{"--dir", dir}, c.args...), io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("certs %v: %v, want an error saying %q", c.args, err, c.want)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("certs %v left %s behind (%v)", c.args, dir, err)
		}
	}
	dir := filepath.Join(t.TempDir(), "secrets")
	if err := runCerts(context.Background(), []string{"--dir", dir, "--sites", "a,b,c", "--plain"}, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
}
