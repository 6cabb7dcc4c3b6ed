//go:build !linux

package unix

import "net"

// peerCred is only implemented on Linux.
func peerCred(*net.UnixConn) (pid, uid int) { return -1, -1 }
