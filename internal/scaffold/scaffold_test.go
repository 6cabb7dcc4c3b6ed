package scaffold_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/agent"
	"github.com/spear-go/spear/internal/checkout"
	"github.com/spear-go/spear/internal/scaffold"
	"github.com/spear-go/spear/runtime/process"
)

func TestLanguages(t *testing.T) {
	if got := scaffold.Languages(); !slices.Equal(got, []string{"go", "python", "typescript"}) {
		t.Fatalf("Languages() = %v", got)
	}
}

// Each language writes a function and a config entry the agent accepts,
// pointing at the function's directory and the checkout's SDK.
func TestWriteServesFromConfig(t *testing.T) {
	sdk := scaffold.FindSDK(".")
	if sdk == "" {
		t.Fatal("the test runs inside a checkout, but FindSDK found none")
	}
	for lang, want := range map[string][]string{
		"go":         {".gitignore", "README.md", "go.mod", "main.go", "spearlet.yaml"},
		"python":     {"README.md", "main.py", "spearlet.yaml"},
		"typescript": {".gitignore", "README.md", "package.json", "spearlet.yaml", "src/index.ts", "tsconfig.json"},
	} {
		t.Run(lang, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "fn dir") // a space, to check quoting
			written, err := scaffold.Write(scaffold.Options{Name: "hello-" + lang[:2], Lang: lang, Dir: dir, SDK: sdk})
			if err != nil {
				t.Fatal(err)
			}
			var rel []string
			for _, p := range written {
				r, _ := filepath.Rel(dir, p)
				rel = append(rel, filepath.ToSlash(r))
			}
			if !slices.Equal(rel, want) {
				t.Fatalf("wrote %v, want %v", rel, want)
			}
			cfg, err := agent.LoadConfig(filepath.Join(dir, "spearlet.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			fn := cfg.Functions[0]
			spec, ok := fn.Spec.(process.Spec)
			if fn.Name != "hello-"+lang[:2] || !ok || spec.Dir != dir || fn.Runtime != "process" {
				t.Fatalf("config entry %+v", fn)
			}
			if lang == "python" && spec.Env["PYTHONPATH"] != filepath.Join(sdk, "sdk", "python") {
				t.Errorf("PYTHONPATH = %q", spec.Env["PYTHONPATH"])
			}
			if lang == "go" {
				b, _ := os.ReadFile(filepath.Join(dir, "go.mod"))
				if !strings.Contains(string(b), "replace github.com/spear-go/spear => "+sdk+"\n") {
					t.Errorf("go.mod does not point at the checkout:\n%s", b)
				}
			}
			if lang == "typescript" {
				b, _ := os.ReadFile(filepath.Join(dir, "package.json"))
				if !strings.Contains(string(b), `"file:`+filepath.Join(sdk, "sdk", "typescript")+`"`) {
					t.Errorf("package.json does not link the checkout's SDK:\n%s", b)
				}
			}
			// A second time, the directory is taken.
			if _, err := scaffold.Write(scaffold.Options{Name: "again", Lang: lang, Dir: dir}); !errors.Is(err, scaffold.ErrExists) {
				t.Errorf("writing over a function: %v, want ErrExists", err)
			}
		})
	}
}

// Outside a checkout, the function depends on the published SDK.
func TestWriteWithoutCheckout(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "f")
	if _, err := scaffold.Write(scaffold.Options{Name: "f", Lang: "typescript", Dir: dir}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "package.json"))
	if !strings.Contains(string(b), `"@spear-go/sdk": "^0.1.0"`) {
		t.Errorf("package.json:\n%s", b)
	}
	// Outside a checkout, a program built in one uses its own.
	if got, want := scaffold.FindSDK(t.TempDir()), checkout.Root("."); got != want {
		t.Errorf("FindSDK outside a checkout = %q, want the checkout this test was built in, %q", got, want)
	}
	// A Go function needs a checkout or a published version.
	if _, err := scaffold.Write(scaffold.Options{Name: "g", Lang: "go", Dir: filepath.Join(t.TempDir(), "g")}); !errors.Is(err, scaffold.ErrNoSDK) {
		t.Errorf("Go without SDK or version: %v", err)
	}
	gdir := filepath.Join(t.TempDir(), "g")
	if _, err := scaffold.Write(scaffold.Options{Name: "g", Lang: "go", Dir: gdir, Version: "v1.2.3"}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(gdir, "go.mod")); !strings.Contains(string(b), "require github.com/spear-go/spear v1.2.3\n") || strings.Contains(string(b), "replace") {
		t.Errorf("go.mod of a published version:\n%s", b)
	}
}

func TestWriteRefusesBadInput(t *testing.T) {
	for _, o := range []scaffold.Options{
		{Name: "", Lang: "python"},
		{Name: "Upper", Lang: "python"},
		{Name: "-dash", Lang: "python"},
		{Name: strings.Repeat("a", agent.MaxFunctionName+1), Lang: "python"},
		{Name: "ok", Lang: "cobol"},
	} {
		o.Dir = filepath.Join(t.TempDir(), "x")
		if _, err := scaffold.Write(o); !errors.Is(err, spear.ErrInvalidConfig) {
			t.Errorf("Write(%q, %q) = %v, want ErrInvalidConfig", o.Name, o.Lang, err)
		}
		if _, err := os.Stat(o.Dir); err == nil {
			t.Errorf("Write(%q, %q) left %s behind", o.Name, o.Lang, o.Dir)
		}
	}
}

// The Python template is valid Python.
func TestPythonTemplateCompiles(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 is not installed")
	}
	dir := filepath.Join(t.TempDir(), "f")
	if _, err := scaffold.Write(scaffold.Options{Name: "f", Lang: "python", Dir: dir}); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("python3", "-m", "py_compile", filepath.Join(dir, "main.py")).CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
}
