package runtime

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/channel"
)

// Settings are the settings of an instance that every runtime reads,
// whatever it runs; what it runs is the runtime's own [Spec]. The agent
// fills them from the common part of a function's configuration.
type Settings struct {
	// Function names the function the instance serves.
	Function string
	// Channel overrides the channel configuration (type, timeouts); nil
	// leaves them to the factory's strategy and defaults.
	Channel *channel.Config
	// StartTimeout bounds launch to authenticated connection (0: the
	// runtime's default).
	StartTimeout time.Duration
	// StopGrace is how long Stop waits after asking nicely before forcing
	// (0: the runtime's default).
	StopGrace time.Duration
}

// WithDefaults returns s with a zero StartTimeout and StopGrace replaced
// by the runtime's defaults. A negative one gives an error matching
// spear.ErrInvalidConfig.
func (s Settings) WithDefaults(startTimeout, stopGrace time.Duration) (Settings, error) {
	if s.StartTimeout < 0 || s.StopGrace < 0 {
		return s, fmt.Errorf("%w: negative start timeout or stop grace", spear.ErrInvalidConfig)
	}
	if s.StartTimeout == 0 {
		s.StartTimeout = startTimeout
	}
	if s.StopGrace == 0 {
		s.StopGrace = stopGrace
	}
	return s, nil
}

// Spec says what an instance of one runtime type runs: a process.Spec, a
// wasm.Spec, a kubernetes.Spec, or the spec of a registered runtime. A
// spec is a plain value with JSON field names, which are also its names in
// a function's configuration; a runtime's [Kind] decodes it from there.
type Spec interface {
	// RuntimeType returns the runtime type the spec is for.
	RuntimeType() spear.RuntimeType
	// Validate reports every problem of the spec, each a *FieldError
	// naming the field as the configuration spells it.
	Validate() error
}

// Resolver is implemented by a Spec that names files on the agent's
// machine. The agent calls Resolve when it loads a configuration.
type Resolver interface {
	// Resolve returns the spec with its relative paths made absolute
	// against dir, the directory of the configuration file that declares
	// it ("" leaves them relative to the agent's working directory), and
	// reports the files it needs that are missing, each a *FieldError.
	Resolve(dir string) (Spec, error)
}

// SpecAs returns spec as the runtime's own spec type S (a *S is accepted
// too), once it is valid. A spec of another type, or an invalid one,
// gives an error matching spear.ErrInvalidConfig. Accept, with which a
// runtime's Start begins, calls it.
func SpecAs[S Spec](spec Spec) (S, error) {
	s, ok := spec.(S)
	if p, isPtr := any(spec).(*S); isPtr && p != nil {
		s, ok = *p, true
	}
	if !ok {
		return s, fmt.Errorf("%w: the %s runtime runs a %T, not a %T", spear.ErrInvalidConfig, s.RuntimeType(), s, spec)
	}
	return s, s.Validate()
}

// Accept checks what every runtime's Start checks before it does anything:
// that id is valid and of spec type S's runtime type (errors match
// spear.ErrInvalidInstanceID or spear.ErrUnsupportedRuntime), that spec is
// an S and valid, and that set has no negative durations (both
// spear.ErrInvalidConfig). It returns the spec as an S, and set with its
// zero durations replaced by startTimeout and stopGrace:
//
//	spec, set, err := runtime.Accept[Spec](id, set, rspec, DefaultStartTimeout, DefaultStopGrace)
func Accept[S Spec](id spear.InstanceID, set Settings, spec Spec, startTimeout, stopGrace time.Duration) (S, Settings, error) {
	var s S
	if err := id.Validate(); err != nil {
		return s, set, err
	}
	if t := s.RuntimeType(); id.Runtime != t {
		return s, set, fmt.Errorf("%w: the %s runtime cannot run %s instances", spear.ErrUnsupportedRuntime, t, id.Runtime)
	}
	s, err := SpecAs[S](spec)
	if err != nil {
		return s, set, err
	}
	set, err = set.WithDefaults(startTimeout, stopGrace)
	return s, set, err
}

// FieldError is a problem with one field of a spec. Field is the field's
// name in a function's configuration, such as "command", "env.PATH" or
// "limits.memory"; empty for the spec as a whole. It matches
// spear.ErrInvalidConfig and spear.ErrConfig.
type FieldError struct {
	Field   string
	Problem string
}

// BadField returns a *FieldError for field, its problem formatted as
// fmt.Sprintf does.
func BadField(field, format string, args ...any) error {
	return &FieldError{Field: field, Problem: fmt.Sprintf(format, args...)}
}

func (e *FieldError) Error() string {
	if e.Field == "" {
		return e.Problem
	}
	return e.Field + ": " + e.Problem
}

// Is makes the error match spear.ErrInvalidConfig and spear.ErrConfig.
func (e *FieldError) Is(target error) bool {
	return target == spear.ErrInvalidConfig || target == spear.ErrConfig
}

// Env is the environment an instance gets besides what its runtime sets,
// by variable name. In a configuration it is a mapping; a number or a
// boolean value is taken as its text ("PORT: 8080").
type Env map[string]string

// UnmarshalJSON reads a JSON object whose values are strings, numbers or
// booleans.
func (e *Env) UnmarshalJSON(b []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	if raw == nil {
		*e = nil
		return nil
	}
	out := make(Env, len(raw))
	for k, v := range raw {
		var s string
		if err := json.Unmarshal(v, &s); err == nil {
			out[k] = s
			continue
		}
		var scalar any
		if err := json.Unmarshal(v, &scalar); err != nil {
			return err
		}
		switch scalar.(type) {
		case float64, bool:
			out[k] = strings.TrimSpace(string(v))
		default:
			return BadField("env."+k, "want a string, got %s", v)
		}
	}
	*e = out
	return nil
}

// Validate reports the entries that no environment can hold: an empty
// name, a name with '=' or NUL, a value with NUL. Each problem is a
// *FieldError on field "env.NAME".
func (e Env) Validate() error {
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(e)) {
		switch {
		case k == "" || strings.ContainsAny(k, "=\x00"):
			errs = append(errs, BadField("env", "variable name %q is not valid", k))
		case strings.ContainsRune(e[k], 0):
			errs = append(errs, BadField("env."+k, "the value holds a NUL byte"))
		}
	}
	return errors.Join(errs...)
}

// List returns the entries as KEY=VALUE strings, sorted by name.
func (e Env) List() []string {
	out := make([]string, 0, len(e))
	for _, k := range slices.Sorted(maps.Keys(e)) {
		out = append(out, k+"="+e[k])
	}
	return out
}

// EnvOf returns the KEY=VALUE entries of list as an Env; an entry without
// '=' sets its name to the empty string, and a later entry wins.
func EnvOf(list []string) Env {
	e := make(Env, len(list))
	for _, kv := range list {
		k, v, _ := strings.Cut(kv, "=")
		e[k] = v
	}
	return e
}
