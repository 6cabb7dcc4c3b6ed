//go:build unix

package conformance

import (
	"os"
	"strconv"
	"syscall"
)

// processGroup starts a launched instance in a process group of its own,
// so that killGroup reaches its children too.
func processGroup() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

// killGroup kills the process group led by pid.
func killGroup(pid int) { _ = syscall.Kill(-pid, syscall.SIGKILL) }

// fdIdentity returns what /proc says f is ("pipe:[1234]"), or "" where
// there is no /proc.
func fdIdentity(f *os.File) string {
	s, _ := os.Readlink("/proc/self/fd/" + strconv.Itoa(int(f.Fd())))
	return s
}

// fdOf returns what descriptor fd of process pid is, or "" when it is
// closed (or there is no /proc).
func fdOf(pid, fd int) string {
	s, _ := os.Readlink("/proc/" + strconv.Itoa(pid) + "/fd/" + strconv.Itoa(fd))
	return s
}
