package runtime_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/runtime"
	"github.com/spear-go/spear/runtime/runtimetest"
)

// testType is the runtime type of testSpec, registered as a runtime
// package registers its own.
var testType = spear.RegisterRuntimeType("runtime-test")

// noDecoderType is a registered type that gets no Kind.
var noDecoderType = spear.RegisterRuntimeType("runtime-test-nodecoder")

// testSpec is a runtime's own spec: one required field and an
// environment.
type testSpec struct {
	Greeting string        `json:"greeting"`
	Env      runtime.Env   `json:"env,omitempty"`
	Memory   runtime.Bytes `json:"memory,omitempty"`
	Limits   struct {
		Memory runtime.Bytes `json:"memory,omitempty"`
		Count  int           `json:"count,omitempty"`
	} `json:"limits,omitzero"`
}

func (testSpec) RuntimeType() spear.RuntimeType { return testType }

func (s testSpec) Validate() error {
	var errs []error
	if s.Greeting == "" {
		errs = append(errs, runtime.BadField("greeting", "required"))
	}
	return errors.Join(append(errs, s.Env.Validate())...)
}

// otherSpec is another runtime's spec.
type otherSpec struct{}

func (otherSpec) RuntimeType() spear.RuntimeType { return spear.Process }
func (otherSpec) Validate() error                { return nil }

func init() {
	runtime.Register(runtime.Kind{Type: testType, DecodeSpec: runtime.DecodeJSON[testSpec], MaxConcurrency: 3})
}

func TestKindRegistry(t *testing.T) {
	k, ok := runtime.Lookup(testType)
	if !ok || k.Type != testType || k.MaxConcurrency != 3 {
		t.Fatalf("Lookup = %+v, %v", k, ok)
	}
	found := false
	for _, k := range runtime.Kinds() {
		found = found || k.Type == testType
	}
	if !found {
		t.Errorf("Kinds() misses the registered kind")
	}
	for name, k := range map[string]runtime.Kind{
		"duplicate":    {Type: testType, DecodeSpec: runtime.DecodeJSON[testSpec]},
		"invalid type": {Type: 0, DecodeSpec: runtime.DecodeJSON[testSpec]},
		"no decoder":   {Type: noDecoderType},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Register with %s did not panic", name)
				}
			}()
			runtime.Register(k)
		}()
	}
}

func TestDecodeJSON(t *testing.T) {
	spec := runtimetest.CheckKind(t, testType, `{"greeting":"hi","env":{"B":"2","A":"1"}}`, map[string]string{
		`{"greting":"hi"}`:                    "greting: unknown field: the runtime-test runtime has no such setting",
		`{}`:                                  "greeting: required",
		`{"greeting":"hi","env":{"A=B":"x"}}`: `env: variable name "A=B" is not valid`,
		`{"greeting":"hi","env":{"A":"x\u0000"}}`: "env.A: the value holds a NUL byte",
		`{"greeting":7}`:                    "greeting: number is not a string",
		`{"greeting":"hi","env":{"A":[1]}}`: "env.A: want a string",
		// The errors of a field type's UnmarshalJSON, which encoding/json
		// passes on without where they were, name their field.
		`{"greeting":"hi","memory":"lots"}`:            `memory: "lots" is not a whole number`,
		`{"greeting":"hi","limits":{"memory":"lots"}}`: `limits.memory: "lots" is not a whole number`,
		`{"greeting":"hi","limits":{"memroy":1}}`:      "limits.memroy: unknown field",
		`{"greeting":"hi","limits":{"count":"x"}}`:     "limits.count: string is not a int",
	})
	s, err := runtime.SpecAs[testSpec](spec)
	if err != nil || s.Greeting != "hi" || strings.Join(s.Env.List(), ",") != "A=1,B=2" {
		t.Errorf("decoded %+v, %v", s, err)
	}
}

// TestDecodeJSONEveryProblem: each bad member is reported, on its own
// path, where encoding/json stops at the first.
func TestDecodeJSONEveryProblem(t *testing.T) {
	_, err := runtime.DecodeJSON[testSpec]([]byte(`{"greeting":"hi","limits":{"memory":"lots","count":"x"},"memory":"heaps","colour":1}`))
	got := runtimetest.Fields(t, err)
	if want := "limits.memory limits.count memory colour"; strings.Join(got, " ") != want {
		t.Errorf("fields %q, want %q (error: %v)", got, want, err)
	}
}

func TestSpecAs(t *testing.T) {
	if s, err := runtime.SpecAs[testSpec](&testSpec{Greeting: "hi"}); err != nil || s.Greeting != "hi" {
		t.Errorf("pointer spec: %+v, %v", s, err)
	}
	var nilSpec *testSpec
	for name, spec := range map[string]runtime.Spec{
		"another runtime's": otherSpec{},
		"nil":               nil,
		"nil pointer":       nilSpec,
		"invalid":           testSpec{},
	} {
		if _, err := runtime.SpecAs[testSpec](spec); !errors.Is(err, spear.ErrInvalidConfig) {
			t.Errorf("%s spec: err = %v, want spear.ErrInvalidConfig", name, err)
		}
	}
	var fe *runtime.FieldError
	if _, err := runtime.SpecAs[testSpec](testSpec{}); !errors.As(err, &fe) || fe.Field != "greeting" || !errors.Is(err, spear.ErrConfig) {
		t.Errorf("invalid spec error %v, want a *FieldError on greeting matching spear.ErrConfig", err)
	}
}

func TestAccept(t *testing.T) {
	id := spear.InstanceID{Runtime: testType, Name: "a"}
	spec, set, err := runtime.Accept[testSpec](id, runtime.Settings{StopGrace: time.Second}, &testSpec{Greeting: "hi"}, time.Minute, time.Hour)
	if err != nil || spec.Greeting != "hi" || set.StartTimeout != time.Minute || set.StopGrace != time.Second {
		t.Errorf("Accept = %+v, %+v, %v", spec, set, err)
	}
	for _, tt := range []struct {
		name string
		id   spear.InstanceID
		set  runtime.Settings
		spec runtime.Spec
		want error
	}{
		{"another type's id", spear.InstanceID{Runtime: spear.Process, Name: "a"}, runtime.Settings{}, testSpec{Greeting: "hi"}, spear.ErrUnsupportedRuntime},
		{"invalid id", spear.InstanceID{Runtime: testType, Name: "A"}, runtime.Settings{}, testSpec{Greeting: "hi"}, spear.ErrInvalidInstanceID},
		{"another runtime's spec", id, runtime.Settings{}, otherSpec{}, spear.ErrInvalidConfig},
		{"invalid spec", id, runtime.Settings{}, testSpec{}, spear.ErrInvalidConfig},
		{"negative start timeout", id, runtime.Settings{StartTimeout: -1}, testSpec{Greeting: "hi"}, spear.ErrInvalidConfig},
	} {
		if _, _, err := runtime.Accept[testSpec](tt.id, tt.set, tt.spec, 1, 1); !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
	}
}

func TestSettingsWithDefaults(t *testing.T) {
	s, err := runtime.Settings{StopGrace: time.Second}.WithDefaults(10*time.Second, 5*time.Second)
	if err != nil || s.StartTimeout != 10*time.Second || s.StopGrace != time.Second {
		t.Errorf("WithDefaults = %+v, %v", s, err)
	}
	if _, err := (runtime.Settings{StartTimeout: -1}).WithDefaults(1, 1); !errors.Is(err, spear.ErrInvalidConfig) {
		t.Errorf("negative start timeout: %v", err)
	}
}

func TestErrorCategories(t *testing.T) {
	if !errors.Is(runtime.ErrClosed, spear.ErrChannelClosed) {
		t.Error("ErrClosed does not match spear.ErrChannelClosed")
	}
	if !errors.Is(runtime.ErrExists, spear.ErrInvalidInstanceID) {
		t.Error("ErrExists does not match spear.ErrInvalidInstanceID")
	}
}

// An environment value written as a number or a boolean is its text.
func TestEnvScalars(t *testing.T) {
	var e runtime.Env
	if err := json.Unmarshal([]byte(`{"PORT":8080,"DEBUG":true,"RATIO":0.5,"NAME":"x"}`), &e); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(e.List(), ","); got != "DEBUG=true,NAME=x,PORT=8080,RATIO=0.5" {
		t.Errorf("env = %s", got)
	}
}

// Every error of DecodeJSON is a *runtime.FieldError, whatever the input.
func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{
		`{"greeting":"hi","limits":{"memory":"lots","count":"x"},"memory":"heaps","colour":1}`,
		`{"env":{"A":[1],"B":{"C":1}},"limits":{"limits":{}}}`, `[1]`, `{"limits":[{"memory":1}]}`, `{"a":`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		_, err := runtime.DecodeJSON[testSpec](b)
		runtimetest.Fields(t, err)
	})
}
