package main

import (
	"os/exec"
	"strings"
	"testing"
)

// The worker is small because of what it does not link.
func TestLinksNothingHeavy(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, heavy := range []string{"k8s.io/client-go", "github.com/tetratelabs/wazero", "google.golang.org/grpc"} {
		for _, dep := range strings.Fields(string(out)) {
			if strings.HasPrefix(dep, heavy) {
				t.Errorf("spear-worker links %s", dep)
				break
			}
		}
	}
}
