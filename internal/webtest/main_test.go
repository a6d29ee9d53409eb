package webtest

import (
	"os"
	"testing"

	"github.com/salamander-chat/salamander/internal/testbin"
)

// binary is the salamander executable built once for the package.
var binary string

func TestMain(m *testing.M) {
	os.Exit(testbin.Main(m, "webtest", &binary))
}
