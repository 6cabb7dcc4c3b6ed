package process_test

import (
	"encoding/hex"
	"slices"
	"strings"
	"testing"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/channel"
	"github.com/spear-go/spear/runtime"
)

// environ asks the instance for the environment it started with.
func environ(t *testing.T, inst runtime.Instance) []string {
	t.Helper()
	out, err := channel.Execute(testCtx(t), inst.Channel(), channel.Invocation{Method: "environ"})
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimRight(string(out), "\x00"), "\x00")
}

// lookup returns the value of name in env, and whether it is there.
func lookup(env []string, name string) (string, bool) {
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, name+"="); ok {
			return v, true
		}
	}
	return "", false
}

// The child's environment is PATH, LANG, TZ, HOME, what inherit_env names,
// the function's env and its credentials: nothing else of the agent's, and
// never the secret unless the function asked for it there.
func TestChildEnvironment(t *testing.T) {
	t.Setenv("LANG", "C.UTF-8")
	t.Setenv("ISO_TEST_AGENT_ONLY", "agent's own")
	t.Setenv("ISO_TEST_PASS_A", "a")
	t.Setenv("ISO_TEST_PASS_B", "b")
	t.Setenv("ISO_TEST_NAMED", "named")
	t.Setenv("SPEAR_LOG_LEVEL", "debug") // the agent's SPEAR_* are its own
	e := newEnv(t)
	c := childSpec("echo", "ISO_TEST_OWN=own", "ISO_TEST_PASS_B=function's")
	c.InheritEnv = []string{"ISO_TEST_PASS_*", "ISO_TEST_NAMED"}
	inst := e.start(t, c)
	env := environ(t, inst)
	secret := hex.EncodeToString(inst.Channel().Credentials().Secret)

	for name, want := range map[string]string{
		"LANG":            "C.UTF-8",
		"ISO_TEST_PASS_A": "a",
		"ISO_TEST_PASS_B": "function's",
		"ISO_TEST_NAMED":  "named",
		"ISO_TEST_OWN":    "own",
		spear.EnvSecretFD: "3",
	} {
		if got, ok := lookup(env, name); !ok || got != want {
			t.Errorf("%s = %q (set: %v), want %q", name, got, ok, want)
		}
	}
	if _, ok := lookup(env, "PATH"); !ok {
		t.Error("no PATH")
	}
	for _, name := range []string{"ISO_TEST_AGENT_ONLY", "SPEAR_LOG_LEVEL", spear.EnvSecret} {
		if _, ok := lookup(env, name); ok {
			t.Errorf("%s reached the child", name)
		}
	}
	if slices.ContainsFunc(env, func(kv string) bool { return strings.Contains(kv, secret) }) {
		t.Error("the secret is in the child's environment")
	}

	// Opting in puts it there, and the descriptor is not used.
	c.Secret = channel.SecretViaEnv
	inst = e.start(t, c)
	env = environ(t, inst)
	if got, _ := lookup(env, spear.EnvSecret); got != hex.EncodeToString(inst.Channel().Credentials().Secret) {
		t.Errorf("with secret: env, SPEAR_SECRET = %q, want the instance's secret", got)
	}
	if _, ok := lookup(env, spear.EnvSecretFD); ok {
		t.Error("with secret: env, SPEAR_SECRET_FD is set too")
	}
}
