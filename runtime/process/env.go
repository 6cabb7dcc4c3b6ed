package process

import (
	"fmt"
	"slices"
	"strings"

	"github.com/spear-go/spear/runtime"
)

// baseEnv are the agent's variables every child gets, when the agent has
// them: enough to find programs, speak the user's language and tell the
// time.
var baseEnv = []string{"PATH", "LANG", "TZ", "HOME"}

// defaultPath is a child's PATH when the agent has none.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// childEnv returns a child's environment, its SPEAR_* credentials not yet
// among it: PATH, LANG, TZ and HOME from the agent's environment (HOME is
// home instead, when set: the home of the user the instance runs as), the
// agent's variables that inherit names, and the function's own env, which
// wins. Nothing else of the agent's environment passes, so that its
// credentials and settings stay its own; the agent's SPEAR_* variables
// never do.
func childEnv(agent []string, inherit []string, home string, own runtime.Env) []string {
	vars := runtime.Env{"PATH": defaultPath}
	for _, kv := range agent {
		k, v, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "SPEAR_") {
			continue
		}
		if slices.Contains(baseEnv, k) || slices.ContainsFunc(inherit, func(pat string) bool { return envMatch(pat, k) }) {
			vars[k] = v
		}
	}
	if home != "" {
		vars["HOME"] = home
	}
	for k, v := range own {
		vars[k] = v
	}
	return vars.List()
}

// envMatch reports whether variable name matches an inherit_env entry:
// the name itself, or, for an entry ending in '*', any name with the
// entry's prefix.
func envMatch(pattern, name string) bool {
	if prefix, ok := strings.CutSuffix(pattern, "*"); ok {
		return strings.HasPrefix(name, prefix)
	}
	return pattern == name
}

// validInherit reports the inherit_env entries that cannot match a
// variable, each as a *runtime.FieldError.
func validInherit(inherit []string) []error {
	var errs []error
	for k, pat := range inherit {
		name := strings.TrimSuffix(pat, "*")
		field := fmt.Sprintf("inherit_env[%d]", k)
		switch {
		case pat == "" || pat == "*":
			errs = append(errs, runtime.BadField(field, "%q would pass the agent's whole environment; name the variables", pat))
		case strings.ContainsAny(name, "=*\x00"):
			errs = append(errs, runtime.BadField(field, "%q is not a variable name, or a prefix ending in '*'", pat))
		case strings.HasPrefix(pat, "SPEAR_"):
			errs = append(errs, runtime.BadField(field, "%q: the agent's SPEAR_* variables are never passed on", pat))
		}
	}
	return errs
}
