package process

import (
	"fmt"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/transport"
)

// checkPeer admits a connection only from a process of session sid run by
// user uid. Each instance leads a session of its own (setsid), whose id is
// the instance's process id: its descendants inherit it, and no other
// process can join it (setsid only ever creates a new session, and setpgid
// moves a process only between groups of its own session). A process group
// is no such proof, since a process of the same user may setpgid itself
// into any group of its session.
//
// A transport that cannot tell who the peer is (tcp and grpc: PeerPID -1)
// leaves the decision to the handshake and its secret.
func checkPeer(info transport.Info, sid, uid int) error {
	if info.PeerPID < 0 {
		return nil
	}
	if info.PeerSID != sid {
		return fmt.Errorf("%w: peer process %d is in session %d, not the instance's session %d", spear.ErrAuthFailed, info.PeerPID, info.PeerSID, sid)
	}
	if info.PeerUID != uid {
		return fmt.Errorf("%w: peer process %d runs as uid %d, not the instance's uid %d", spear.ErrAuthFailed, info.PeerPID, info.PeerUID, uid)
	}
	return nil
}
