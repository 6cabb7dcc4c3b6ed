package kubernetes_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/runtime"
	"github.com/spear-go/spear/runtime/kubernetes"
	"github.com/spear-go/spear/runtime/runtimetest"
)

func TestDecodeSpec(t *testing.T) {
	spec := runtimetest.CheckKind(t, spear.Kubernetes, `{"image":"fn:1","namespace":"fns","labels":{"team":"a"},"cpu":"250m","memory":"64Mi","env":{"A":"1"}}`, map[string]string{
		`{"image":"x","command":"y"}`: "command: unknown field",
	})
	s, err := runtime.SpecAs[kubernetes.Spec](spec)
	if err != nil || s.Image != "fn:1" || s.Namespace != "fns" || s.Labels["team"] != "a" || s.CPU != "250m" || s.Env["A"] != "1" {
		t.Errorf("decoded %+v, %v", s, err)
	}
	// Every problem is reported, each naming its field.
	_, err = runtimetest.Decode(t, spear.Kubernetes, `{"namespace":"Bad_NS","labels":{"spear.dev/x":"y"},"cpu":"lots","env":{"SPEAR_SECRET":"00"}}`)
	for _, want := range []string{"image: required", "namespace: \"Bad_NS\"", "labels.spear.dev/x: the spear.dev/ prefix is reserved", "cpu: \"lots\"", "env.SPEAR_SECRET: set by the runtime"} {
		if !errors.Is(err, spear.ErrInvalidConfig) || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want it to mention %q", err, want)
		}
	}
}
