package channel

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spear-go/spear/internal/leftover"
)

// leftoverSockets is the kind of a factory's record of its socket
// directory.
const leftoverSockets = "socket-dir"

// socketDirRecord is that record.
type socketDirRecord struct {
	Path string `json:"path"`
}

func init() { leftover.Register(leftoverSockets, removeSocketDir) }

// removeSocketDir removes the socket directory a dead agent left, with
// its sockets. It removes only what looks like one of its own: a
// directory named spear-* that belongs to this user.
func removeSocketDir(r socketDirRecord, _ *slog.Logger) error {
	fi, err := os.Lstat(r.Path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || !strings.HasPrefix(filepath.Base(r.Path), "spear-") || !ok || int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("%s is not a socket directory of this user's; left alone", r.Path)
	}
	return os.RemoveAll(r.Path)
}
