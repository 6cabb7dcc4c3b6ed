package spear

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// RuntimeType names the kind of runtime an instance runs in. The three
// below are built in; a runtime package adds its own with
// [RegisterRuntimeType].
type RuntimeType uint8

// The built-in runtime types. The zero value is not a valid runtime type.
const (
	Process    RuntimeType = iota + 1 // a child process of the agent
	Kubernetes                        // a Kubernetes pod
	Wasm                              // a WebAssembly module inside the agent
)

// runtimeNames holds the name of every runtime type, indexed by its value;
// index 0 is the invalid zero value. Registration replaces the slice, so
// that readers need no lock.
var (
	runtimeNames   atomic.Pointer[[]string]
	registerTypeMu sync.Mutex // serialises RegisterRuntimeType
)

func init() {
	runtimeNames.Store(&[]string{"", "process", "kubernetes", "wasm"})
}

// RegisterRuntimeType adds a runtime type called name and returns it; from
// then on it is valid, and [ParseRuntimeType] and [ParseInstanceID] know
// its name. A runtime package calls it once, when it is initialised:
//
//	var Firecracker = spear.RegisterRuntimeType("firecracker")
//
// It is safe for concurrent use. It panics when name is taken, is not a
// valid instance name (lowercase letters, digits, and '-' or '.' inside),
// or when 255 types exist: each is a programming error.
func RegisterRuntimeType(name string) RuntimeType {
	if err := validateName("runtime type", name); err != nil {
		panic("spear: RegisterRuntimeType: " + err.Error())
	}
	registerTypeMu.Lock()
	defer registerTypeMu.Unlock()
	names := *runtimeNames.Load()
	switch {
	case slices.Contains(names, name):
		panic(fmt.Sprintf("spear: RegisterRuntimeType: runtime type %q is already registered", name))
	case len(names) > math.MaxUint8:
		panic("spear: RegisterRuntimeType: too many runtime types")
	}
	names = append(slices.Clip(names), name)
	runtimeNames.Store(&names)
	return RuntimeType(len(names) - 1)
}

// RuntimeTypes lists every runtime type: the built-in ones, then the
// registered ones in the order of registration.
func RuntimeTypes() []RuntimeType {
	n := len(*runtimeNames.Load())
	out := make([]RuntimeType, 0, n-1)
	for t := 1; t < n; t++ {
		out = append(out, RuntimeType(t))
	}
	return out
}

// String returns the runtime type's name: "process", "kubernetes", "wasm"
// (the seed's as_str), or a registered name. An invalid value prints as
// "runtime(N)".
func (t RuntimeType) String() string {
	if names := *runtimeNames.Load(); t > 0 && int(t) < len(names) {
		return names[t]
	}
	return fmt.Sprintf("runtime(%d)", uint8(t))
}

// Valid reports whether t is a built-in or registered runtime type.
func (t RuntimeType) Valid() bool { return t > 0 && int(t) < len(*runtimeNames.Load()) }

// ParseRuntimeType returns the runtime type named s. An unknown name gives
// an error matching [ErrUnsupportedRuntime] that lists the known ones.
func ParseRuntimeType(s string) (RuntimeType, error) {
	names := *runtimeNames.Load()
	if i := slices.Index(names, s); i > 0 {
		return RuntimeType(i), nil
	}
	return 0, fmt.Errorf("%w: %q (want %s)", ErrUnsupportedRuntime, s, orList(names[1:]))
}

// orList joins names as "a, b or c".
func orList(names []string) string {
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
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
