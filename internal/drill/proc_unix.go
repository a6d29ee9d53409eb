//go:build unix

package drill

import (
	"os/exec"
	"syscall"
)

// ownProcessGroup puts the site's process in a process group of its own,
// so that a Ctrl-C at the terminal reaches only the drill, which then
// stops its sites itself, and killGroup reaches anything the site started.
func ownProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// killGroup SIGKILLs the process group of a process started with
// ownProcessGroup, falling back to the process alone.
func killGroup(cmd *exec.Cmd) error {
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); err == nil {
		return nil
	}
	return cmd.Process.Kill()
}
