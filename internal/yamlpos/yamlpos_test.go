package yamlpos_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spear-go/spear/internal/yamlpos"
)

// seconds is a leaf type with its own JSON decoding, like the agent's
// durations.
type seconds time.Duration

func (s *seconds) UnmarshalJSON(b []byte) error {
	var str string
	if err := json.Unmarshal(b, &str); err != nil {
		return errors.New("want a duration such as 5s")
	}
	d, err := time.ParseDuration(str)
	if err != nil {
		return fmt.Errorf("%q is not a duration", str)
	}
	*s = seconds(d)
	return nil
}

type item struct {
	Name    string            `json:"name"`
	Command string            `json:"command,omitempty"`
	Args    []string          `json:"args,omitempty"`
	Env     map[string]string `json:"env,omitempty"`
	Limit   int               `json:"limit,omitempty"`
	Timeout seconds           `json:"timeout,omitempty"`
	Skipped string            `json:"-"`
}

type config struct {
	Server struct {
		Addr string `json:"addr"`
	} `json:"server"`
	Items []item `json:"items"`
	Ratio float64
	Ptr   *item `json:"ptr,omitempty"`
}

func decode(t *testing.T, src string) (config, error) {
	t.Helper()
	doc, err := yamlpos.Parse("c.yaml", []byte(src))
	if err != nil {
		return config{}, err
	}
	var c config
	return c, doc.Decode(&c, nil)
}

func TestDecode(t *testing.T) {
	c, err := decode(t, `
server: {addr: ":80"}
items:
  - name: a
    command: /bin/a
    args: [x, "y"]
    env: {K: v, N: 1, T: true}
    limit: 3
    timeout: 1.5s
  - name: b
Ratio: 0.5
ptr: {name: p}
`)
	if err != nil {
		t.Fatal(err)
	}
	want := config{Items: []item{
		{Name: "a", Command: "/bin/a", Args: []string{"x", "y"}, Env: map[string]string{"K": "v", "N": "1", "T": "true"}, Limit: 3, Timeout: seconds(1500 * time.Millisecond)},
		{Name: "b"},
	}, Ratio: 0.5, Ptr: &item{Name: "p"}}
	want.Server.Addr = ":80"
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got  %+v\nwant %+v", c, want)
	}
}

// Every problem is reported, in document order, each with its file,
// position and path.
func TestDecodeErrors(t *testing.T) {
	_, err := decode(t, `server:
  adr: x
items:
  - name: a
    comand: /bin/a
    limit: many
    timeout: soon
  - name: b
    args: 7
    Skipped: x
    env: [a]
`)
	want := []string{
		`c.yaml:2:3: server.adr: unknown field; did you mean "addr"?`,
		`c.yaml:5:5: items[0].comand: unknown field; did you mean "command"?`,
		`c.yaml:6:12: items[0].limit: want a whole number, got the string "many"`,
		`c.yaml:7:14: items[0].timeout: "soon" is not a duration`,
		`c.yaml:9:11: items[1].args: want a list, got the number 7`,
		`c.yaml:10:5: items[1].Skipped: unknown field`,
		`c.yaml:11:10: items[1].env: want a mapping, got a list`,
	}
	if err == nil || err.Error() != strings.Join(want, "\n") {
		t.Errorf("errors:\n%v\nwant:\n%s", err, strings.Join(want, "\n"))
	}
	var pe *yamlpos.Error
	if !errors.As(err, &pe) || pe.Line != 2 || pe.Path != "server.adr" {
		t.Errorf("first error %+v, want an *Error at line 2", pe)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tt := range []struct{ src, want string }{
		{"items: [\n", "c.yaml:1: YAML syntax: did not find expected node content"},
		{"a: 1\na: 2\n", "c.yaml:2:1: a: duplicate key (first set at line 1)"},
		{"? [x]\n: 1\n", "a key must be a plain value"},
		{"a: 1\n---\nb: 2\n", "a second document"},
		{"a:\n  <<: 5\n", "a merge key (<<) takes a mapping"},
		{"\tx: 1\n", "YAML syntax"},
	} {
		_, err := yamlpos.Parse("c.yaml", []byte(tt.src))
		var pe *yamlpos.Error
		if !errors.As(err, &pe) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(%q) = %v, want an *Error containing %q", tt.src, err, tt.want)
		}
	}
}

func TestEmptyDocument(t *testing.T) {
	for _, src := range []string{"", "# nothing\n", "null\n"} {
		if c, err := decode(t, src); err != nil || c.Items != nil {
			t.Errorf("%q: %+v, %v", src, c, err)
		}
	}
}

func TestAliasesAndMerges(t *testing.T) {
	c, err := decode(t, `
base: &base {command: /bin/x, limit: 2}
`+"items:\n  - {<<: *base, name: a}\n  - {<<: *base, name: b, limit: 5}\n")
	// "base" is no field of config: the error is reported, and the rest
	// still decoded.
	if err == nil || !strings.Contains(err.Error(), "c.yaml:2:1: base: unknown field") {
		t.Fatalf("err = %v", err)
	}
	if len(c.Items) != 2 || c.Items[0].Command != "/bin/x" || c.Items[0].Limit != 2 || c.Items[1].Limit != 5 || c.Items[1].Name != "b" {
		t.Errorf("items = %+v", c.Items)
	}
}

// A document whose aliases expand exponentially is refused, quickly.
func TestAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i < 12; i++ {
		fmt.Fprintf(&b, "a%d: &a%d [*a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d]\n", i, i, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1)
	}
	_, err := yamlpos.Parse("bomb.yaml", []byte(b.String()))
	if err == nil || !strings.Contains(err.Error(), "expands beyond") {
		t.Fatalf("err = %v", err)
	}
}

func TestHook(t *testing.T) {
	doc, err := yamlpos.Parse("", []byte("items:\n  - name: a\n    extra: 1\n    other: [2]\n"))
	if err != nil {
		t.Fatal(err)
	}
	var rest string
	hooks := map[reflect.Type]yamlpos.Hook{
		reflect.TypeFor[item](): func(d *yamlpos.Decoder, n yamlpos.Node, v reflect.Value) {
			fields, _ := d.Mapping(n, "an item")
			left := d.DecodeFields(fields, v)
			b, _ := d.FieldsJSON(left)
			rest = string(b)
			d.Fail(yamlpos.Key(n.Path, "other"), yamlpos.Pos{}, "not wanted")
		},
	}
	var c config
	err = doc.Decode(&c, hooks)
	if c.Items[0].Name != "a" || rest != `{"extra":1,"other":[2]}` {
		t.Errorf("items %+v, rest %s", c.Items, rest)
	}
	if err == nil || err.Error() != "line 4, column 12: items[0].other: not wanted" {
		t.Errorf("err = %v", err)
	}
}

func TestPaths(t *testing.T) {
	p := yamlpos.Key(yamlpos.Index(yamlpos.Key("", "functions"), 2), "env")
	if p != "functions[2].env" {
		t.Fatal(p)
	}
	q := yamlpos.Key(p, "A.B")
	if q != `functions[2].env["A.B"]` {
		t.Fatal(q)
	}
	for path, parent := range map[string]string{
		q:                    p,
		p:                    "functions[2]",
		"functions[2]":       "functions",
		"functions":          "",
		`a["x]y"][3]`:        `a["x]y"]`,
		`a["x]y"]`:           "a",
		"":                   "",
		yamlpos.Join(p, "X"): p,
	} {
		if got := yamlpos.Parent(path); got != parent {
			t.Errorf("Parent(%q) = %q, want %q", path, got, parent)
		}
	}
	doc, _ := yamlpos.Parse("", []byte("functions:\n  - name: a\n  - name: b\n    env: {A: x}\n"))
	if got := doc.Position("functions[1].env.A"); got != (yamlpos.Pos{Line: 4, Column: 14}) {
		t.Errorf("Position = %+v", got)
	}
	// A missing value is placed at its nearest ancestor.
	if got := doc.Position("functions[0].command"); got != (yamlpos.Pos{Line: 2, Column: 5}) {
		t.Errorf("Position of a missing field = %+v", got)
	}
	if got := doc.KeyPosition("functions[1].env"); got != (yamlpos.Pos{Line: 4, Column: 5}) {
		t.Errorf("KeyPosition = %+v", got)
	}
}

func TestClosest(t *testing.T) {
	names := []string{"command", "args", "env", "dir", "image", "max_instances", "min_instances"}
	for word, want := range map[string]string{
		"comand":         "command",
		"Command":        "command",
		"imgae":          "image",
		"max_instance":   "max_instances",
		"arg":            "args",
		"command":        "",
		"zzz":            "",
		"maxinstancesx2": "",
	} {
		if got := yamlpos.Closest(word, names); got != want {
			t.Errorf("Closest(%q) = %q, want %q", word, got, want)
		}
	}
}

// FuzzDecode checks that no document panics the reader, and that every
// problem comes back as *Error values.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		"items: [{name: a, limit: 1}]\n",
		"a: &a [1, *a]\n",
		"x: {<<: [*y]}\n",
		"items:\n  - <<: {name: a}\n    timeout: 1s\n",
		"? [x]\n: 1\n",
		"{\"items\": [{\"name\": 1e999}]}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		doc, err := yamlpos.Parse("f", b)
		if err == nil {
			var c config
			err = doc.Decode(&c, nil)
		}
		if err == nil {
			return
		}
		for _, e := range unjoin(err) {
			var pe *yamlpos.Error
			if !errors.As(e, &pe) {
				t.Fatalf("error %T %v is not an *Error", e, e)
			}
		}
	})
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// Aliases that make a value contain itself are refused.
func TestAliasCycle(t *testing.T) {
	for _, src := range []string{"&a [[1, *a], *a]\n", "a: &a {<<: *a}\n", "x: &x {y: *x}\n"} {
		_, err := yamlpos.Parse("c.yaml", []byte(src))
		if err == nil || !strings.Contains(err.Error(), "contains it") && !strings.Contains(err.Error(), "holds it") {
			t.Errorf("Parse(%q) = %v, want a cycle refused", src, err)
		}
	}
}

// Tree writes every field, zero ones included, in order; the YAML and
// JSON writers keep that order and the types of strings that look like
// other values.
func TestTreeAndWriters(t *testing.T) {
	type inner struct {
		Token string `json:"token,omitempty"`
		Port  string `json:"port"`
	}
	v := struct {
		Name    string            `json:"name"`
		Empty   string            `json:"empty,omitempty"`
		Timeout seconds           `json:"timeout"`
		List    []int             `json:"list"`
		Env     map[string]string `json:"env"`
		In      inner             `json:"in"`
		Hidden  string            `json:"-"`
	}{Name: "a", List: []int{1}, Env: map[string]string{"B": "true", "A_TOKEN": "s3cret"}, In: inner{Port: "80"}}
	n, err := yamlpos.Tree(v, nil)
	if err != nil {
		t.Fatal(err)
	}
	yamlpos.Redact(n, func(k string) bool { return strings.Contains(strings.ToLower(k), "token") })
	var y, j strings.Builder
	if err := yamlpos.WriteYAML(&y, n); err != nil {
		t.Fatal(err)
	}
	if err := yamlpos.WriteJSON(&j, n); err != nil {
		t.Fatal(err)
	}
	wantY := `name: a
empty: ""
timeout: 0
list:
  - 1
env:
  A_TOKEN: <redacted>
  B: "true"
in:
  token: ""
  port: "80"
`
	if y.String() != wantY {
		t.Errorf("YAML:\n%s\nwant:\n%s", y.String(), wantY)
	}
	var back map[string]any
	if err := json.Unmarshal([]byte(j.String()), &back); err != nil || back["env"].(map[string]any)["B"] != "true" || back["in"].(map[string]any)["port"] != "80" {
		t.Errorf("JSON %s: %v", j.String(), err)
	}
	if !strings.HasPrefix(j.String(), "{\n  \"name\": \"a\",\n  \"empty\": \"\",") {
		t.Errorf("JSON order:\n%s", j.String())
	}
}
