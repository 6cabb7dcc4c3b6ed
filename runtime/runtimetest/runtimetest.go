// Package runtimetest helps test a runtime package: it checks that the
// package registered a runtime.Kind, and that the Kind reads the runtime's
// part of a function's configuration as the agent will.
package runtimetest

import (
	"errors"
	"strings"
	"testing"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/runtime"
)

// Decode decodes data, a JSON object of a function's runtime fields, with
// the Kind registered for t, as the agent does, and validates the spec.
// It fails the test at once when t has no Kind.
func Decode(tb testing.TB, t spear.RuntimeType, data string) (runtime.Spec, error) {
	tb.Helper()
	k, ok := runtime.Lookup(t)
	if !ok {
		tb.Fatalf("no runtime.Kind is registered for the %s runtime", t)
	}
	spec, err := k.DecodeSpec([]byte(data))
	if err != nil {
		return nil, err
	}
	return spec, spec.Validate()
}

// CheckKind checks the Kind registered for t: good must decode into a
// valid spec for t, which CheckKind returns; each key of bad must fail to
// decode or validate, with an error matching spear.ErrInvalidConfig whose
// text contains the key's value.
func CheckKind(tb testing.TB, t spear.RuntimeType, good string, bad map[string]string) runtime.Spec {
	tb.Helper()
	spec, err := Decode(tb, t, good)
	if err != nil {
		tb.Fatalf("decode %s: %v", good, err)
	}
	if spec.RuntimeType() != t {
		tb.Errorf("decoded a spec for the %s runtime, want %s", spec.RuntimeType(), t)
	}
	for in, want := range bad {
		if _, err := Decode(tb, t, in); !errors.Is(err, spear.ErrInvalidConfig) || !strings.Contains(err.Error(), want) {
			tb.Errorf("decode %s: %v, want an error matching spear.ErrInvalidConfig that mentions %q", in, err, want)
		}
	}
	return spec
}

// Fields returns the fields that the *runtime.FieldError values in err
// (one, or several joined by errors.Join) name, in order. Any other error
// fails the test at once.
func Fields(tb testing.TB, err error) []string {
	tb.Helper()
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	var fields []string
	for _, e := range errs {
		if e == nil {
			continue
		}
		fe, ok := errors.AsType[*runtime.FieldError](e)
		if !ok || !errors.Is(e, spear.ErrInvalidConfig) {
			tb.Fatalf("%T %q is not a *runtime.FieldError", e, e)
		}
		fields = append(fields, fe.Field)
	}
	return fields
}
