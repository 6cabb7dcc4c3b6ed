package process

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
	"testing"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/transport"
)

func TestCheckPeer(t *testing.T) {
	// A process leading a group this process is not in.
	stranger := exec.Command("sleep", "60")
	stranger.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := stranger.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stranger.Process.Kill(); _ = stranger.Wait() })

	me := transport.Info{Transport: "unix", PeerPID: os.Getpid()}
	for _, tt := range []struct {
		name string
		info transport.Info
		pid  int
		ok   bool
	}{
		{"the instance itself", me, os.Getpid(), true},
		{"in the instance's group", me, syscall.Getpgrp(), true},
		{"in another group", me, stranger.Process.Pid, false},
		{"pid not known yet", me, 0, true},
		{"transport cannot tell", transport.Info{Transport: "tcp", PeerPID: -1}, stranger.Process.Pid, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := checkPeer(tt.info, tt.pid)
			if tt.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tt.ok && !errors.Is(err, spear.ErrAuthFailed) {
				t.Fatalf("got %v, want a refusal matching spear.ErrAuthFailed", err)
			}
		})
	}
}
