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

func TestParseCPUs(t *testing.T) {
	for in, want := range map[string]process.CPUs{"0.5": 500, "2": 2000, "250m": 250, "1.25": 1250, "0": 0} {
		if got, err := process.ParseCPUs(in); err != nil || got != want {
			t.Errorf("ParseCPUs(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "m", "1.5m", "x", "NaN", "1e30"} {
		if got, err := process.ParseCPUs(in); err == nil {
			t.Errorf("ParseCPUs(%q) = %v, want an error", in, got)
		}
	}
}

func TestDecodeSpec(t *testing.T) {
	spec := runtimetest.CheckKind(t, spear.Process, `{"command":"@self","args":["worker"],"env":{"B":"2","A":"1"},"dir":"/tmp",`+
		`"inherit_env":["OTEL_*","TERM"],"secret":"env","user":"nobody:nogroup","limits":{"memory":"256Mi","cpu":"500m","pids":64}}`, map[string]string{
		`{}`:                             "command: required",
		`{"command":"x","image":"y"}`:    "image: unknown field",
		`{"command":"x","env":{"":"y"}}`: "env: variable name",
		`{"command":"x","env":{"SPEAR_SECRET":"y"}}`: "env.SPEAR_SECRET: set by the runtime",
		`{"command":"x","inherit_env":["*"]}`:        "inherit_env[0]: \"*\" would pass the agent's whole environment",
		`{"command":"x","inherit_env":["A","B=C"]}`:  "inherit_env[1]: \"B=C\" is not a variable name",
		`{"command":"x","inherit_env":["SPEAR_*"]}`:  "inherit_env[0]: \"SPEAR_*\": the agent's SPEAR_* variables are never passed on",
		`{"command":"x","secret":"file"}`:            `secret: "file" is not a way to hand over the secret`,
		`{"command":"x","user":"a b"}`:               `user: "a b" is not a user`,
		`{"command":"x","user":"a:"}`:                `user: "a:" is not a user`,
		`{"command":"x","limits":{"cpu":"lots"}}`:    `limits.cpu: "lots" is not a number of CPUs`,
		`{"command":"x","limits":{"pids":-1}}`:       "limits.pids: negative",
		`{"command":"x","limits":{"disk":1}}`:        "limits.disk: unknown field",
	})
	s, err := runtime.SpecAs[process.Spec](spec)
	if err != nil || s.Command != process.SelfCommand || strings.Join(s.Args, " ") != "worker" ||
		strings.Join(s.Env.List(), ",") != "A=1,B=2" || s.Dir != "/tmp" ||
		strings.Join(s.InheritEnv, ",") != "OTEL_*,TERM" || s.Secret != channel.SecretViaEnv || s.User != "nobody:nogroup" ||
		s.Limits != (process.Limits{Memory: 256 << 20, CPU: 500, PIDs: 64}) {
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

// TestWorkerCommand runs WorkerCommand as the command line Options.Worker
// gives, its first arguments ahead of the Spec's; without one it is an
// invalid configuration.
func TestWorkerCommand(t *testing.T) {
	f, err := channel.NewFactory(channel.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c := childSpec("echo")
	worker := append([]string{c.Command}, c.Args...) // this test binary, as a child
	c.Command, c.Args = process.WorkerCommand, nil
	rt, err := process.New(process.Options{Factory: f, Worker: worker})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close(testCtx(t))
	inst, err := c.start(testCtx(t), rt, newID())
	if err != nil {
		t.Fatal(err)
	}
	echo(t, inst, "worker")

	none, err := process.New(process.Options{Factory: f})
	if err != nil {
		t.Fatal(err)
	}
	defer none.Close(testCtx(t))
	if _, err := c.start(testCtx(t), none, newID()); !errors.Is(err, spear.ErrConfig) || !strings.Contains(err.Error(), process.WorkerCommand) {
		t.Errorf("start without a worker: %v, want a configuration error naming %s", err, process.WorkerCommand)
	}
}

// The process section of an agent's configuration is checked by the
// Kind, at load, with the rules New applies: each problem names its
// setting.
func TestValidateOptions(t *testing.T) {
	kind, ok := runtime.Lookup(spear.Process)
	if !ok || kind.ValidateOptions == nil {
		t.Fatal("the process Kind checks no options")
	}
	for in, want := range map[string][]string{
		`{}`: nil,
		`{"cgroups":"required","user_range":"200000-200999"}`: nil,
		`{"cgroups":"sometimes"}`:                             {"cgroups"},
		`{"user_range":"200000"}`:                             {"user_range"},
		`{"user_range":"0-10"}`:                               {"user_range"},
		`{"user_range":"20-10","cgroups":"on"}`:               {"user_range", "cgroups"},
	} {
		got := runtimetest.Fields(t, kind.ValidateOptions([]byte(in)))
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("%s: problems on %q, want %q", in, got, want)
		}
	}
	// New refuses the same, by the same rule.
	f, err := channel.NewFactory(channel.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, o := range []process.Options{{Cgroups: "sometimes"}, {UserRange: process.UIDRange{First: 0, Last: 10}}} {
		o.Factory = f
		if _, err := process.New(o); !errors.Is(err, spear.ErrInvalidConfig) {
			t.Errorf("New(%+v): %v, want an error matching spear.ErrInvalidConfig", o, err)
		}
	}
}
