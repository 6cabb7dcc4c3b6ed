// Package kubetest runs Spear's Kubernetes tests against a real control
// plane: an etcd and a kube-apiserver, built from source by
// scripts/kube-build.sh, with TLS, tokens and RBAC (ControlPlane); the
// manifests of deploy/kubernetes applied to it as an operator would
// (Apply); and a node simulator that schedules, runs and reports pods
// bound to its node as local processes (Node).
//
// Tests that need the servers call Require (or Shared), which skips the
// test when the binaries are missing, unless $SPEAR_KUBE_REQUIRE is set
// (as CI sets it): then a missing binary fails the test. -short skips
// them too.
//
// Goroutines: each server process has one, waiting for it to exit, ended
// by ControlPlane.Stop; a Node has the ones its doc lists, ended by
// Node.Stop.
package kubetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"go.uber.org/goleak"
	k8s "k8s.io/client-go/kubernetes"
)

// KubernetesVersion is the release of kube-apiserver that
// scripts/kube-build.sh builds: the one matching the client-go in go.mod.
const KubernetesVersion = "v1.37.2"

// Environment variables the tier reads.
const (
	// EnvBinDir names the directory holding kube-apiserver and etcd
	// (default: where scripts/kube-build.sh puts them,
	// $XDG_CACHE_HOME/spear/kube/KubernetesVersion).
	EnvBinDir = "SPEAR_KUBE_BIN_DIR"
	// EnvRequire, when set to anything but "" or "0", turns the skip of
	// a test whose binaries are missing into a failure.
	EnvRequire = "SPEAR_KUBE_REQUIRE"
)

// BinDir returns the directory where the control plane's binaries are
// looked for.
func BinDir() string {
	if d := os.Getenv(EnvBinDir); d != "" {
		return d
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(cache, "spear", "kube", KubernetesVersion)
}

// Require returns the directory of the control plane's binaries. When they
// are missing, it skips the test with a message that says how to build
// them, or fails it when $SPEAR_KUBE_REQUIRE is set. -short skips too.
func Require(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("skipping the Kubernetes tier in -short mode")
	}
	dir := BinDir()
	for _, name := range []string{"etcd", "kube-apiserver"} {
		if st, err := os.Stat(filepath.Join(dir, name)); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			msg := fmt.Sprintf("%s not found in %q: run scripts/kube-build.sh (or set $%s to its directory)", name, dir, EnvBinDir)
			if required() {
				t.Fatalf("%s; $%s is set, so the Kubernetes tier must run", msg, EnvRequire)
			}
			t.Skip(msg)
		}
	}
	return dir
}

func required() bool {
	v := os.Getenv(EnvRequire)
	return v != "" && v != "0"
}

// shared is the control plane a test binary shares across its tests.
var shared struct {
	mu  sync.Mutex
	cp  *ControlPlane
	dir string
	err error
}

// Shared returns the test binary's control plane, starting it on first
// use. The package's TestMain must call StopShared after m.Run. A start
// that failed fails every later caller too.
func Shared(t testing.TB) *ControlPlane {
	t.Helper()
	bins := Require(t)
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.cp == nil && shared.err == nil {
		shared.dir, shared.err = os.MkdirTemp("", "spear-kube-")
		if shared.err == nil {
			shared.cp, shared.err = Start(context.Background(), bins, shared.dir)
		}
		if shared.err != nil {
			shared.err = fmt.Errorf("start the control plane: %w", shared.err)
		}
	}
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.cp
}

// StopShared stops the shared control plane, if one started, and removes
// its files.
func StopShared() {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.cp != nil {
		shared.cp.Stop()
		shared.cp = nil
	}
	if shared.dir != "" {
		os.RemoveAll(shared.dir)
		shared.dir = ""
	}
}

// RunTests is the body of a TestMain for a package of the tier: it runs
// the tests, stops the shared control plane, runs cleanups, and then
// checks for leaked goroutines. It returns the exit code.
func RunTests(m *testing.M, cleanups ...func()) int {
	code := m.Run()
	StopShared()
	for _, c := range cleanups {
		c()
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "leaked goroutines:", err)
			code = 1
		}
	}
	return code
}

// StartTestNode starts a Node named name that runs images, with its files
// in a temporary directory and its log in the test's; the test fails if
// it cannot start, and the node stops when the test ends.
func StartTestNode(t testing.TB, cp *ControlPlane, client k8s.Interface, name string, images map[string]Image) *Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	n, err := cp.StartNode(ctx, client, NodeOptions{Name: name, Images: images, Dir: t.TempDir(), Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Stop)
	return n
}

func randomToken() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}
