//go:build linux

package main

import (
	"bufio"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// isTerminal reports whether f is a terminal.
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// readHidden reads a line from the terminal f without echoing it, and
// puts the terminal back as it was.
func readHidden(f *os.File) (string, error) {
	restore, err := echoOff(f)
	if err != nil {
		return "", err
	}
	defer restore()
	// In canonical mode a read returns at most one line, so the reader
	// takes nothing past it from the terminal (the second prompt's).
	var b strings.Builder
	r := bufio.NewReaderSize(f, 16)
	for {
		c, err := r.ReadByte()
		if err != nil {
			return "", err
		}
		if c == '\n' {
			return strings.TrimSuffix(b.String(), "\r"), nil
		}
		b.WriteByte(c)
	}
}

// echoOff turns the terminal f's echo off until the returned restore is
// called; what is typed meanwhile is read as usual (a line at a time). A
// Ctrl-C (or a SIGTERM or SIGHUP) meanwhile ends the process, before any
// deferred restore could run: the terminal is put back first, or its user
// is left typing blind.
func echoOff(f *os.File) (restore func(), err error) {
	fd := int(f.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, err
	}
	quiet := *old
	quiet.Lflag &^= unix.ECHO
	quiet.Lflag |= unix.ICANON | unix.ISIG
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &quiet); err != nil {
		signal.Stop(sigs)
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		select {
		case s := <-sigs:
			_ = unix.IoctlSetTermios(fd, unix.TCSETS, old)
			if n, ok := s.(syscall.Signal); ok {
				os.Exit(128 + int(n))
			}
			os.Exit(1)
		case <-done:
		}
	}()
	return func() {
		signal.Stop(sigs)
		close(done)
		_ = unix.IoctlSetTermios(fd, unix.TCSETS, old)
	}, nil
}
