package process

import (
	"errors"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/runtime"
)

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
	// Env is added to the agent's environment; the channel's
	// credentials, added last, win over it.
	Env runtime.Env `json:"env,omitempty"`
	// Dir is the working directory (default the agent's).
	Dir string `json:"dir,omitempty"`
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
