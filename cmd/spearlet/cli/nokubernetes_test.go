//go:build nokubernetes

package cli

import (
	"errors"
	"strings"
	"testing"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/agent"
)

// TestKubernetesLeftOut checks what a spearlet built without the
// kubernetes runtime says of a kubernetes function: at load, not at the
// first start.
func TestKubernetesLeftOut(t *testing.T) {
	if runtimes[spear.Kubernetes] != nil {
		t.Fatal("the kubernetes runtime is built in")
	}
	_, err := agent.ParseConfig([]byte("functions: [{name: f, runtime: kubernetes, image: x}]\n"))
	if !errors.Is(err, spear.ErrInvalidConfig) || !strings.Contains(err.Error(), `runtime "kubernetes" is not built into this program`) {
		t.Errorf("kubernetes function: %v", err)
	}
}
