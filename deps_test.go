package salamander_test

import (
	"os/exec"
	"strings"
	"testing"
)

// The domain package imports nothing internal and no adapter library; the
// public SDK depends on the domain and a WebSocket library only.
func TestDependencyRules(t *testing.T) {
	rules := map[string][]string{
		".":         {"github.com/salamander-chat/salamander/internal", "nats-io", "sqlite", "websocket", "prometheus"},
		"./client/": {"github.com/salamander-chat/salamander/internal", "nats-io", "sqlite", "prometheus"},
	}
	for pkg, forbidden := range rules {
		out, err := exec.Command("go", "list", "-deps", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list %s: %v\n%s", pkg, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, f := range forbidden {
				if strings.Contains(dep, f) {
					t.Errorf("%s depends on %s", pkg, dep)
				}
			}
		}
	}
}
