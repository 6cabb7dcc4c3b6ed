package kubernetes

import (
	"errors"
	"maps"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/runtime"
)

// Spec is what a kubernetes instance runs: a pod of one container. Its
// JSON fields are also the kubernetes part of a function's configuration
// (docs/agent.md).
type Spec struct {
	// Image is the container's image. Required.
	Image string `json:"image"`
	// Namespace is the pod's namespace (see the package comment for the
	// default).
	Namespace string `json:"namespace,omitempty"`
	// Labels are added to the pod and its Secret; the spear.dev/ prefix
	// is the runtime's.
	Labels map[string]string `json:"labels,omitempty"`
	// CPU and Memory are resource quantities such as "500m" and "128Mi",
	// each both the container's request and its limit.
	CPU    string `json:"cpu,omitempty"`
	Memory string `json:"memory,omitempty"`
	// Env is the container's environment besides the SPEAR_* variables,
	// which it may not set.
	Env runtime.Env `json:"env,omitempty"`
}

func init() {
	runtime.Register(runtime.Kind{Type: spear.Kubernetes, DecodeSpec: runtime.DecodeJSON[Spec]})
}

// RuntimeType returns spear.Kubernetes.
func (Spec) RuntimeType() spear.RuntimeType { return spear.Kubernetes }

// Validate reports what the API server would refuse, and what the
// runtime reserves, each as a *runtime.FieldError.
func (s Spec) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) { errs = append(errs, runtime.BadField(field, format, args...)) }
	if s.Image == "" {
		bad("image", "required for a kubernetes function")
	}
	if s.Namespace != "" {
		if e := validation.IsDNS1123Label(s.Namespace); len(e) > 0 {
			bad("namespace", "%q: %s", s.Namespace, strings.Join(e, "; "))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(s.Labels)) {
		v := s.Labels[k]
		if strings.HasPrefix(k, "spear.dev/") {
			bad("labels."+k, "the spear.dev/ prefix is reserved")
			continue
		}
		if e := append(validation.IsQualifiedName(k), validation.IsValidLabelValue(v)...); len(e) > 0 {
			bad("labels."+k, "%q=%q: %s", k, v, strings.Join(e, "; "))
		}
	}
	for field, q := range map[string]string{"cpu": s.CPU, "memory": s.Memory} {
		if q == "" {
			continue
		}
		if v, err := resource.ParseQuantity(q); err != nil || v.Sign() <= 0 {
			bad(field, "%q is not a positive quantity such as 250m or 64Mi", q)
		}
	}
	for _, k := range reservedEnv {
		if _, ok := s.Env[k]; ok {
			bad("env."+k, "set by the runtime")
		}
	}
	return errors.Join(append(errs, s.Env.Validate())...)
}
