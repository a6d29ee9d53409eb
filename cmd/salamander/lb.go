package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/salamander-chat/salamander/internal/balancer"
	"github.com/salamander-chat/salamander/internal/certfiles"
)

const lbUsage = `usage: salamander lb --listen ADDR --backends URL,URL,… [flags]

Runs the load balancer in front of one site's gateways (the 'serve' processes of
that site): one public URL for the site, the one '--sites' lists. Requests and
WebSockets go round-robin to the gateways whose /readyz answers 200; a request
a dead gateway refused goes to the next one; with none ready it answers 503, which
sends Salamander's clients to another site. It adds X-Forwarded-For: start the
gateways with --trusted-proxies naming this host.
`

func runLB(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("lb", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, lbUsage); fs.PrintDefaults() }
	cfg := balancer.DefaultConfig()
	listen := fs.String("listen", "127.0.0.1:8080", "address to serve the site's public URL at")
	backends := fs.String("backends", "", "comma-separated base URLs of the site's gateways (required)")
	fs.DurationVar(&cfg.Interval, "interval", cfg.Interval, "how often every gateway's /readyz is checked")
	fs.DurationVar(&cfg.Timeout, "timeout", cfg.Timeout, "bound on one health check")
	cert := fs.String("tls-cert", "", "serve HTTPS with this certificate (PEM; with --tls-key)")
	key := fs.String("tls-key", "", "the certificate's private key (PEM)")
	backendCA := fs.String("backend-ca", "", "trust this CA (PEM) for https:// gateways")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return flagError(err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("lb: unexpected arguments %q", fs.Args())
	}
	if (*cert == "") != (*key == "") {
		return errors.New("lb: --tls-cert and --tls-key go together")
	}
	log, err := newLogger(stderr, *logLevel)
	if err != nil {
		return err
	}
	cfg.Logger = log
	cfg.Backends = splitList(*backends)
	if *backendCA != "" {
		pem, err := os.ReadFile(*backendCA)
		if err != nil {
			return fmt.Errorf("lb: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("lb: no certificate in %s", *backendCA)
		}
		cfg.TLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	b, err := balancer.New(cfg)
	if err != nil {
		return fmt.Errorf("lb: %w", err)
	}
	// Idle kept-alive connections are let go after IdleTimeout; a request
	// body has the balancer's own deadline (a WebSocket, once upgraded,
	// none: its gateway pings it).
	srv := &http.Server{Handler: b, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	if *cert != "" {
		// As a gateway serves HTTPS: the files are re-read when they
		// change (a restart would drop every WebSocket of the site), a
		// key any user may read is refused, and browsers are told to
		// come back over HTTPS only.
		files, err := certfiles.Load(*cert, *key, log)
		if err != nil {
			return fmt.Errorf("lb: %w", err)
		}
		srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: files.GetCertificate}
		srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Strict-Transport-Security", "max-age=31536000")
			b.ServeHTTP(w, r)
		})
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("lb: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { b.Run(ctx) })
	wg.Go(func() {
		<-ctx.Done()
		sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer scancel()
		_ = srv.Shutdown(sctx)
	})
	scheme := "http"
	if *cert != "" {
		scheme = "https"
	}
	fmt.Fprintf(stdout, "balancing %d gateways at %s://%s\n", len(cfg.Backends), scheme, ln.Addr())
	if *cert != "" {
		err = srv.ServeTLS(ln, "", "")
	} else {
		err = srv.Serve(ln)
	}
	cancel()
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("lb: %w", err)
}
