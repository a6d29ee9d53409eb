package webtest

import (
	"flag"
	"fmt"
	"os"
	"testing"

	"github.com/salamander-chat/salamander/internal/testbin"
)

// binary is the salamander executable built once for the package.
var binary string

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	flag.Parse()
	if testing.Short() {
		return m.Run() // every test skips; build nothing
	}
	bins, remove, err := testbin.Build("webtest", testbin.Salamander)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer remove()
	binary = bins[0]
	return m.Run()
}
