package yamlpos

import (
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"
)

// Node is a value of a document, at its path.
type Node struct {
	// Path is the value's YAML path.
	Path string
	y    *yaml.Node // aliases resolved; nil when absent
}

// Field is one entry of a mapping.
type Field struct {
	// Key is the entry's key; KeyPos is where it is.
	Key    string
	KeyPos Pos
	// Value is the entry's value.
	Value Node
}

// Pos returns where the value is.
func (n Node) Pos() Pos { return pos(n.y) }

// IsNull reports whether the value is absent or null.
func (n Node) IsNull() bool {
	return n.y == nil || n.y.Kind == yaml.ScalarNode && n.y.ShortTag() == "!!null"
}

// Hook decodes n into v, a settable value of the type the hook is
// registered for, instead of the decoder's own rules. It reports problems
// with Decoder.Fail.
type Hook func(d *Decoder, n Node, v reflect.Value)

// Decoder decodes the values of one document. A Hook uses its methods.
type Decoder struct {
	doc    *Doc
	hooks  map[reflect.Type]Hook
	errs   []error
	budget int // values left to turn into JSON
}

// Decode decodes the document into v, a non-nil pointer, as json.Unmarshal
// would decode its JSON form, except that:
//
//   - a mapping key that names no field of its struct is an error, with
//     the closest field name as a suggestion;
//   - a value of a type registered in hooks is decoded by its hook;
//   - every problem is reported, each an *Error with its position and
//     path, in document order.
//
// A scalar is the text of a string field whatever its YAML type ("PORT:
// 8080" sets the string "8080"), where encoding/json would refuse a
// number. A leaf value (one that is not a struct, list or mapping of string keys,
// or whose type implements json.Unmarshaler or encoding.TextUnmarshaler)
// is decoded by encoding/json from its JSON form.
func (doc *Doc) Decode(v any, hooks map[reflect.Type]Hook) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("yamlpos: Decode needs a non-nil pointer, not %T", v)
	}
	d := &Decoder{doc: doc, hooks: hooks, budget: maxNodes}
	d.Decode(Node{y: doc.root}, rv.Elem())
	if len(d.errs) > 0 {
		return joinSorted(d.errs)
	}
	return nil
}

// Doc returns the document being decoded.
func (d *Decoder) Doc() *Doc { return d.doc }

// Fail records a problem at p (a zero p: the value at path).
func (d *Decoder) Fail(path string, p Pos, format string, args ...any) {
	if p == (Pos{}) {
		p = d.doc.Position(path)
	}
	d.errs = append(d.errs, &Error{File: d.doc.file, Pos: p, Path: path, Problem: fmt.Sprintf(format, args...)})
}

var (
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// Decode decodes n into v, which must be settable.
func (d *Decoder) Decode(n Node, v reflect.Value) {
	if hook, ok := d.hooks[v.Type()]; ok {
		hook(d, n, v)
		return
	}
	if n.IsNull() {
		return // as encoding/json: null leaves the value alone
	}
	t := v.Type()
	if reflect.PointerTo(t).Implements(jsonUnmarshaler) || reflect.PointerTo(t).Implements(textUnmarshaler) {
		d.leaf(n, v)
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(t.Elem()))
		}
		d.Decode(n, v.Elem())
	case reflect.Struct:
		fields, ok := d.Mapping(n, "a mapping of "+t.String()+" settings")
		if !ok {
			return
		}
		for _, f := range d.DecodeFields(fields, v) {
			d.Unknown(f, Names(t))
		}
	case reflect.Slice:
		if n.y.Kind != yaml.SequenceNode {
			if t.Elem().Kind() == reflect.Uint8 {
				d.leaf(n, v) // []byte: base64 text, as encoding/json
				return
			}
			d.Fail(n.Path, n.Pos(), "want a list, got %s", describe(n.y))
			return
		}
		s := reflect.MakeSlice(t, len(n.y.Content), len(n.y.Content))
		for i, c := range n.y.Content {
			d.Decode(Node{Path: Index(n.Path, i), y: resolve(c)}, s.Index(i))
		}
		v.Set(s)
	case reflect.String:
		// A plain value is its text, as people mean "PORT: 8080" in an
		// environment (encoding/json would refuse the number).
		if n.y.Kind == yaml.ScalarNode {
			v.SetString(n.y.Value)
			return
		}
		d.leaf(n, v)
	case reflect.Map:
		if t.Key().Kind() != reflect.String {
			d.leaf(n, v)
			return
		}
		fields, ok := d.Mapping(n, "a mapping")
		if !ok {
			return
		}
		if v.IsNil() {
			v.Set(reflect.MakeMapWithSize(t, len(fields)))
		}
		for _, f := range fields {
			e := reflect.New(t.Elem()).Elem()
			d.Decode(f.Value, e)
			v.SetMapIndex(reflect.ValueOf(f.Key).Convert(t.Key()), e)
		}
	default:
		d.leaf(n, v)
	}
}

// Mapping returns the entries of the mapping n, in order; when n is not a
// mapping it records a problem, saying it wants what, and returns false.
func (d *Decoder) Mapping(n Node, what string) ([]Field, bool) {
	if n.y == nil {
		return nil, true
	}
	if n.y.Kind != yaml.MappingNode {
		d.Fail(n.Path, n.Pos(), "want %s, got %s", what, describe(n.y))
		return nil, false
	}
	ents := d.doc.ents[n.y]
	out := make([]Field, len(ents))
	for i, e := range ents {
		out[i] = Field{Key: e.key, KeyPos: e.pos, Value: Node{Path: Key(n.Path, e.key), y: e.value}}
	}
	return out, true
}

// DecodeFields decodes each field into the field of the struct v whose JSON
// name is its key, and returns those that name no field.
func (d *Decoder) DecodeFields(fields []Field, v reflect.Value) (rest []Field) {
	index := fieldIndex(v.Type())
	for _, f := range fields {
		i, ok := index[f.Key]
		if !ok {
			rest = append(rest, f)
			continue
		}
		fv, err := v.FieldByIndexErr(i)
		if err != nil { // through a nil embedded pointer
			d.Fail(f.Value.Path, f.KeyPos, "cannot be set")
			continue
		}
		d.Decode(f.Value, fv)
	}
	return rest
}

// Unknown records that f names no field; known are the names it may have
// meant.
func (d *Decoder) Unknown(f Field, known []string) {
	msg := "unknown field"
	if s := Closest(f.Key, known); s != "" {
		msg += fmt.Sprintf("; did you mean %q?", s)
	}
	d.Fail(f.Value.Path, f.KeyPos, "%s", msg)
}

// leaf decodes n's JSON form into v with encoding/json.
func (d *Decoder) leaf(n Node, v reflect.Value) {
	b, err := d.JSON(n)
	if err != nil {
		return
	}
	if err := json.Unmarshal(b, v.Addr().Interface()); err != nil {
		d.Fail(n.Path, n.Pos(), "%s", d.jsonProblem(err, n))
	}
}

// jsonProblem says what a JSON decoding error means, in the document's
// terms.
func (d *Decoder) jsonProblem(err error, n Node) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("want %s, got %s", want(te.Type), describe(n.y))
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

// JSON returns n's value as JSON; it records a problem and returns an
// error when the value has no JSON form (an infinite number) or the
// document's aliases expand too far.
func (d *Decoder) JSON(n Node) ([]byte, error) {
	v, err := d.value(n.y, n.Path, 0)
	if err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

// FieldsJSON returns fields as one JSON object, as JSON does for a mapping.
func (d *Decoder) FieldsJSON(fields []Field) ([]byte, error) {
	m := make(map[string]any, len(fields))
	for _, f := range fields {
		v, err := d.value(f.Value.y, f.Value.Path, 1)
		if err != nil {
			return nil, err
		}
		m[f.Key] = v
	}
	return json.Marshal(m)
}

var errRecorded = errors.New("yamlpos: problem recorded")

// value converts n into what encoding/json marshals: nil, bool, int64,
// uint64, float64, string, []any, map[string]any.
func (d *Decoder) value(n *yaml.Node, path string, depth int) (any, error) {
	if n == nil {
		return nil, nil
	}
	if d.budget--; d.budget < 0 || depth > maxDepth {
		d.Fail(path, pos(n), "the value expands beyond %d values or %d levels", maxNodes, maxDepth)
		return nil, errRecorded
	}
	switch n.Kind {
	case yaml.SequenceNode:
		out := make([]any, len(n.Content))
		for i, c := range n.Content {
			v, err := d.value(resolve(c), Index(path, i), depth+1)
			if err != nil {
				return nil, err
			}
			out[i] = v
		}
		return out, nil
	case yaml.MappingNode:
		ents := d.doc.ents[n]
		out := make(map[string]any, len(ents))
		for _, e := range ents {
			v, err := d.value(e.value, Key(path, e.key), depth+1)
			if err != nil {
				return nil, err
			}
			out[e.key] = v
		}
		return out, nil
	}
	return d.scalar(n, path)
}

func (d *Decoder) scalar(n *yaml.Node, path string) (any, error) {
	switch n.ShortTag() {
	case "!!null":
		return nil, nil
	case "!!bool":
		var b bool
		if n.Decode(&b) == nil {
			return b, nil
		}
	case "!!int":
		var i int64
		if n.Decode(&i) == nil {
			return i, nil
		}
		var u uint64
		if n.Decode(&u) == nil {
			return u, nil
		}
	case "!!float":
		var f float64
		if n.Decode(&f) == nil {
			if math.IsInf(f, 0) || math.IsNaN(f) {
				d.Fail(path, pos(n), "%s is not a finite number", n.Value)
				return nil, errRecorded
			}
			return f, nil
		}
	}
	return n.Value, nil // strings, timestamps, binary, custom tags: the text
}

// describe names a value in an error: `the string "soon"`, `the number
// 7`, `a list`, ...
func describe(n *yaml.Node) string {
	switch {
	case n == nil:
		return "nothing"
	case n.Kind == yaml.MappingNode:
		return "a mapping"
	case n.Kind == yaml.SequenceNode:
		return "a list"
	}
	switch n.ShortTag() {
	case "!!null":
		return "null"
	case "!!bool":
		return n.Value
	case "!!int", "!!float":
		return "the number " + n.Value
	}
	return fmt.Sprintf("the string %q", n.Value)
}

// want names what a Go type takes, in an error.
func want(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "a mapping"
	}
	return "a " + t.String()
}

var fieldIndexes sync.Map // reflect.Type → map[string][]int

// fieldIndex maps the JSON names of struct type t's fields to their
// indexes, as encoding/json names them: the json tag's name, else the Go
// name; "-" and unexported fields are left out, embedded structs' fields
// promoted.
func fieldIndex(t reflect.Type) map[string][]int {
	if m, ok := fieldIndexes.Load(t); ok {
		return m.(map[string][]int)
	}
	m := map[string][]int{}
	for _, f := range reflect.VisibleFields(t) {
		tag := f.Tag.Get("json")
		name, _, _ := strings.Cut(tag, ",")
		switch {
		case !f.IsExported() && !f.Anonymous, name == "-" && tag == "-":
			continue
		case f.Anonymous && name == "" && indirect(f.Type).Kind() == reflect.Struct:
			continue // its fields are promoted
		case !f.IsExported():
			continue
		}
		if name == "" {
			name = f.Name
		}
		if _, dup := m[name]; !dup || len(f.Index) < len(m[name]) {
			m[name] = f.Index
		}
	}
	fieldIndexes.Store(t, m)
	return m
}

func indirect(t reflect.Type) reflect.Type {
	if t.Kind() == reflect.Pointer {
		return t.Elem()
	}
	return t
}

// Names returns the JSON names of struct type t's fields, as Decode reads
// them.
func Names(t reflect.Type) []string {
	return slices.Sorted(maps.Keys(fieldIndex(t)))
}
