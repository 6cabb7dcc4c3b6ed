package runtime

import (
	"bytes"
	"cmp"
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
	// ValidateOptions, when set, checks the runtime's own section of the
	// agent's configuration (the mapping under the runtime's name, such
	// as process:), given as JSON, with the rules the runtime applies
	// when it is created from it: the agent reports those mistakes when
	// the configuration is loaded, with their lines. Each problem is a
	// *FieldError naming a field of the section.
	ValidateOptions func(section []byte) error
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
// Its errors are *FieldError values that name the field, however deep:
// an error from a field type's own UnmarshalJSON (such as Bytes', for
// "limits.memory") is placed too.
func DecodeJSON[S Spec](data []byte) (Spec, error) {
	s, err := decodeStrict[S](data)
	if err != nil {
		return nil, decodeError[S](data, err)
	}
	return s, nil
}

// decodeStrict decodes data into an S, refusing unknown fields.
func decodeStrict[S any](data []byte) (S, error) {
	var s S
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	err := dec.Decode(&s)
	return s, err
}

// decodeError turns err, the error of decoding data into an S, into
// *FieldError values: one for each member that fails alone (blame), or
// else one for the whole spec.
func decodeError[S Spec](data []byte, err error) error {
	if errs := blame[S](data, "", nil, nil); len(errs) > 0 {
		return errors.Join(errs...)
	}
	return fieldError[S]("", err)
}

// fieldError turns err, an error of decoding the value at path (the spec
// as a whole when ""), into a *FieldError on the field it concerns.
func fieldError[S Spec](path string, err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return BadField(te.Field, "%s is not a %s", te.Value, te.Type)
	}
	var fe *FieldError
	if errors.As(err, &fe) {
		return fe
	}
	// The standard library gives unknown fields no type of their own.
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		if field, uerr := strconv.Unquote(name); uerr == nil {
			var s S
			return BadField(cmp.Or(path, field), "unknown field: the %s runtime has no such setting", s.RuntimeType())
		}
	}
	// encoding/json passes on an UnmarshalJSON method's error (Bytes',
	// say) as it is, without where it was: blame found it.
	return BadField(path, "%s", strings.TrimPrefix(err.Error(), "json: "))
}

// blame returns an error for each member of the JSON object obj, at path
// in the spec and decoded between prefix and suffix (its parents' keys
// and braces), that alone fails to decode into an S: at the deepest
// member that does, such as "limits.memory" for a value that Bytes
// refuses, with the error that member alone gives. It returns none when
// obj is not an object or no member fails alone (they fail only
// together). encoding/json stops at its first error, and an UnmarshalJSON
// method's error does not say where it was; blame finds them all, and
// where.
func blame[S Spec](obj []byte, path string, prefix, suffix []byte) []error {
	dec := json.NewDecoder(bytes.NewReader(obj))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil
	}
	var errs []error
	for dec.More() {
		t, err := dec.Token()
		key, ok := t.(string)
		var value json.RawMessage
		if err != nil || !ok || dec.Decode(&value) != nil {
			return errs
		}
		k, _ := json.Marshal(key)
		pre := slices.Concat(prefix, []byte("{"), k, []byte(":"))
		suf := slices.Concat([]byte("}"), suffix)
		_, err = decodeStrict[S](slices.Concat(pre, value, suf))
		if err == nil {
			continue
		}
		at := joinField(path, key)
		if deeper := blame[S](value, at, pre, suf); len(deeper) > 0 {
			errs = append(errs, deeper...)
		} else {
			errs = append(errs, fieldError[S](at, err))
		}
	}
	return errs
}

// joinField returns the field path of key inside path, as FieldError
// spells it ("limits.memory").
func joinField(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
