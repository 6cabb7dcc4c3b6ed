package yamlpos

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// EncodeHook writes v, a value of the type it is registered for, as a
// node, in place of Tree's own rules.
type EncodeHook func(v reflect.Value, hooks map[reflect.Type]EncodeHook) (*yaml.Node, error)

// Tree returns v as a node tree with every field of every struct, zero or
// not (omitempty is ignored: the tree shows what a reader would get), in
// the struct's order, under its JSON name. Values whose type implements
// json.Marshaler, and scalars, are written as encoding/json writes them;
// a value of a type in hooks by its hook.
func Tree(v any, hooks map[reflect.Type]EncodeHook) (*yaml.Node, error) {
	return tree(reflect.ValueOf(v), hooks)
}

var jsonMarshaler = reflect.TypeFor[json.Marshaler]()

func tree(v reflect.Value, hooks map[reflect.Type]EncodeHook) (*yaml.Node, error) {
	if !v.IsValid() {
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null"}, nil
	}
	if hook, ok := hooks[v.Type()]; ok {
		return hook(v, hooks)
	}
	t := v.Type()
	if t.Implements(jsonMarshaler) && (t.Kind() != reflect.Pointer || !v.IsNil()) {
		return fromJSONValue(v.Interface())
	}
	switch t.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return tree(reflect.Value{}, hooks)
		}
		return tree(v.Elem(), hooks)
	case reflect.Struct:
		m := &yaml.Node{Kind: yaml.MappingNode}
		for _, f := range reflect.VisibleFields(t) {
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if !f.IsExported() || name == "-" || f.Anonymous && name == "" {
				continue
			}
			if name == "" {
				name = f.Name
			}
			c, err := tree(v.FieldByIndex(f.Index), hooks)
			if err != nil {
				return nil, err
			}
			m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: name}, c)
		}
		return m, nil
	case reflect.Map:
		if t.Key().Kind() != reflect.String {
			return fromJSONValue(v.Interface())
		}
		m := &yaml.Node{Kind: yaml.MappingNode}
		keys := v.MapKeys()
		slices.SortFunc(keys, func(a, b reflect.Value) int { return strings.Compare(a.String(), b.String()) })
		for _, k := range keys {
			c, err := tree(v.MapIndex(k), hooks)
			if err != nil {
				return nil, err
			}
			m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: k.String()}, c)
		}
		return m, nil
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return fromJSONValue(v.Interface())
		}
		s := &yaml.Node{Kind: yaml.SequenceNode}
		for i := range v.Len() {
			c, err := tree(v.Index(i), hooks)
			if err != nil {
				return nil, err
			}
			s.Content = append(s.Content, c)
		}
		return s, nil
	}
	return fromJSONValue(v.Interface())
}

// FromJSON returns the JSON document b as a node tree, keeping the order
// of its objects' keys.
func FromJSON(b []byte) (*yaml.Node, error) {
	var n yaml.Node
	if err := yaml.Unmarshal(b, &n); err != nil {
		return nil, err
	}
	if n.Kind != yaml.DocumentNode || len(n.Content) != 1 {
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null"}, nil
	}
	plain(n.Content[0])
	return n.Content[0], nil
}

func fromJSONValue(v any) (*yaml.Node, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return FromJSON(b)
}

// plain clears the styles a JSON source leaves (flow collections, quoted
// strings), so that the tree prints as block YAML; strings that would read
// as another type stay quoted.
func plain(n *yaml.Node) {
	n.Style = 0
	if n.Kind == yaml.ScalarNode && n.Tag == "!!str" {
		n.Tag = ""
		if n.ShortTag() != "!!str" { // "123", "true", "null": keep them strings
			n.Style = yaml.DoubleQuotedStyle
		}
	}
	for _, c := range n.Content {
		plain(c)
	}
}

// Redact replaces, anywhere in the tree, the scalar value of each mapping
// key that secret reports, with "<redacted>".
func Redact(n *yaml.Node, secret func(key string) bool) {
	if n == nil {
		return
	}
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if v.Kind == yaml.ScalarNode && v.Tag != "!!null" && v.Value != "" && secret(k.Value) {
				*v = yaml.Node{Kind: yaml.ScalarNode, Value: "<redacted>"}
			}
		}
	}
	for _, c := range n.Content {
		Redact(c, secret)
	}
}

// WriteYAML writes the tree as a YAML document.
func WriteYAML(w io.Writer, n *yaml.Node) error {
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(n); err != nil {
		return err
	}
	return enc.Close()
}

// WriteJSON writes the tree as indented JSON, keeping the order of its
// mappings' keys.
func WriteJSON(w io.Writer, n *yaml.Node) error {
	var b bytes.Buffer
	if err := writeJSON(&b, n, ""); err != nil {
		return err
	}
	b.WriteByte('\n')
	_, err := w.Write(b.Bytes())
	return err
}

func writeJSON(b *bytes.Buffer, n *yaml.Node, indent string) error {
	inner := indent + "  "
	switch n.Kind {
	case yaml.MappingNode:
		if len(n.Content) == 0 {
			b.WriteString("{}")
			return nil
		}
		b.WriteString("{\n")
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, _ := json.Marshal(n.Content[i].Value)
			fmt.Fprintf(b, "%s%s: ", inner, k)
			if err := writeJSON(b, n.Content[i+1], inner); err != nil {
				return err
			}
			if i+2 < len(n.Content) {
				b.WriteByte(',')
			}
			b.WriteByte('\n')
		}
		b.WriteString(indent + "}")
	case yaml.SequenceNode:
		if len(n.Content) == 0 {
			b.WriteString("[]")
			return nil
		}
		b.WriteString("[\n")
		for i, c := range n.Content {
			b.WriteString(inner)
			if err := writeJSON(b, c, inner); err != nil {
				return err
			}
			if i+1 < len(n.Content) {
				b.WriteByte(',')
			}
			b.WriteByte('\n')
		}
		b.WriteString(indent + "]")
	case yaml.ScalarNode:
		var v any
		if err := n.Decode(&v); err != nil {
			return err
		}
		if n.ShortTag() == "!!str" || n.ShortTag() == "!!timestamp" {
			v = n.Value
		}
		s, err := json.Marshal(v)
		if err != nil {
			return err
		}
		b.Write(s)
	case yaml.AliasNode:
		return writeJSON(b, n.Alias, indent)
	default:
		b.WriteString("null")
	}
	return nil
}
