// Package scaffold writes a new function from a template: its source, the
// files its language's tools need, and a spearlet config entry that serves
// it. `spearlet new function NAME --lang LANG` runs it.
//
// Each language is a directory of templates under templates/, embedded in
// the binary: adding a language is adding a directory. A template
// "x.tmpl" is written as "x", "dot-x.tmpl" as ".x"; every template is a
// text/template executed with Data.
package scaffold

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"text/template"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/agent"
	"github.com/spear-go/spear/internal/checkout"
)

//go:embed templates
var templates embed.FS

// Languages lists the languages there are templates for, sorted.
func Languages() []string {
	entries, _ := templates.ReadDir("templates")
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out
}

// Options say what to write.
type Options struct {
	// Name is the function's name, as in a spearlet config.
	Name string
	// Lang is one of Languages().
	Lang string
	// Dir is the directory to create for the function (default ./Name).
	// It must not exist, or be empty.
	Dir string
	// SDK is the root of a Spear checkout whose SDK the function uses;
	// empty means the published package.
	SDK string
	// Version is the published version of the Spear module that a Go
	// function requires when SDK is empty (see checkout.Version).
	Version string
}

// Data is what templates see.
type Data struct {
	Name    string // the function's name
	Dir     string // the function's directory, absolute
	SDK     string // the Spear checkout's root, absolute, or ""
	Version string // the published Spear version to require, without SDK
}

// ErrNoSDK is returned for a Go function when neither a checkout nor a
// published version of Spear is known to use.
var ErrNoSDK = errors.New("scaffold: no Spear checkout (--sdk) and no published version to use")

// ErrExists is returned when the target directory holds files already.
var ErrExists = errors.New("scaffold: the directory exists and is not empty")

// Write writes the function and returns the paths it wrote, sorted.
func Write(opts Options) ([]string, error) {
	if err := ValidateName(opts.Name); err != nil {
		return nil, err
	}
	if !slices.Contains(Languages(), opts.Lang) {
		return nil, fmt.Errorf("%w: no template for language %q (have %s)", spear.ErrInvalidConfig, opts.Lang, strings.Join(Languages(), ", "))
	}
	dir := opts.Dir
	if dir == "" {
		dir = opts.Name
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return nil, fmt.Errorf("%w: %s", ErrExists, dir)
	}
	data := Data{Name: opts.Name, Dir: dir, Version: opts.Version}
	if opts.SDK != "" {
		if data.SDK, err = filepath.Abs(opts.SDK); err != nil {
			return nil, err
		}
	}
	if opts.Lang == "go" && data.SDK == "" && data.Version == "" {
		return nil, ErrNoSDK
	}
	files, err := render(opts.Lang, data)
	if err != nil {
		return nil, err
	}
	var written []string
	for _, name := range slices.Sorted(maps.Keys(files)) {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return written, err
		}
		if err := os.WriteFile(p, files[name], 0o644); err != nil {
			return written, err
		}
		written = append(written, p)
	}
	return written, nil
}

// render executes lang's templates: file name to content.
func render(lang string, data Data) (map[string][]byte, error) {
	root := path.Join("templates", lang)
	funcs := template.FuncMap{"quote": quote}
	out := map[string][]byte{}
	err := fs.WalkDir(templates, root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		src, err := templates.ReadFile(p)
		if err != nil {
			return err
		}
		t, err := template.New(p).Funcs(funcs).Option("missingkey=error").Parse(string(src))
		if err != nil {
			return err
		}
		var b bytes.Buffer
		if err := t.Execute(&b, data); err != nil {
			return err
		}
		rel := strings.TrimSuffix(strings.TrimPrefix(p, root+"/"), ".tmpl")
		dirPart, file := path.Split(rel)
		if after, ok := strings.CutPrefix(file, "dot-"); ok {
			file = "." + after
		}
		out[dirPart+file] = b.Bytes()
		return nil
	})
	return out, err
}

// quote renders s as a JSON string, which is also a YAML one.
func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// ValidateName checks that name can name a function in a spearlet config.
func ValidateName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: a function needs a name", spear.ErrInvalidConfig)
	case len(name) > agent.MaxFunctionName:
		return fmt.Errorf("%w: function name %q is over %d bytes", spear.ErrInvalidConfig, name, agent.MaxFunctionName)
	}
	if err := (spear.InstanceID{Runtime: spear.Process, Name: name}).Validate(); err != nil {
		return fmt.Errorf("%w: function name %q: use lowercase letters, digits, and '-' or '.' inside", spear.ErrInvalidConfig, name)
	}
	return nil
}

// FindSDK returns the Spear checkout a function made in dir uses: the
// one that contains dir, else the one the running program was built from
// (a spearlet built in a clone works from anywhere), or "" when there is
// none.
func FindSDK(dir string) string {
	if root := checkout.Root(dir); root != "" {
		return root
	}
	return checkout.Built()
}
