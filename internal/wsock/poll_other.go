//go:build !linux

package wsock

import (
	"errors"
	"log/slog"
)

// poller parks sockets where the system has a poller this package uses
// (Linux's epoll); elsewhere there is none, and each socket keeps a
// goroutine blocked in a read.
type poller struct{}

func newPoller(*slog.Logger) (*poller, error) {
	return nil, errors.New("no socket poller on this system")
}

func (*poller) park(*Conn) bool   { return false }
func (*poller) take(uint64) *Conn { return nil }
func (*poller) close()            {}
func (*poller) has(uint64) bool   { return false }
