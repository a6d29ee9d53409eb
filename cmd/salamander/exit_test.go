package main

import (
	"context"
	"io"
	"testing"
)

// The exit statuses the README promises for usage errors: help asked for
// is 0, a usage error 2 — an unknown command of salamander's or of
// admin's, no command, a command's -h, a flag that does not parse.
func TestUsageErrorsExitWithStatus2(t *testing.T) {
	for _, c := range []struct {
		args []string
		want int
	}{
		{[]string{"help"}, 0},
		{[]string{"-h"}, 0},
		{nil, 2},
		{[]string{"frobnicate"}, 2},
		{[]string{"admin", "frobnicate"}, 2},
		{[]string{"admin"}, 2},
		{[]string{"serve", "-h"}, 2},
		{[]string{"serve", "--no-such-flag"}, 2},
		{[]string{"certs"}, 1}, // a required flag left out
	} {
		if got := exitStatus(run(context.Background(), c.args, nil, io.Discard, io.Discard)); got != c.want {
			t.Errorf("salamander %v exits %d, want %d", c.args, got, c.want)
		}
	}
}
