package process

import (
	"errors"
	"path/filepath"
	"strings"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/runtime"
)

// SelfCommand as a Spec's Command runs the agent's own executable
// (Options.Self): the default configuration runs "spearlet worker" so.
const SelfCommand = "@self"

// Spec is what a process instance runs. Its JSON fields are also the
// process part of a function's configuration (docs/agent.md).
type Spec struct {
	// Command is the executable: a path, a name looked up in PATH, or
	// SelfCommand. Required.
	Command string `json:"command"`
	// Args are the command's arguments.
	Args []string `json:"args,omitempty"`
	// Env is added to the agent's environment; the channel's
	// credentials, added last, win over it.
	Env runtime.Env `json:"env,omitempty"`
	// Dir is the working directory (default the agent's; in a
	// configuration file, the file's directory).
	Dir string `json:"dir,omitempty"`
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
	runtime.Register(runtime.Kind{Type: spear.Process, DecodeSpec: runtime.DecodeJSON[Spec]})
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
	return errors.Join(append(errs, s.Env.Validate())...)
}
