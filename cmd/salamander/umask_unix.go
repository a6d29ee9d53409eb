//go:build unix

package main

import "syscall"

// privateFiles makes every file the process creates from now on its
// user's alone (0600, directories 0700): a site's data holds every
// message and password hash, its secrets its credentials.
func privateFiles() { syscall.Umask(0o077) }
