package process_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/channel"
	"github.com/spear-go/spear/runtime"
	"github.com/spear-go/spear/runtime/process"
)

func TestDecodeSpec(t *testing.T) {
	k, ok := runtime.Lookup(spear.Process)
	if !ok {
		t.Fatal("the process runtime registered no kind")
	}
	spec, err := k.DecodeSpec([]byte(`{"command":"@self","args":["worker"],"env":{"B":"2","A":"1"},"dir":"/tmp"}`))
	if err != nil {
		t.Fatal(err)
	}
	s, err := runtime.SpecAs[process.Spec](spec)
	if err != nil || s.Command != process.SelfCommand || strings.Join(s.Args, " ") != "worker" ||
		strings.Join(s.Env.List(), ",") != "A=1,B=2" || s.Dir != "/tmp" {
		t.Errorf("decoded %+v, %v", s, err)
	}
	for in, want := range map[string]string{
		`{}`:                             "command: required",
		`{"command":"x","image":"y"}`:    "image: unknown field",
		`{"command":"x","env":{"":"y"}}`: "env: variable name",
	} {
		if err := decodeValid(k, in); !errors.Is(err, spear.ErrInvalidConfig) || !strings.Contains(err.Error(), want) {
			t.Errorf("DecodeSpec(%s) = %v, want an invalid-config error mentioning %q", in, err, want)
		}
	}
}

// TestSelfCommand runs SelfCommand, which is this test binary by default
// (os.Executable) and Options.Self when set.
func TestSelfCommand(t *testing.T) {
	e := newEnv(t)
	c := childSpec("echo")
	c.Command = process.SelfCommand
	echo(t, e.start(t, c), "self")

	f, err := channel.NewFactory(channel.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rt, err := process.New(process.Options{Factory: f, Self: "/nonexistent/spearlet"})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close(testCtx(t))
	_, err = c.start(testCtx(t), rt, newID())
	if !errors.Is(err, spear.ErrInvalidConfig) || !strings.Contains(err.Error(), "/nonexistent/spearlet") {
		t.Errorf("start with Self missing: %v, want an invalid-config error naming it", err)
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
