// Package freeport finds free TCP ports on the loopback address for the
// processes and servers that tests and the fire drill start: ports chosen
// now, bound a moment later by another process.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
)

// Loopback finds n free ports on 127.0.0.1. They are released before use,
// so they are taken below the kernel's range of ephemeral ports: a port
// from that range may become the source port of any outgoing connection
// in between (CI saw a nats-server's monitor port taken by a route's dial),
// while a port below it is only ever taken by a process binding it on
// purpose.
func Loopback(n int) ([]int, error) {
	var out []int
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	lo, hi := 10000, ephemeralPortsFrom()-1
	start := lo + rand.IntN(hi-lo+1)
	for i := 0; i <= hi-lo && len(out) < n; i++ {
		port := lo + (start-lo+i)%(hi-lo+1)
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue // taken
		}
		lns = append(lns, l)
		out = append(out, port)
	}
	if len(out) < n {
		return nil, fmt.Errorf("freeport: only %d free ports on 127.0.0.1 between %d and %d", len(out), lo, hi)
	}
	return out, nil
}

// ephemeralPortsFrom is the first port of the kernel's ephemeral range
// (Linux's default 32768 when it cannot be read).
func ephemeralPortsFrom() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	var from, to int
	if _, err := fmt.Sscan(string(b), &from, &to); err != nil || from <= 11000 {
		return 32768
	}
	return from
}
