package unix

import (
	"errors"
	"net"

	"golang.org/x/sys/unix"
)

// peerCred returns the pid, uid and session id of the process at the other
// end of c, from the kernel: -1, -1 and 0 for what it does not say.
//
// SO_PEERCRED gives the pid and uid as of connect. The session id is read
// while a pidfd holds the peer process (SO_PEERPIDFD, Linux 6.5, takes the
// very process that connected; before that, pidfd_open of its pid), and
// is kept only if that process still exists afterwards: a peer that
// exited, and whose pid was reused by another process meanwhile, is never
// credited with the newcomer's session. Without pidfds (before Linux 5.3)
// the session is read by pid alone.
func peerCred(c *net.UnixConn) (pid, uid, sid int) {
	pid, uid = -1, -1
	raw, err := c.SyscallConn()
	if err != nil {
		return
	}
	_ = raw.Control(func(fd uintptr) {
		cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if err != nil {
			return
		}
		pid, uid = int(cred.Pid), int(cred.Uid)
		pidfd, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PEERPIDFD)
		if err != nil {
			pidfd, err = unix.PidfdOpen(pid, 0)
		}
		if errors.Is(err, unix.ENOSYS) {
			if s, err := unix.Getsid(pid); err == nil {
				sid = s
			}
			return
		}
		if err != nil {
			return // the peer is gone
		}
		defer unix.Close(pidfd)
		s, err := unix.Getsid(pid)
		if err != nil {
			return
		}
		// Signal 0 checks only that the process exists; EPERM says it
		// does, under a user this one may not signal.
		if err := unix.PidfdSendSignal(pidfd, 0, nil, 0); err == nil || errors.Is(err, unix.EPERM) {
			sid = s
		}
	})
	return
}
