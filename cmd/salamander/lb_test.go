package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
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

// lb serves a site's URL over its gateways until its context ends.
func TestLBServes(t *testing.T) {
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "gateway %s", r.URL.Path)
	}))
	defer gw.Close()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	out, w := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"lb", "--listen", "127.0.0.1:0", "--backends", gw.URL, "--interval", "20ms"},
			strings.NewReader(""), w, io.Discard)
		w.Close()
	}()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	_, url, ok := strings.Cut(strings.TrimSpace(line), " at ")
	if !ok || !strings.HasPrefix(line, "balancing 1 gateways at http://") {
		t.Fatalf("lb printed %q", line)
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := http.Get(url + "/readyz")
		if err == nil {
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode == http.StatusOK && string(b) == "gateway /readyz" {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gateway never answered through lb: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("lb stopped with %v", err)
	}
}
