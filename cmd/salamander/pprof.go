package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof" // (its init also registers on http.DefaultServeMux, which nothing here serves)
	"sync"
	"time"
)

// startPprof serves the Go runtime's profiles (CPU, heap, goroutines, …)
// at http://addr/debug/pprof/ on a listener of its own, never on the API's
// port. An address without a host (":6060") binds the loopback interface
// only; profiles show internals and cost CPU, so exposing them beyond the
// machine takes an explicit host. stop closes the listener and waits for
// its goroutine.
func startPprof(addr string, log *slog.Logger) (stop func(), url string, err error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, "", fmt.Errorf("--pprof %q: %w", addr, err)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, port))
	if err != nil {
		return nil, "", fmt.Errorf("--pprof: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("pprof server stopped", "err", err)
		}
	}()
	url = "http://" + ln.Addr().String() + "/debug/pprof/"
	log.Info("serving profiles", "system", "pprof", "url", url)
	return func() {
		_ = srv.Close()
		wg.Wait()
	}, url, nil
}
