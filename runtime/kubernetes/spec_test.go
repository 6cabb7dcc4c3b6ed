package kubernetes_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/runtime"
	"github.com/spear-go/spear/runtime/kubernetes"
)

func TestDecodeSpec(t *testing.T) {
	k, ok := runtime.Lookup(spear.Kubernetes)
	if !ok {
		t.Fatal("the kubernetes runtime registered no kind")
	}
	spec, err := k.DecodeSpec([]byte(`{"image":"fn:1","namespace":"fns","labels":{"team":"a"},"cpu":"250m","memory":"64Mi","env":{"A":"1"}}`))
	if err != nil {
		t.Fatal(err)
	}
	s, err := runtime.SpecAs[kubernetes.Spec](spec)
	if err != nil || s.Image != "fn:1" || s.Namespace != "fns" || s.Labels["team"] != "a" || s.CPU != "250m" || s.Env["A"] != "1" {
		t.Errorf("decoded %+v, %v", s, err)
	}
	// Every problem is reported, each naming its field.
	err = decodeValid(k, `{"namespace":"Bad_NS","labels":{"spear.dev/x":"y"},"cpu":"lots","env":{"SPEAR_SECRET":"00"}}`)
	for _, want := range []string{"image: required", "namespace: \"Bad_NS\"", "labels.spear.dev/x: the spear.dev/ prefix is reserved", "cpu: \"lots\"", "env.SPEAR_SECRET: set by the runtime"} {
		if !errors.Is(err, spear.ErrInvalidConfig) || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want it to mention %q", err, want)
		}
	}
	if _, err := k.DecodeSpec([]byte(`{"image":"x","command":"y"}`)); !errors.Is(err, spear.ErrInvalidConfig) || !strings.Contains(err.Error(), "command: unknown field") {
		t.Errorf("process field in a kubernetes spec: %v", err)
	}
}

// decodeValid decodes a spec as the agent does, and validates it.
func decodeValid(k runtime.Kind, in string) error {
	spec, err := k.DecodeSpec([]byte(in))
	if err != nil {
		return err
	}
	return spec.Validate()
}
