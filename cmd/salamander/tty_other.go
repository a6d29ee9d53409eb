//go:build !linux

package main

import (
	"errors"
	"os"
)

// isTerminal says no terminal here: the password is read from stdin as a
// line (pipe it in), since this build cannot turn a terminal's echo off.
func isTerminal(*os.File) bool { return false }

func readHidden(*os.File) (string, error) {
	return "", errors.New("no hidden prompt on this system: give the password on stdin")
}

func echoOff(*os.File) (func(), error) {
	return nil, errors.New("no hidden prompt on this system")
}
