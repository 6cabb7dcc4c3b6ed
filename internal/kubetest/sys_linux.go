package kubetest

import "syscall"

// sysProcAttr has the kernel kill a server when the test process goes
// (a test that times out panics without running its cleanups). Pdeathsig
// fires when the forking thread exits; the Go runtime ends a thread only
// when a goroutine locked to it exits, and the servers are forked from
// ordinary goroutines, whose threads live as long as the process.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
