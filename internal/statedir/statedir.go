// Package statedir is the agent's state directory: what must outlive one
// run of spearlet (its API token, its TLS key, the record of the instances
// it started) and the lock that keeps two agents off the same state.
//
// A directory is private to the user that runs the agent: Open creates it
// with mode 0700, refuses one that another user owns or that others can
// enter, and takes an exclusive lock on its "lock" file for as long as the
// Dir is open. A second agent on the same directory fails at once with an
// error naming the process that holds it, before it binds or starts
// anything.
package statedir

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/spear-go/spear"
)

// ErrLocked is the category of Open's error when another process holds
// the directory's lock. It matches spear.ErrConfig.
var ErrLocked = fmt.Errorf("%w: state directory in use by another spearlet", spear.ErrConfig)

// ErrInsecure is the category of Open's error for a directory that others
// could read or write. It matches spear.ErrConfig.
var ErrInsecure = fmt.Errorf("%w: state directory not private", spear.ErrConfig)

// lockName is the file whose lock marks a directory in use; it holds the
// pid of the holder, for the error a second agent gets.
const lockName = "lock"

// Default returns the state directory of the user running the agent:
// /var/lib/spearlet for root, else $XDG_STATE_HOME/spearlet, which
// defaults to ~/.local/state/spearlet.
func Default() string {
	if os.Geteuid() == 0 {
		return "/var/lib/spearlet"
	}
	if d := os.Getenv("XDG_STATE_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "spearlet")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "state", "spearlet")
	}
	return filepath.Join(os.TempDir(), "spearlet-"+strconv.Itoa(os.Geteuid()))
}

// Dir is an open, locked state directory. Close releases the lock.
type Dir struct {
	path string
	lock *os.File
}

// Open opens the state directory at path (Default when empty), creating
// it and its parents with mode 0700, and locks it. It fails with an error
// matching ErrInsecure when the directory belongs to another user or
// grants any access to group or others, and with one matching ErrLocked
// when another process holds the lock.
func Open(path string) (*Dir, error) {
	if path == "" {
		path = Default()
	}
	path, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("%w: state directory %q: %w", spear.ErrConfig, path, err)
	}
	if err := os.MkdirAll(path, 0o700); err != nil {
		return nil, fmt.Errorf("%w: state directory: %w", spear.ErrConfig, err)
	}
	if err := checkPrivate(path); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(path, lockName), os.O_RDWR|os.O_CREATE|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("%w: state directory lock: %w", spear.ErrConfig, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(f.Name())
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s is locked by pid %s", ErrLocked, path, strings.TrimSpace(string(holder)))
		}
		return nil, fmt.Errorf("%w: lock %s: %w", spear.ErrConfig, path, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &Dir{path: path, lock: f}, nil
}

// checkPrivate refuses a directory that is not this user's alone.
func checkPrivate(path string) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return fmt.Errorf("%w: state directory: %w", spear.ErrConfig, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%w: %s is not a directory", ErrInsecure, path)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("%w: %s belongs to uid %d, not %d", ErrInsecure, path, st.Uid, os.Geteuid())
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%w: %s has mode %v; want 0700 (chmod 700 %s)", ErrInsecure, path, fi.Mode().Perm(), path)
	}
	return nil
}

// Path returns the directory's absolute path.
func (d *Dir) Path() string { return d.path }

// Join returns the path of name inside the directory.
func (d *Dir) Join(name ...string) string {
	return filepath.Join(append([]string{d.path}, name...)...)
}

// WriteFile writes data to name inside the directory with mode 0600,
// atomically: readers see the old content or the new, never a part.
func (d *Dir) WriteFile(name string, data []byte) error {
	tmp, err := os.CreateTemp(d.path, "."+filepath.Base(name)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), d.Join(name))
}

// ReadFile reads name inside the directory. It fails with an error
// matching fs.ErrNotExist when there is no such file, and with one
// matching ErrInsecure when group or others may read it.
func (d *Dir) ReadFile(name string) ([]byte, error) {
	f, err := os.Open(d.Join(name))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %v; want 0600", ErrInsecure, f.Name(), fi.Mode().Perm())
	}
	return io.ReadAll(f)
}

// Close releases the lock. The directory and its files stay.
func (d *Dir) Close() error {
	if d.lock == nil {
		return nil
	}
	err := d.lock.Close() // closing the descriptor drops the flock
	d.lock = nil
	return err
}
