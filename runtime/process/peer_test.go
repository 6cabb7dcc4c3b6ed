package process

import (
	"errors"
	"testing"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/transport"
)

func TestCheckPeer(t *testing.T) {
	peer := transport.Info{Transport: "unix", PeerPID: 1234, PeerUID: 1000, PeerSID: 1200}
	for _, tt := range []struct {
		name     string
		info     transport.Info
		sid, uid int
		ok       bool
	}{
		{"in the instance's session, as its user", peer, 1200, 1000, true},
		{"in another session", peer, 1234, 1000, false},
		{"session unknown", transport.Info{Transport: "unix", PeerPID: 1234, PeerUID: 1000}, 1200, 1000, false},
		{"another user", peer, 1200, 1001, false},
		{"transport cannot tell", transport.Info{Transport: "tcp", PeerPID: -1, PeerUID: -1}, 1200, 1000, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := checkPeer(tt.info, tt.sid, tt.uid)
			if tt.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tt.ok && !errors.Is(err, spear.ErrAuthFailed) {
				t.Fatalf("got %v, want a refusal matching spear.ErrAuthFailed", err)
			}
		})
	}
}
