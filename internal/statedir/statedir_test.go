package statedir_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/internal/statedir"
)

func TestOpenCreatesPrivateDirAndLocks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a", "state")
	d, err := statedir.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("state dir mode %v, %v; want 0700", fi.Mode().Perm(), err)
	}
	// A second agent is refused, and told who holds the directory.
	_, err = statedir.Open(path)
	if !errors.Is(err, statedir.ErrLocked) || !errors.Is(err, spear.ErrConfig) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
	if !strings.Contains(err.Error(), strconv.Itoa(os.Getpid())) {
		t.Errorf("error %q does not name the holder's pid", err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	// Released: the next agent gets it.
	d2, err := statedir.Open(path)
	if err != nil {
		t.Fatalf("open after close: %v", err)
	}
	d2.Close()
}

func TestOpenRefusesSharedDir(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(path, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := statedir.Open(path); !errors.Is(err, statedir.ErrInsecure) {
		t.Fatalf("open of a 0755 dir: %v, want ErrInsecure", err)
	}
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o600)
	if _, err := statedir.Open(file); err == nil {
		t.Fatal("open of a regular file succeeded")
	}
}

func TestWriteAndReadFile(t *testing.T) {
	d, err := statedir.Open(t.TempDir() + "/s")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := d.ReadFile("token"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("read of a missing file: %v, want fs.ErrNotExist", err)
	}
	if err := d.WriteFile("token", []byte("s3cret")); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(d.Join("token"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	if b, err := d.ReadFile("token"); err != nil || string(b) != "s3cret" {
		t.Fatalf("read back %q, %v", b, err)
	}
	// A file others may read is not trusted.
	os.Chmod(d.Join("token"), 0o644)
	if _, err := d.ReadFile("token"); !errors.Is(err, statedir.ErrInsecure) {
		t.Fatalf("read of a 0644 file: %v, want ErrInsecure", err)
	}
	// No temporary files are left behind.
	ents, _ := os.ReadDir(d.Path())
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("left behind %s", e.Name())
		}
	}
}

func TestDefault(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", "/x/state")
	if os.Geteuid() == 0 {
		if got := statedir.Default(); got != "/var/lib/spearlet" {
			t.Fatalf("Default() = %q for root", got)
		}
		return
	}
	if got := statedir.Default(); got != "/x/state/spearlet" {
		t.Fatalf("Default() = %q", got)
	}
}
