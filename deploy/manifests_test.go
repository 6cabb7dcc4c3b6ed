package deploy

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"

	"github.com/spear-go/spear/agent"
	"github.com/spear-go/spear/runtime/kubernetes"
)

// manifest is one YAML document of a file under deploy/.
type manifest struct {
	file string
	raw  []byte
	obj  map[string]any
}

func (m manifest) String() string {
	return fmt.Sprintf("%s: %v %v", m.file, m.obj["kind"], m.obj["metadata"])
}

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// load parses every YAML document under deploy/, skipping empty ones and
// the kustomization (TestKustomizationListsEveryManifest reads that).
func load(t *testing.T) []manifest {
	t.Helper()
	var out []manifest
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".yaml") && !strings.HasSuffix(path, ".yml") {
			return err
		}
		if filepath.Base(path) == "kustomization.yaml" {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for n, doc := range docSeparator.Split(string(b), -1) {
			var obj map[string]any
			if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
				return fmt.Errorf("%s document %d: %w", path, n, err)
			}
			if obj != nil {
				out = append(out, manifest{file: path, raw: []byte(doc), obj: obj})
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatal("no manifests found")
	}
	return out
}

// typed are the kinds we ship, decoded strictly so that a misspelt field
// fails the test instead of being ignored by the API server.
var typed = map[string]func() any{
	"Namespace":      func() any { return &corev1.Namespace{} },
	"ServiceAccount": func() any { return &corev1.ServiceAccount{} },
	"ConfigMap":      func() any { return &corev1.ConfigMap{} },
	"Role":           func() any { return &rbacv1.Role{} },
	"RoleBinding":    func() any { return &rbacv1.RoleBinding{} },
	"DaemonSet":      func() any { return &appsv1.DaemonSet{} },
	"NetworkPolicy":  func() any { return &networkingv1.NetworkPolicy{} },
}

func TestManifestsWellFormed(t *testing.T) {
	kinds := map[string]bool{}
	for _, m := range load(t) {
		apiVersion, _ := m.obj["apiVersion"].(string)
		kind, _ := m.obj["kind"].(string)
		meta, _ := m.obj["metadata"].(map[string]any)
		name, _ := meta["name"].(string)
		if apiVersion == "" || kind == "" || name == "" {
			t.Errorf("%s: apiVersion %q, kind %q, metadata.name %q: all are required", m.file, apiVersion, kind, name)
			continue
		}
		kinds[kind] = true
		newObj, ok := typed[kind]
		if !ok {
			t.Errorf("%s: unexpected kind %s", m, kind)
			continue
		}
		if err := yaml.UnmarshalStrict(m.raw, newObj()); err != nil {
			t.Errorf("%s: %v", m, err)
		}
		if ns, _ := meta["namespace"].(string); kind != "Namespace" && ns == "" {
			t.Errorf("%s: namespaced object without metadata.namespace", m)
		}
	}
	for kind := range typed {
		if !kinds[kind] {
			t.Errorf("no %s among the manifests", kind)
		}
	}
}

// objects decodes every manifest of kind into T.
func objects[T any](t *testing.T, ms []manifest, kind string) []*T {
	t.Helper()
	var out []*T
	for _, m := range ms {
		if m.obj["kind"] != kind {
			continue
		}
		v := new(T)
		if err := yaml.Unmarshal(m.raw, v); err != nil {
			t.Fatalf("%s: %v", m, err)
		}
		out = append(out, v)
	}
	if len(out) == 0 {
		t.Fatalf("no %s", kind)
	}
	return out
}

func TestRBACCoversTheRuntime(t *testing.T) {
	ms := load(t)
	roles := objects[rbacv1.Role](t, ms, "Role")
	bindings := objects[rbacv1.RoleBinding](t, ms, "RoleBinding")
	accounts := objects[corev1.ServiceAccount](t, ms, "ServiceAccount")
	ds := objects[appsv1.DaemonSet](t, ms, "DaemonSet")[0]
	cms := objects[corev1.ConfigMap](t, ms, "ConfigMap")

	var role *rbacv1.Role
	for _, r := range roles {
		if r.Name == "spearlet" {
			role = r
		}
	}
	if role == nil {
		t.Fatal("no Role spearlet")
	}
	// The Role grants exactly what the runtime uses: no verb missing, none
	// to spare.
	want := map[string]bool{}
	for _, p := range kubernetes.Permissions {
		res := p.Resource
		if p.Subresource != "" {
			res += "/" + p.Subresource
		}
		want[p.Verb+" "+res] = true
		if !grants(role.Rules, res, p.Verb) {
			t.Errorf("Role %s/%s does not grant %s", role.Namespace, role.Name, p)
		}
	}
	for _, r := range role.Rules {
		if !slices.Equal(r.APIGroups, []string{""}) {
			t.Errorf("Role %s/%s: rule %+v is for API groups the runtime does not use", role.Namespace, role.Name, r)
		}
		for _, res := range r.Resources {
			for _, verb := range r.Verbs {
				if !want[verb+" "+res] {
					t.Errorf("Role %s/%s grants %s %s, which the runtime does not use", role.Namespace, role.Name, verb, res)
				}
			}
		}
	}

	sa := ds.Spec.Template.Spec.ServiceAccountName
	bound := false
	for _, b := range bindings {
		if b.Namespace != role.Namespace || b.RoleRef.Kind != "Role" || b.RoleRef.Name != role.Name {
			continue
		}
		for _, s := range b.Subjects {
			bound = bound || s.Kind == "ServiceAccount" && s.Name == sa && s.Namespace == ds.Namespace
		}
	}
	if !bound {
		t.Errorf("the DaemonSet's service account %s/%s is not bound to Role %s/%s", ds.Namespace, sa, role.Namespace, role.Name)
	}
	if !slices.ContainsFunc(accounts, func(a *corev1.ServiceAccount) bool { return a.Name == sa && a.Namespace == ds.Namespace }) {
		t.Errorf("no ServiceAccount %s/%s", ds.Namespace, sa)
	}

	// Every kubernetes function of the example config runs where the
	// agent may create pods.
	var cfg struct {
		Functions []struct {
			Name, Runtime, Image, Namespace string
			MinInstances                    int `json:"min_instances"`
			MaxInstances                    int `json:"max_instances"`
		}
	}
	data := cms[0].Data["config.yaml"]
	if err := yaml.Unmarshal([]byte(data), &cfg); err != nil {
		t.Fatalf("config.yaml: %v", err)
	}
	found := false
	for _, f := range cfg.Functions {
		if f.Runtime != "kubernetes" {
			continue
		}
		found = true
		if f.Name == "" || f.Image == "" || f.MinInstances > f.MaxInstances {
			t.Errorf("function %+v", f)
		}
		if f.Namespace != role.Namespace {
			t.Errorf("function %s runs in namespace %q; the agent's Role is in %q", f.Name, f.Namespace, role.Namespace)
		}
	}
	if !found {
		t.Error("the example config declares no kubernetes function")
	}
}

func grants(rules []rbacv1.PolicyRule, resource, verb string) bool {
	for _, r := range rules {
		if slices.Contains(r.APIGroups, "") &&
			(slices.Contains(r.Resources, resource) || slices.Contains(r.Resources, "*")) &&
			(slices.Contains(r.Verbs, verb) || slices.Contains(r.Verbs, "*")) {
			return true
		}
	}
	return false
}

// Pods dial the advertised address, so it must be the node's IP and a
// hostPort that forwards to the port the agent listens on.
func TestDaemonSetAdvertisesNodeAddress(t *testing.T) {
	ds := objects[appsv1.DaemonSet](t, load(t), "DaemonSet")[0]
	for k, v := range ds.Spec.Selector.MatchLabels {
		if ds.Spec.Template.Labels[k] != v {
			t.Errorf("selector %s=%s does not match the pod template", k, v)
		}
	}
	c := ds.Spec.Template.Spec.Containers[0]
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	if ip := env["NODE_IP"]; ip.ValueFrom == nil || ip.ValueFrom.FieldRef == nil || ip.ValueFrom.FieldRef.FieldPath != "status.hostIP" {
		t.Errorf("NODE_IP is not the downward API's status.hostIP: %+v", ip)
	}
	for _, pair := range [][2]string{{"SPEARLET_GRPC_ADDR", "SPEARLET_ADVERTISE_GRPC"}, {"SPEARLET_TCP_ADDR", "SPEARLET_ADVERTISE_TCP"}} {
		listen, advertise := env[pair[0]].Value, env[pair[1]].Value
		_, listenPort, _ := strings.Cut(listen, ":")
		host, advPort, _ := strings.Cut(advertise, ":")
		if host != "$(NODE_IP)" {
			t.Errorf("%s=%q does not advertise the node IP", pair[1], advertise)
		}
		if listenPort == "" || listenPort != advPort {
			t.Errorf("%s=%q and %s=%q: the advertised port must be the listening one", pair[0], listen, pair[1], advertise)
		}
		hostPort := slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool {
			return fmt.Sprint(p.ContainerPort) == listenPort && fmt.Sprint(p.HostPort) == advPort
		})
		if !hostPort && !ds.Spec.Template.Spec.HostNetwork {
			t.Errorf("port %s of %s is neither a hostPort nor on the host network", listenPort, pair[0])
		}
	}
}

// TestConfigMapParses parses the agent configuration shipped in the
// ConfigMap, so that it stays in step with the agent and the kubernetes
// runtime's spec.
func TestConfigMapParses(t *testing.T) {
	b, err := os.ReadFile("kubernetes/configmap.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cm corev1.ConfigMap
	if err := yaml.UnmarshalStrict(b, &cm); err != nil {
		t.Fatal(err)
	}
	cfg, err := agent.ParseConfig([]byte(cm.Data["config.yaml"]))
	if err != nil {
		t.Fatalf("kubernetes/configmap.yaml: %v", err)
	}
	if len(cfg.Functions) == 0 || cfg.Functions[0].Runtime != "kubernetes" {
		t.Fatalf("functions = %+v", cfg.Functions)
	}
	if spec, ok := cfg.Functions[0].Spec.(kubernetes.Spec); !ok || spec.Image == "" {
		t.Errorf("spec = %#v, want a kubernetes.Spec with an image", cfg.Functions[0].Spec)
	}
	if cfg.Channels.TLS.Mode != agent.TLSMutual {
		t.Errorf("channels.tls.mode %q: the pods' channels cross the node's network, want mutual TLS", cfg.Channels.TLS.Mode)
	}
}
