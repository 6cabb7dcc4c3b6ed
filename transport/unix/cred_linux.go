package unix

import (
	"net"

	"golang.org/x/sys/unix"
)

// peerCred returns the pid and uid of the process at the other end of c,
// from SO_PEERCRED, or -1, -1 when the kernel does not say.
func peerCred(c *net.UnixConn) (pid, uid int) {
	pid, uid = -1, -1
	raw, err := c.SyscallConn()
	if err != nil {
		return
	}
	_ = raw.Control(func(fd uintptr) {
		cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if err == nil {
			pid, uid = int(cred.Pid), int(cred.Uid)
		}
	})
	return
}
