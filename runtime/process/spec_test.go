package process_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/channel"
	"github.com/spear-go/spear/runtime"
	"github.com/spear-go/spear/runtime/process"
	"github.com/spear-go/spear/runtime/runtimetest"
)

func TestDecodeSpec(t *testing.T) {
	spec := runtimetest.CheckKind(t, spear.Process, `{"command":"@self","args":["worker"],"env":{"B":"2","A":"1"},"dir":"/tmp",`+
		`"inherit_env":["OTEL_*","TERM"],"secret":"env"}`, map[string]string{
		`{}`:                             "command: required",
		`{"command":"x","image":"y"}`:    "image: unknown field",
		`{"command":"x","env":{"":"y"}}`: "env: variable name",
		`{"command":"x","env":{"SPEAR_SECRET":"y"}}`: "env.SPEAR_SECRET: set by the runtime",
		`{"command":"x","inherit_env":["*"]}`:        "inherit_env[0]: \"*\" would pass the agent's whole environment",
		`{"command":"x","inherit_env":["A","B=C"]}`:  "inherit_env[1]: \"B=C\" is not a variable name",
		`{"command":"x","inherit_env":["SPEAR_*"]}`:  "inherit_env[0]: \"SPEAR_*\": the agent's SPEAR_* variables are never passed on",
		`{"command":"x","secret":"file"}`:            `secret: "file" is not a way to hand over the secret`,
	})
	s, err := runtime.SpecAs[process.Spec](spec)
	if err != nil || s.Command != process.SelfCommand || strings.Join(s.Args, " ") != "worker" ||
		strings.Join(s.Env.List(), ",") != "A=1,B=2" || s.Dir != "/tmp" ||
		strings.Join(s.InheritEnv, ",") != "OTEL_*,TERM" || s.Secret != channel.SecretViaEnv {
		t.Errorf("decoded %+v, %v", s, err)
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
