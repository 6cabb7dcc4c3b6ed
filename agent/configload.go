package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/internal/yamlpos"
	"github.com/spear-go/spear/runtime"
)

// ConfigError is one problem of a configuration: where it is and what is
// wrong. It matches spear.ErrInvalidConfig and spear.ErrConfig. Its text
// reads
//
//	spearlet.yaml:7:5: functions[2].comand: unknown field; did you mean "command"?
type ConfigError struct {
	// File is the configuration file; empty for one given as bytes.
	File string
	// Line and Column locate the problem, counted from 1; 0 when unknown
	// (Config.Validate alone knows no positions).
	Line, Column int
	// Path is the field's YAML path, such as "functions[2].command";
	// empty for the document as a whole.
	Path string
	// Problem says what is wrong.
	Problem string
}

func (e *ConfigError) Error() string {
	return (&yamlpos.Error{File: e.File, Pos: yamlpos.Pos{Line: e.Line, Column: e.Column}, Path: e.Path, Problem: e.Problem}).Error()
}

// Is makes the error match spear.ErrInvalidConfig and spear.ErrConfig.
func (e *ConfigError) Is(target error) bool {
	return target == spear.ErrInvalidConfig || target == spear.ErrConfig
}

// LoadConfig reads the YAML configuration at path and validates it, as
// ParseConfig does. Its relative paths are resolved against the file's
// directory: the agent's (ResolvePaths) and its functions' (a process's
// command and dir, a wasm module), and that directory is where process
// instances run when they name no dir. Errors match spear.ErrConfig; those about the content are
// *ConfigError values with the file, line and column, and match
// spear.ErrInvalidConfig.
func LoadConfig(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("%w: %w", spear.ErrConfig, err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return Config{}, fmt.Errorf("%w: %w", spear.ErrConfig, err)
	}
	return parseConfig(path, filepath.Dir(abs), b)
}

// ParseConfig parses a YAML (or JSON) configuration and validates it.
// Unknown fields are errors. A function's runtime must be registered
// (runtime.Register: its package imported) to decode its fields. Relative
// paths stay relative to the working directory. Every problem is
// reported, each a *ConfigError with its line, column and YAML path; the
// error matches spear.ErrInvalidConfig.
func ParseConfig(b []byte) (Config, error) { return parseConfig("", "", b) }

// parseConfig decodes b, names file in errors, and resolves relative
// paths against dir ("" leaves them relative).
func parseConfig(file, dir string, b []byte) (Config, error) {
	doc, err := yamlpos.Parse(file, b)
	if err != nil {
		return Config{}, configErrors(err)
	}
	var cfg Config
	if err := doc.Decode(&cfg, configHooks); err != nil {
		// Report with them the validation's problems of the functions
		// that decoded, which are not echoes of these.
		err = configErrors(err)
		var p, rt problems
		for i, f := range cfg.Functions {
			if at := yamlpos.Index("functions", i); !within(err, at) {
				f.validate(&p, at)
			}
		}
		cfg.validateRuntimes(&rt)
		for _, e := range rt.errs {
			if ce, ok := errors.AsType[*ConfigError](e); ok && !within(err, ce.Path) {
				p.errs = append(p.errs, e)
			}
		}
		return Config{}, placed(doc, errors.Join(err, p.err()))
	}
	if dir != "" {
		cfg = cfg.ResolvePaths(dir)
	}
	var p problems
	for i, f := range cfg.Functions {
		if r, ok := f.Spec.(runtime.Resolver); ok {
			spec, err := r.Resolve(dir)
			if err != nil {
				p.addSpec(yamlpos.Index("functions", i), err)
				continue
			}
			cfg.Functions[i].Spec = spec
		}
	}
	if err := errors.Join(p.err(), cfg.Validate()); err != nil {
		return Config{}, placed(doc, err)
	}
	return cfg, nil
}

// ResolvePaths returns c with its relative path-valued settings, the
// fields tagged spear:"path" (state_dir, api.socket, api.token_file, the
// TLS files, channels.socket_dir, kubernetes.kubeconfig,
// wasm.cache_dir), joined to dir. Empty values (the defaults), absolute
// paths and "none" where it turns a setting off stay as they are. The
// functions' paths are their specs' (runtime.Resolver). LoadConfig
// resolves with the file's directory; serve then resolves what the
// environment and flags set with the working directory.
func (c Config) ResolvePaths(dir string) Config {
	resolvePaths(reflect.ValueOf(&c).Elem(), dir)
	return c
}

// resolvePaths joins the relative values of the fields of the struct v
// tagged spear:"path", and of the structs in it, to dir.
func resolvePaths(v reflect.Value, dir string) {
	for i := range v.NumField() {
		f, fv := v.Type().Field(i), v.Field(i)
		kind, opt, _ := strings.Cut(f.Tag.Get("spear"), ",")
		switch {
		case f.Type.Kind() == reflect.Struct:
			resolvePaths(fv, dir)
		case kind != "path" || f.Type.Kind() != reflect.String:
		case fv.String() == "" || filepath.IsAbs(fv.String()) || opt == "none" && fv.String() == addrNone:
		default:
			fv.SetString(filepath.Join(dir, fv.String()))
		}
	}
}

// within reports whether one of the *ConfigError values in err is about
// the value at path or inside it.
func within(err error, path string) bool {
	for _, e := range flatten(err) {
		if ce, ok := errors.AsType[*ConfigError](e); ok && (ce.Path == path || strings.HasPrefix(ce.Path, path+".") || strings.HasPrefix(ce.Path, path+"[")) {
			return true
		}
	}
	return false
}

// configErrors turns the *yamlpos.Error values in err into *ConfigError
// values.
func configErrors(err error) error {
	var out []error
	for _, e := range flatten(err) {
		if pe, ok := errors.AsType[*yamlpos.Error](e); ok {
			out = append(out, &ConfigError{File: pe.File, Line: pe.Line, Column: pe.Column, Path: pe.Path, Problem: pe.Problem})
		} else {
			out = append(out, fmt.Errorf("%w: %w", spear.ErrInvalidConfig, e))
		}
	}
	return errors.Join(out...)
}

// placed adds the file and the position in doc to the *ConfigError values
// in err, and orders them as the document does.
func placed(doc *yamlpos.Doc, err error) error {
	var out []error
	for _, e := range flatten(err) {
		if ce, ok := errors.AsType[*ConfigError](e); ok && ce.Line == 0 {
			c := *ce
			pos := doc.Position(c.Path)
			c.File, c.Line, c.Column = doc.File(), pos.Line, pos.Column
			e = &c
		}
		out = append(out, e)
	}
	slices.SortStableFunc(out, func(a, b error) int {
		ca, _ := errors.AsType[*ConfigError](a)
		cb, _ := errors.AsType[*ConfigError](b)
		if ca == nil || cb == nil {
			return 0
		}
		if ca.Line != cb.Line {
			return ca.Line - cb.Line
		}
		return ca.Column - cb.Column
	})
	return errors.Join(out...)
}

// configHooks decode the types that yamlpos's rules do not.
var configHooks = map[reflect.Type]yamlpos.Hook{
	reflect.TypeFor[FunctionConfig](): decodeFunction,
}

// decodeFunction decodes a function's mapping: the fields every function
// has into FunctionConfig, the others by its runtime's Kind, from their
// JSON form, into Spec. The runtime's errors name a field, which is
// mapped back to its position. A function whose runtime is unknown gets
// no Spec; Validate reports the runtime.
func decodeFunction(d *yamlpos.Decoder, n yamlpos.Node, v reflect.Value) {
	f := v.Addr().Interface().(*FunctionConfig)
	fields, ok := d.Mapping(n, "a function: a mapping with its name, runtime and settings")
	if !ok {
		return
	}
	rest := d.DecodeFields(fields, reflect.ValueOf((*functionFields)(f)).Elem())
	t, err := spear.ParseRuntimeType(f.Runtime)
	if err != nil {
		return
	}
	kind, ok := runtime.Lookup(t)
	if !ok {
		return
	}
	data, err := d.FieldsJSON(rest)
	if err != nil {
		return
	}
	spec, err := kind.DecodeSpec(data)
	if err == nil {
		f.Spec = spec
		return
	}
	for _, e := range flatten(err) {
		fe, ok := errors.AsType[*runtime.FieldError](e)
		if !ok {
			d.Fail(n.Path, yamlpos.Pos{}, "%s", strings.TrimPrefix(e.Error(), spear.ErrInvalidConfig.Error()+": "))
			continue
		}
		path := yamlpos.Join(n.Path, fe.Field)
		if i := slices.IndexFunc(rest, func(r yamlpos.Field) bool { return r.Key == fe.Field }); i >= 0 && !slices.Contains(specFields(kind), fe.Field) {
			d.Fail(path, rest[i].KeyPos, "%s", unknownField(kind, fe.Field))
			continue
		}
		d.Fail(path, yamlpos.Pos{}, "%s", fe.Problem)
	}
}

// unknownField says that field is no setting of kind's functions: with
// the setting it most likely misspells, or the runtimes that have it.
func unknownField(kind runtime.Kind, field string) string {
	names := slices.Concat(yamlpos.Names(reflect.TypeFor[functionFields]()), specFields(kind))
	if s := yamlpos.Closest(field, names); s != "" {
		return fmt.Sprintf("unknown field; did you mean %q?", s)
	}
	var others []string
	for _, k := range runtime.Kinds() {
		if k.Type != kind.Type && slices.Contains(specFields(k), field) {
			others = append(others, k.Type.String())
		}
	}
	if len(others) > 0 {
		return fmt.Sprintf("unknown field: the %s runtime has no such setting (%s functions have it)", kind.Type, strings.Join(others, " and "))
	}
	return fmt.Sprintf("unknown field: the %s runtime has no such setting", kind.Type)
}

var specFieldCache sync.Map // spear.RuntimeType → []string

// specFields returns the JSON names of the fields of kind's spec type,
// found by decoding an empty spec; none when that fails or the spec is
// not a struct.
func specFields(kind runtime.Kind) []string {
	if v, ok := specFieldCache.Load(kind.Type); ok {
		return v.([]string)
	}
	var names []string
	if spec, err := kind.DecodeSpec([]byte("{}")); err == nil && spec != nil {
		t := reflect.TypeOf(spec)
		if t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if t.Kind() == reflect.Struct {
			names = yamlpos.Names(t)
		}
	}
	specFieldCache.Store(kind.Type, names)
	return names
}
