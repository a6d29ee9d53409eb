//go:build !unix

package main

// privateFiles does nothing where there is no umask; the data directory
// itself is still created 0700.
func privateFiles() {}
