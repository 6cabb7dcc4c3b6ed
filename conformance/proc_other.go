//go:build !unix

package conformance

import (
	"os"
	"syscall"
)

func processGroup() *syscall.SysProcAttr { return nil }

func killGroup(pid int) {
	if p, err := os.FindProcess(pid); err == nil {
		_ = p.Kill()
	}
}

func fdIdentity(*os.File) string { return "" }

func fdOf(pid, fd int) string { return "" }
