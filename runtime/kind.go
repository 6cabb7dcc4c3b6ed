package runtime

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/spear-go/spear"
)

// Kind tells the agent about one runtime type: how to read its part of a
// function's configuration. A runtime's package registers its Kind with
// [Register] when it is initialised, so that a program knows a runtime
// by importing its package.
type Kind struct {
	// Type is the runtime type: a built-in one, or one from
	// spear.RegisterRuntimeType.
	Type spear.RuntimeType
	// DecodeSpec decodes the runtime's part of a function's
	// configuration: a JSON object holding the function's fields other
	// than the ones every function has (docs/agent.md), whose names a
	// spec must not reuse. It refuses unknown fields, with an error
	// matching spear.ErrInvalidConfig that names the field, and leaves
	// checking the values to Spec.Validate. DecodeJSON is the usual
	// implementation.
	DecodeSpec func(data []byte) (Spec, error)
	// MaxConcurrency is the default cap on in-flight invocations per
	// instance for functions of this type (0: the agent's default).
	MaxConcurrency int
}

var (
	kindsMu sync.RWMutex // guards kinds
	kinds   = map[spear.RuntimeType]Kind{}
)

// Register makes k known under k.Type. It is safe for concurrent use, and
// meant for init time. It panics when k.Type is invalid or has a Kind
// already, or when k.DecodeSpec is nil: each is a programming error.
func Register(k Kind) {
	if !k.Type.Valid() || k.DecodeSpec == nil {
		panic(fmt.Sprintf("runtime: Register: kind of %s needs a valid Type and a DecodeSpec", k.Type))
	}
	kindsMu.Lock()
	defer kindsMu.Unlock()
	if _, ok := kinds[k.Type]; ok {
		panic(fmt.Sprintf("runtime: Register: the %s runtime is registered already", k.Type))
	}
	kinds[k.Type] = k
}

// Lookup returns the Kind registered for t.
func Lookup(t spear.RuntimeType) (Kind, bool) {
	kindsMu.RLock()
	defer kindsMu.RUnlock()
	k, ok := kinds[t]
	return k, ok
}

// Kinds returns the registered kinds, ordered by type.
func Kinds() []Kind {
	kindsMu.RLock()
	defer kindsMu.RUnlock()
	out := make([]Kind, 0, len(kinds))
	for _, t := range slices.Sorted(maps.Keys(kinds)) {
		out = append(out, kinds[t])
	}
	return out
}

// DecodeJSON decodes data into a spec of type S, a struct type whose JSON
// field names are the configuration's, refusing unknown fields. It is the
// usual Kind.DecodeSpec:
//
//	runtime.Register(runtime.Kind{Type: spear.Process, DecodeSpec: runtime.DecodeJSON[Spec]})
//
// Its errors are *FieldError values when they concern one field.
func DecodeJSON[S Spec](data []byte) (Spec, error) {
	var s S
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return nil, decodeError(s.RuntimeType(), err)
	}
	return s, nil
}

// decodeError turns a JSON decoding error into a *FieldError when it
// concerns one field.
func decodeError(t spear.RuntimeType, err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return BadField(te.Field, "%s is not a %s", te.Value, te.Type)
	}
	// The standard library gives unknown fields no type of their own.
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		field, uerr := strconv.Unquote(name)
		if uerr == nil {
			return BadField(field, "unknown field: the %s runtime has no such setting", t)
		}
	}
	var fe *FieldError
	if errors.As(err, &fe) {
		return fe
	}
	return fmt.Errorf("%w: %w", spear.ErrInvalidConfig, err)
}
