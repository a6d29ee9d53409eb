package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/salamander-chat/salamander/internal/certfiles/certfilestest"
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

// lb serves HTTPS as a gateway does: a renewed certificate (its files
// replaced, as an ACME client does) is served without a restart, which
// would drop every WebSocket of the site; every answer carries HSTS; and
// a key every user of the host may read is refused.
func TestLBServesARenewedCertificate(t *testing.T) {
	pairs := [2]certfilestest.Pair{certfilestest.NewPair(t, 0), certfilestest.NewPair(t, 0)} // two deployments
	files := certfilestest.NewFiles(t)
	certPath, keyPath := files.Cert, files.Key
	install := func(i int, at time.Time) { files.Install(t, pairs[i], at) }
	install(0, time.Now().Add(-time.Hour))
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer gw.Close()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	out, w := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"lb", "--listen", "127.0.0.1:0", "--backends", gw.URL, "--interval", "20ms",
			"--tls-cert", certPath, "--tls-key", keyPath}, strings.NewReader(""), w, io.Discard)
		w.Close()
	}()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	_, url, _ := strings.Cut(strings.TrimSpace(line), " at ")
	go func() { _, _ = io.Copy(io.Discard, out) }()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	served := func() ([]byte, *http.Response) {
		res, err := hc.Get(url + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		hc.CloseIdleConnections() // the next request shakes hands anew
		return res.TLS.PeerCertificates[0].Raw, res
	}
	first, res := served()
	if res.Header.Get("Strict-Transport-Security") == "" {
		t.Error("lb's HTTPS answers carry no Strict-Transport-Security")
	}
	install(1, time.Now())
	deadline := time.Now().Add(20 * time.Second)
	for {
		if now, _ := served(); !bytes.Equal(now, first) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("lb still serves the certificate it started with, 20 s after its files were replaced")
		}
		time.Sleep(100 * time.Millisecond)
	}
	cancel()
	<-done

	if err := os.Chmod(keyPath, 0o644); err != nil {
		t.Fatal(err)
	}
	err = run(t.Context(), []string{"lb", "--listen", "127.0.0.1:0", "--backends", gw.URL, "--tls-cert", certPath,
		"--tls-key", keyPath}, strings.NewReader(""), io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "readable by every user") {
		t.Fatalf("lb with a world-readable key: %v", err)
	}
}
