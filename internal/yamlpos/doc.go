// Package yamlpos reads YAML configuration into Go values the way
// encoding/json reads JSON (field names from json tags, json.Unmarshaler
// for leaf types), strictly, and keeps where every value came from, so that
// each error says the file, line, column and YAML path it is about, with a
// suggestion for a misspelt field:
//
//	spearlet.yaml:7:5: functions[2].comand: unknown field; did you mean "command"?
//
// The configuration's types stay plain json-tagged structs: a field added
// to one is read with no code here. A type that reads itself differently
// registers a Hook (agent.FunctionConfig hands the fields of its runtime
// to that runtime's JSON decoder, and maps the errors back with
// Doc.Position).
//
// It is built on go.yaml.in/yaml/v3, whose node tree keeps positions.
// Aliases and merge keys ("<<") are followed; a document whose aliases
// expand beyond a fixed budget is refused.
package yamlpos

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Limits that keep a hostile document from taking the reader's memory or
// stack: nodes visited (aliases expand) and nesting.
const (
	maxNodes = 1 << 17
	maxDepth = 100
)

// Pos is a position in a document, line and column counted from 1. The
// zero Pos is unknown.
type Pos struct{ Line, Column int }

// Error is one problem in a document.
type Error struct {
	// File names the document; empty when it has no file.
	File string
	// Pos is where the problem is (zero: unknown).
	Pos
	// Path is the YAML path of the value ("functions[2].command"); empty
	// for the document as a whole.
	Path string
	// Problem says what is wrong.
	Problem string
}

// Error formats the error as "file:line:col: path: problem", leaving out
// what is unknown.
func (e *Error) Error() string {
	var b strings.Builder
	switch {
	case e.File != "" && e.Line > 0 && e.Column > 0:
		fmt.Fprintf(&b, "%s:%d:%d: ", e.File, e.Line, e.Column)
	case e.File != "" && e.Line > 0:
		fmt.Fprintf(&b, "%s:%d: ", e.File, e.Line)
	case e.File != "":
		b.WriteString(e.File + ": ")
	case e.Line > 0 && e.Column > 0:
		fmt.Fprintf(&b, "line %d, column %d: ", e.Line, e.Column)
	case e.Line > 0:
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Path != "" {
		b.WriteString(e.Path + ": ")
	}
	b.WriteString(e.Problem)
	return b.String()
}

// Doc is a parsed YAML document and the position of each of its values.
type Doc struct {
	file string
	root *yaml.Node             // the top value, aliases unresolved; nil when empty
	vals map[string]Pos         // value positions by path
	keys map[string]Pos         // key positions by path, for mapping entries
	ents map[*yaml.Node][]entry // the entries of each mapping, merges applied
}

// entry is one key of a mapping.
type entry struct {
	key   string
	pos   Pos        // the key's
	value *yaml.Node // aliases resolved
}

// Parse parses one YAML document (JSON is YAML too). file names it in
// errors. The problems of its structure (syntax, a duplicate key, a key
// that is not a scalar, a bad merge, aliases that expand too far) are
// returned together, each an *Error.
func Parse(file string, b []byte) (*Doc, error) {
	d := &Doc{file: file, vals: map[string]Pos{}, keys: map[string]Pos{}, ents: map[*yaml.Node][]entry{}}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var top yaml.Node
	switch err := dec.Decode(&top); {
	case errors.Is(err, io.EOF):
		return d, nil // empty: every value is zero
	case err != nil:
		return nil, d.syntaxError(err)
	}
	var next yaml.Node
	if err := dec.Decode(&next); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, d.syntaxError(err)
		}
		return nil, &Error{File: file, Pos: pos(&next), Problem: "a second document: the file must hold one"}
	}
	if top.Kind == yaml.DocumentNode && len(top.Content) == 1 {
		d.root = top.Content[0]
	}
	w := walker{d: d, budget: maxNodes, open: map[*yaml.Node]bool{}}
	w.walk(d.root, "", 0)
	if len(w.errs) > 0 {
		return nil, joinSorted(w.errs)
	}
	return d, nil
}

// yamlLine finds the line in the go-yaml's messages.
var yamlLine = regexp.MustCompile(`^yaml: (?:line (\d+): )?(.*)$`)

func (d *Doc) syntaxError(err error) error {
	e := &Error{File: d.file, Problem: err.Error()}
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		e.Line, _ = strconv.Atoi(m[1])
		e.Problem = "YAML syntax: " + m[2]
	}
	return e
}

// Position returns the position of the value at path, or of its nearest
// ancestor in the document when the value is not there (a required field
// that is missing is reported at its mapping).
func (d *Doc) Position(path string) Pos {
	for {
		if p, ok := d.vals[path]; ok {
			return p
		}
		if path == "" {
			return Pos{}
		}
		path = Parent(path)
	}
}

// KeyPosition returns the position of the key of the mapping entry at
// path, or of the value when path is not a mapping entry.
func (d *Doc) KeyPosition(path string) Pos {
	if p, ok := d.keys[path]; ok {
		return p
	}
	return d.Position(path)
}

// Errorf returns an *Error at the value at path (see Position).
func (d *Doc) Errorf(path, format string, args ...any) *Error {
	return &Error{File: d.file, Pos: d.Position(path), Path: path, Problem: fmt.Sprintf(format, args...)}
}

// File returns the name Parse was given.
func (d *Doc) File() string { return d.file }

// walker indexes a document and checks its structure.
type walker struct {
	d      *Doc
	budget int
	errs   []error
	open   map[*yaml.Node]bool // the values being walked: an alias to one is a cycle
}

func (w *walker) fail(p Pos, path, format string, args ...any) {
	w.errs = append(w.errs, &Error{File: w.d.file, Pos: p, Path: path, Problem: fmt.Sprintf(format, args...)})
}

// walk records n's position at path and walks its children.
func (w *walker) walk(n *yaml.Node, path string, depth int) {
	n = resolve(n)
	if n == nil {
		return
	}
	if w.budget--; w.budget < 0 {
		if w.budget == -1 {
			w.fail(pos(n), path, "the document expands beyond %d values (through aliases?)", maxNodes)
		}
		return
	}
	if depth > maxDepth {
		w.fail(pos(n), path, "nested deeper than %d levels", maxDepth)
		return
	}
	if w.open[n] {
		w.fail(pos(n), path, "an alias refers to a value that contains it")
		w.budget = -2 // stop: the rest of the cycle says nothing new
		return
	}
	w.open[n] = true
	defer delete(w.open, n)
	if _, seen := w.d.vals[path]; !seen {
		w.d.vals[path] = pos(n)
	}
	switch n.Kind {
	case yaml.SequenceNode:
		for i, c := range n.Content {
			w.walk(c, Index(path, i), depth+1)
		}
	case yaml.MappingNode:
		if _, done := w.d.ents[n]; done {
			return // an alias of a mapping already walked: its entries are known
		}
		ents := w.entries(n, path, depth)
		w.d.ents[n] = ents
		for _, e := range ents {
			p := Key(path, e.key)
			if _, seen := w.d.keys[p]; !seen {
				w.d.keys[p] = e.pos
			}
			w.walk(e.value, p, depth+1)
		}
	}
}

// entries lists a mapping's keys in order, then those its merge keys bring
// that it does not set itself.
func (w *walker) entries(n *yaml.Node, path string, depth int) []entry {
	var own, merged []entry
	first := map[string]Pos{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), resolve(n.Content[i+1])
		switch {
		case k == nil || k.Kind != yaml.ScalarNode:
			w.fail(pos(n.Content[i]), path, "a key must be a plain value, not a mapping or a list")
		case k.ShortTag() == "!!merge":
			merged = append(merged, w.merge(v, path, depth)...)
		default:
			if p, dup := first[k.Value]; dup {
				w.fail(pos(k), Key(path, k.Value), "duplicate key (first set at line %d)", p.Line)
				continue
			}
			first[k.Value] = pos(k)
			own = append(own, entry{key: k.Value, pos: pos(k), value: v})
		}
	}
	for _, e := range merged {
		if _, set := first[e.key]; !set {
			first[e.key] = e.pos
			own = append(own, e)
		}
	}
	return own
}

// merge returns the entries a merge key's value brings: those of a
// mapping, or of each mapping in a list, the first one winning.
func (w *walker) merge(v *yaml.Node, path string, depth int) []entry {
	if depth > maxDepth {
		return nil
	}
	var maps []*yaml.Node
	switch {
	case v != nil && v.Kind == yaml.MappingNode:
		maps = []*yaml.Node{v}
	case v != nil && v.Kind == yaml.SequenceNode:
		for _, c := range v.Content {
			maps = append(maps, resolve(c))
		}
	default:
		maps = []*yaml.Node{v}
	}
	var out []entry
	for _, m := range maps {
		if m == nil || m.Kind != yaml.MappingNode {
			w.fail(pos(v), path, "a merge key (<<) takes a mapping or a list of mappings")
			return nil
		}
		if w.open[m] {
			w.fail(pos(v), path, "a merge key (<<) brings in the mapping that holds it")
			return nil
		}
		if w.budget -= len(m.Content); w.budget < 0 {
			return nil // walk reports it
		}
		out = append(out, w.entries(m, path, depth+1)...)
	}
	return out
}

// resolve follows aliases.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < maxDepth; i++ {
		n = n.Alias
	}
	if n != nil && n.Kind == yaml.AliasNode {
		return nil
	}
	return n
}

func pos(n *yaml.Node) Pos {
	if n == nil {
		return Pos{}
	}
	return Pos{Line: n.Line, Column: n.Column}
}

// joinSorted joins errs in the order of their positions.
func joinSorted(errs []error) error {
	slices.SortStableFunc(errs, func(a, b error) int {
		var ea, eb *Error
		if !errors.As(a, &ea) || !errors.As(b, &eb) {
			return 0
		}
		return cmp.Or(cmp.Compare(ea.Line, eb.Line), cmp.Compare(ea.Column, eb.Column))
	})
	return errors.Join(errs...)
}
