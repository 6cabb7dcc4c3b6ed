package process

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/transport"
)

// checkPeer admits a connection only from a process in the process group
// of pid (each instance leads its own group), when pid is known and the
// transport reports the peer's credentials (SO_PEERCRED on unix sockets).
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
