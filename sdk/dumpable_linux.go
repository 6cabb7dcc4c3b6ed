package sdk

import (
	"fmt"
	"syscall"

	"github.com/spear-go/spear"
)

// protectSecret makes the process non-dumpable before it reads its secret.
// Other processes of the same user can then no longer attach to it with
// ptrace, read its memory, environment or descriptors through /proc, or
// take its descriptors with pidfd_getfd; the process also leaves no core
// dump. Root still can (docs/security.md).
func protectSecret() error {
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_DUMPABLE, 0, 0); errno != 0 {
		return fmt.Errorf("%w: make the process non-dumpable: %w", spear.ErrConfig, errno)
	}
	return nil
}
