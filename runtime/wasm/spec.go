package wasm

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/runtime"
)

// Spec is what a wasm instance runs. Its JSON fields are also the wasm
// part of a function's configuration (docs/agent.md).
type Spec struct {
	// Module is the module's .wasm file, or "@name" for the module that
	// Options.Modules holds under name. Required unless Code is set.
	Module string `json:"wasm,omitempty"`
	// Code is the module itself, for callers that hold its bytes; it wins
	// over Module. A configuration cannot set it.
	Code []byte `json:"-"`
	// Args follow the function's name in the guest's WASI arguments.
	Args []string `json:"args,omitempty"`
	// Env is the guest's WASI environment; the channel's credentials win
	// over it.
	Env runtime.Env `json:"env,omitempty"`
	// Memory caps the instance's linear memory (0:
	// Options.DefaultMemoryLimit).
	Memory runtime.Bytes `json:"memory,omitempty"`
}

// Resolve makes a relative Module file absolute against dir, the
// configuration file's directory, and reports a module file that does
// not exist: a configuration that names one fails when it is loaded, not
// at the first start.
func (s Spec) Resolve(dir string) (runtime.Spec, error) {
	if s.Module == "" || strings.HasPrefix(s.Module, "@") || len(s.Code) > 0 {
		return s, nil
	}
	if dir != "" && !filepath.IsAbs(s.Module) {
		s.Module = filepath.Join(dir, s.Module)
	}
	st, err := os.Stat(s.Module)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return s, runtime.BadField("wasm", "%s: no such file", s.Module)
	case err != nil:
		return s, runtime.BadField("wasm", "%v", err)
	case !st.Mode().IsRegular():
		return s, runtime.BadField("wasm", "%s is not a file", s.Module)
	}
	return s, nil
}

func init() {
	// A guest serves one request at a time, so one in flight per instance
	// is the useful default.
	runtime.Register(runtime.Kind{Type: spear.Wasm, DecodeSpec: runtime.DecodeJSON[Spec], MaxConcurrency: 1})
}

// RuntimeType returns spear.Wasm.
func (Spec) RuntimeType() spear.RuntimeType { return spear.Wasm }

// Validate reports a missing module and environment entries no guest can
// hold, each as a *runtime.FieldError.
func (s Spec) Validate() error {
	var errs []error
	if s.Module == "" && len(s.Code) == 0 {
		errs = append(errs, runtime.BadField("wasm", `required: the wasm module file, or "@name" for a module built into the agent`))
	}
	return errors.Join(append(errs, s.Env.Validate())...)
}
