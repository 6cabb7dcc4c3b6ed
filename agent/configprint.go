package agent

import (
	"fmt"
	"io"
	"reflect"
	"regexp"

	"go.yaml.in/yaml/v3"

	"github.com/spear-go/spear/internal/yamlpos"
)

// Redacted is what Print writes in place of a secret.
const Redacted = "<redacted>"

// Print writes c as a configuration file holds it, with every field,
// zero or not, and the values of secret-looking keys (a token, password,
// secret, credential or key, not a file that holds one) replaced by
// Redacted, in format "yaml" or "json". serve --print-config writes the
// configuration in effect so: the file, the environment and the flags
// merged, the defaults filled in.
func (c Config) Print(w io.Writer, format string) error {
	n, err := yamlpos.Tree(c, printHooks)
	if err != nil {
		return err
	}
	yamlpos.Redact(n, isSecret)
	switch format {
	case "yaml", "":
		return yamlpos.WriteYAML(w, n)
	case "json":
		return yamlpos.WriteJSON(w, n)
	}
	return fmt.Errorf("unknown format %q: want yaml or json", format)
}

// secretWord matches the names that say a secret is in their value: a
// word of the name (between '_' or '-') such as TOKEN or PASSWORD.
var secretWord = regexp.MustCompile(`(?i)(?:^|[_-])(?:secret|token|password|passwd|pass|credentials?|key|apikey|auth|cookie|session)(?:$|[_-])`)

// notSecret matches the names whose values only say where a secret is,
// or how long to wait for one (auth_timeout).
var notSecret = regexp.MustCompile(`(?i)[_-](?:file|path|dir|timeout)$`)

// isSecret reports whether a key's value is to be hidden.
func isSecret(key string) bool { return secretWord.MatchString(key) && !notSecret.MatchString(key) }

var printHooks = map[reflect.Type]yamlpos.EncodeHook{
	reflect.TypeFor[FunctionConfig](): func(v reflect.Value, hooks map[reflect.Type]yamlpos.EncodeHook) (*yaml.Node, error) {
		f := v.Interface().(FunctionConfig)
		n, err := yamlpos.Tree(functionFields(f), hooks)
		if err != nil || f.Spec == nil {
			return n, err
		}
		spec, err := yamlpos.Tree(f.Spec, hooks)
		if err != nil {
			return nil, err
		}
		n.Content = append(n.Content, spec.Content...)
		return n, nil
	},
}
