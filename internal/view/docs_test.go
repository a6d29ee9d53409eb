package view

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
)

// The docs state the read model's numbers as the code has them: its schema
// version and the dedupe window, wherever they name them.
func TestDocsStateTheReadModelsNumbers(t *testing.T) {
	read := func(path string) string {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	arch, readme := read("../../docs/ARCHITECTURE.md"), read("../../README.md")
	if want := fmt.Sprintf("The current schema version is %d ", schemaVersion); !strings.Contains(arch, want) {
		t.Errorf("docs/ARCHITECTURE.md does not say %q", want)
	}
	window := regexp.MustCompile(`newest ([0-9,]+) messages|fewer than ([0-9,]+) messages were sent`)
	want := fmt.Sprintf("%d,%03d", DedupeWindow/1000, DedupeWindow%1000)
	found := 0
	for name, doc := range map[string]string{"docs/ARCHITECTURE.md": arch, "README.md": readme} {
		for _, m := range window.FindAllStringSubmatch(doc, -1) {
			found++
			if got := m[1] + m[2]; got != want {
				t.Errorf("%s gives the dedupe window as %s messages, the code as %s", name, got, want)
			}
		}
	}
	if found < 4 {
		t.Errorf("found the dedupe window named %d times in the docs, want at least 4", found)
	}
}
