package channel

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/transport"
)

// checkPeer accepts a connection only from a process in the process group
// of pid (the runtime starts each instance as a group leader), when pid is
// known and the transport reports the peer's credentials.
func checkPeer(info transport.Info, pid int) error {
	if pid <= 0 || info.PeerPID < 0 {
		return nil
	}
	if info.PeerPID == pid {
		return nil
	}
	if pgid, err := unix.Getpgid(info.PeerPID); err == nil && pgid == pid {
		return nil
	}
	return fmt.Errorf("%w: peer process %d is not instance process %d or in its process group", spear.ErrAuthFailed, info.PeerPID, pid)
}
