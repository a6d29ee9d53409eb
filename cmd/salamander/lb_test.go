package main

import (
	"io"
	"strings"
	"testing"
)

// lb refuses what it cannot run with instead of starting half-configured.
func TestLBRefusesBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"--backends", "10.0.0.1:8080"},
		{"--backends", "http://127.0.0.1:1", "--tls-cert", "c.pem"},
		{"--backends", "http://127.0.0.1:1", "extra"},
		{"--backends", "http://127.0.0.1:1", "--backend-ca", "/nonexistent/ca.pem"},
	} {
		err := run(t.Context(), append([]string{"lb", "--listen", "127.0.0.1:0"}, args...), strings.NewReader(""), io.Discard, io.Discard)
		if err == nil {
			t.Errorf("lb %q started", args)
		}
	}
}
