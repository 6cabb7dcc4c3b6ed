package spear

import (
	"fmt"
	"strings"
)

// RuntimeType names the kind of runtime an instance runs in.
type RuntimeType uint8

// The runtime types. The zero value is not a valid runtime type.
const (
	Process    RuntimeType = iota + 1 // a child process of the agent
	Kubernetes                        // a Kubernetes pod
	Wasm                              // a WebAssembly module inside the agent
)

var runtimeNames = [...]string{Process: "process", Kubernetes: "kubernetes", Wasm: "wasm"}

// RuntimeTypes lists every runtime type, in declaration order.
func RuntimeTypes() []RuntimeType { return []RuntimeType{Process, Kubernetes, Wasm} }

// String returns the runtime type's name: "process", "kubernetes" or "wasm"
// (the seed's as_str). An invalid value prints as "runtime(N)".
func (t RuntimeType) String() string {
	if t.Valid() {
		return runtimeNames[t]
	}
	return fmt.Sprintf("runtime(%d)", uint8(t))
}

// Valid reports whether t is one of the declared runtime types.
func (t RuntimeType) Valid() bool { return t >= Process && t <= Wasm }

// ParseRuntimeType returns the runtime type named s. An unknown name gives
// an error matching [ErrUnsupportedRuntime].
func ParseRuntimeType(s string) (RuntimeType, error) {
	for _, t := range RuntimeTypes() {
		if s == runtimeNames[t] {
			return t, nil
		}
	}
	return 0, fmt.Errorf("%w: %q (want process, kubernetes or wasm)", ErrUnsupportedRuntime, s)
}

// MarshalText implements [encoding.TextMarshaler].
func (t RuntimeType) MarshalText() ([]byte, error) {
	if !t.Valid() {
		return nil, fmt.Errorf("%w: %d", ErrUnsupportedRuntime, uint8(t))
	}
	return []byte(t.String()), nil
}

// UnmarshalText implements [encoding.TextUnmarshaler].
func (t *RuntimeType) UnmarshalText(b []byte) error {
	v, err := ParseRuntimeType(string(b))
	if err != nil {
		return err
	}
	*t = v
	return nil
}

// MaxNameLen is the longest instance name or namespace accepted. It is the
// Kubernetes limit for a DNS label, so a name is always usable as a pod name.
const MaxNameLen = 63

// InstanceID names one runtime instance: the seed's RuntimeInstanceId. It is
// comparable and so usable as a map key. Every channel belongs to exactly one
// InstanceID.
type InstanceID struct {
	// Runtime is the runtime the instance runs in.
	Runtime RuntimeType
	// Namespace optionally scopes the name, for example a Kubernetes
	// namespace or a tenant. Empty means none.
	Namespace string
	// Name is the instance's name (the seed's instance_id), unique among the
	// instances of its runtime and namespace.
	Name string
}

// NewInstanceID returns a validated InstanceID without a namespace.
func NewInstanceID(rt RuntimeType, name string) (InstanceID, error) {
	id := InstanceID{Runtime: rt, Name: name}
	return id, id.Validate()
}

// String returns the full id: "namespace:runtime:name", or "runtime:name"
// when there is no namespace. [ParseInstanceID] reverses it.
func (id InstanceID) String() string {
	if id.Namespace == "" {
		return id.Runtime.String() + ":" + id.Name
	}
	return id.Namespace + ":" + id.Runtime.String() + ":" + id.Name
}

// IsZero reports whether id is the zero InstanceID.
func (id InstanceID) IsZero() bool { return id == InstanceID{} }

// Validate checks that the runtime is known and that the name and namespace
// are usable as a socket file name and a Kubernetes object name: 1 to 63
// characters of lowercase letters, digits, '-' and '.', starting and ending
// with a letter or digit. The error matches [ErrInvalidInstanceID].
func (id InstanceID) Validate() error {
	if !id.Runtime.Valid() {
		return fmt.Errorf("%w: runtime %s", ErrInvalidInstanceID, id.Runtime)
	}
	if err := validateName("name", id.Name); err != nil {
		return err
	}
	if id.Namespace != "" {
		return validateName("namespace", id.Namespace)
	}
	return nil
}

func validateName(what, s string) error {
	switch {
	case s == "":
		return fmt.Errorf("%w: empty %s", ErrInvalidInstanceID, what)
	case len(s) > MaxNameLen:
		return fmt.Errorf("%w: %s is %d bytes long, the limit is %d", ErrInvalidInstanceID, what, len(s), MaxNameLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
		if alnum || (c == '-' || c == '.') && i > 0 && i < len(s)-1 {
			continue
		}
		return fmt.Errorf("%w: %s %q has %q at byte %d (allowed: a-z, 0-9, and '-' or '.' inside)",
			ErrInvalidInstanceID, what, s, c, i)
	}
	return nil
}

// ParseInstanceID parses the form written by [InstanceID.String] and
// validates the result. Errors match [ErrInvalidInstanceID].
func ParseInstanceID(s string) (InstanceID, error) {
	parts := strings.Split(s, ":")
	var id InstanceID
	var rt string
	switch len(parts) {
	case 2:
		rt, id.Name = parts[0], parts[1]
	case 3:
		id.Namespace, rt, id.Name = parts[0], parts[1], parts[2]
		if id.Namespace == "" {
			return InstanceID{}, fmt.Errorf("%w: %q has an empty namespace", ErrInvalidInstanceID, s)
		}
	default:
		return InstanceID{}, fmt.Errorf("%w: %q is not [namespace:]runtime:name", ErrInvalidInstanceID, s)
	}
	t, err := ParseRuntimeType(rt)
	if err != nil {
		return InstanceID{}, fmt.Errorf("%w: %w", ErrInvalidInstanceID, err)
	}
	id.Runtime = t
	if err := id.Validate(); err != nil {
		return InstanceID{}, err
	}
	return id, nil
}
