package process

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/channel"
	"github.com/spear-go/spear/runtime"
)

// reservedEnv are the variables the runtime sets; a Spec's Env may not.
var reservedEnv = []string{spear.EnvInstanceID, spear.EnvChannel, spear.EnvAddress, spear.EnvSecretFD, spear.EnvSecretFile, spear.EnvSecret}

// SelfCommand as a Spec's Command runs the agent's own executable
// (Options.Self).
const SelfCommand = "@self"

// WorkerCommand as a Spec's Command runs the command line Options.Worker
// gives, ahead of the Spec's Args: spearlet's embedded default runs its
// small worker binary so.
const WorkerCommand = "@worker"

// Spec is what a process instance runs. Its JSON fields are also the
// process part of a function's configuration (docs/agent.md).
type Spec struct {
	// Command is the executable: a path, a name looked up in PATH,
	// SelfCommand or WorkerCommand. Required.
	Command string `json:"command"`
	// Args are the command's arguments.
	Args []string `json:"args,omitempty"`
	// Env is the function's own environment. The child gets it, over
	// PATH, LANG, TZ and HOME from the agent's environment and the
	// variables InheritEnv names; the channel's SPEAR_* credentials come
	// last.
	Env runtime.Env `json:"env,omitempty"`
	// InheritEnv names more of the agent's variables to pass on: a name,
	// or a prefix ending in '*' ("OTEL_*"). Nothing else of the agent's
	// environment reaches the child.
	InheritEnv []string `json:"inherit_env,omitempty"`
	// Dir is the working directory (default the agent's; in a
	// configuration file, the file's directory).
	Dir string `json:"dir,omitempty"`
	// Secret is how the instance receives its secret: through an
	// inherited descriptor (channel.SecretViaFD, the default), or in
	// SPEAR_SECRET (channel.SecretViaEnv), for a program that can only
	// read its environment; docs/security.md says what that risks.
	Secret channel.SecretVia `json:"secret,omitempty"`
	// Limits bound the instance's memory, CPU and processes.
	Limits Limits `json:"limits,omitzero"`
	// User is who the instance runs as: the agent's own user (empty), a
	// user name or number, optionally with ":" and a group name or number
	// ("nobody", "1001:1001"), or UserRange, a user id of its own from the
	// runtime's range. Another user than the agent's needs the agent to
	// run as root; the unix socket then belongs to that user, and the
	// peer check admits only it.
	User string `json:"user,omitempty"`
}

// Resolve makes a relative Command that names a file ("./fn", "bin/fn";
// not a bare name, which is looked up in PATH) and a relative Dir
// absolute against dir, the configuration file's directory, which is
// also the default Dir. With dir "" it changes nothing.
func (s Spec) Resolve(dir string) (runtime.Spec, error) {
	if dir == "" {
		return s, nil
	}
	if s.Command != SelfCommand && strings.ContainsRune(s.Command, filepath.Separator) && !filepath.IsAbs(s.Command) {
		s.Command = filepath.Join(dir, s.Command)
	}
	switch {
	case s.Dir == "":
		s.Dir = dir
	case !filepath.IsAbs(s.Dir):
		s.Dir = filepath.Join(dir, s.Dir)
	}
	return s, nil
}

func init() {
	runtime.Register(runtime.Kind{Type: spear.Process, DecodeSpec: runtime.DecodeJSON[Spec], ValidateOptions: validateOptions})
}

// RuntimeType returns spear.Process.
func (Spec) RuntimeType() spear.RuntimeType { return spear.Process }

// Validate reports a missing command and environment entries no process
// can hold, each as a *runtime.FieldError.
func (s Spec) Validate() error {
	var errs []error
	if s.Command == "" {
		errs = append(errs, runtime.BadField("command", "required for a process function"))
	}
	if s.Secret.Validate() != nil {
		errs = append(errs, runtime.BadField("secret", "%q is not a way to hand over the secret: want %q (the default) or %q", string(s.Secret), channel.SecretViaFD, channel.SecretViaEnv))
	}
	errs = append(errs, validInherit(s.InheritEnv)...)
	errs = append(errs, s.Limits.validate()...)
	errs = append(errs, validUser(s.User))
	for k := range s.Env {
		if slices.Contains(reservedEnv, k) {
			errs = append(errs, runtime.BadField("env."+k, "set by the runtime, not the function"))
		}
	}
	return errors.Join(append(errs, s.Env.Validate())...)
}
