package deploy

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/yaml"

	"github.com/spear-go/spear/internal/kubetest"
	"github.com/spear-go/spear/internal/spearimage"
)

// What "kubectl apply -k deploy/kubernetes" applies is every manifest.
func TestKustomizationListsEveryManifest(t *testing.T) {
	objs, err := kubetest.Manifests("kubernetes")
	if err != nil {
		t.Fatal(err)
	}
	key := func(kind, ns, name any) string {
		return strings.Join([]string{kind.(string), ns.(string), name.(string)}, "/")
	}
	var fromKustomize, fromFiles []string
	for _, o := range objs {
		fromKustomize = append(fromKustomize, key(o.GetKind(), o.GetNamespace(), o.GetName()))
	}
	for _, m := range load(t) {
		meta, _ := m.obj["metadata"].(map[string]any)
		ns, _ := meta["namespace"].(string)
		fromFiles = append(fromFiles, key(m.obj["kind"], ns, meta["name"]))
	}
	slices.Sort(fromKustomize)
	slices.Sort(fromFiles)
	if !slices.Equal(fromKustomize, fromFiles) {
		t.Errorf("the kustomization applies\n%v\nthe manifest files hold\n%v", fromKustomize, fromFiles)
	}
}

// Every object carries the recommended labels, with the release's version.
func TestRecommendedLabels(t *testing.T) {
	for _, m := range load(t) {
		meta, _ := m.obj["metadata"].(map[string]any)
		labels, _ := meta["labels"].(map[string]any)
		want := map[string]string{"app.kubernetes.io/part-of": "spear", "app.kubernetes.io/managed-by": "kustomize"}
		if m.obj["kind"] != "Namespace" {
			want["app.kubernetes.io/version"] = spearimage.Version
			for _, k := range []string{"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component"} {
				if s, _ := labels[k].(string); s == "" {
					t.Errorf("%s: no label %s", m, k)
				}
			}
		}
		for k, v := range want {
			if labels[k] != v {
				t.Errorf("%s: label %s=%v, want %q", m, k, labels[k], v)
			}
		}
	}
}

// Images are pinned to the release that cmd/spear-image builds.
func TestImagesPinned(t *testing.T) {
	ms := load(t)
	ds := objects[appsv1.DaemonSet](t, ms, "DaemonSet")[0]
	if got, want := ds.Spec.Template.Spec.Containers[0].Image, spearimage.DefaultRepository+"/spearlet:"+spearimage.Version; got != want {
		t.Errorf("DaemonSet image %q, want %q", got, want)
	}
	var cfg struct {
		Functions []struct{ Image string }
	}
	if err := yaml.Unmarshal([]byte(objects[corev1.ConfigMap](t, ms, "ConfigMap")[0].Data["config.yaml"]), &cfg); err != nil {
		t.Fatal(err)
	}
	echo := spearimage.DefaultRepository + "/examples/echo:" + spearimage.Version
	if len(cfg.Functions) == 0 || cfg.Functions[0].Image != echo {
		t.Errorf("config's functions %+v, want the example image %s", cfg.Functions, echo)
	}
}

func TestDaemonSetHardening(t *testing.T) {
	ms := load(t)
	ds := objects[appsv1.DaemonSet](t, ms, "DaemonSet")[0]
	pod := ds.Spec.Template.Spec
	c := pod.Containers[0]
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}

	if sc := pod.SecurityContext; sc == nil || sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Error("the pod's seccomp profile is not RuntimeDefault")
	}
	sc := c.SecurityContext
	switch {
	case sc == nil:
		t.Fatal("no container securityContext")
	case sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
		t.Error("the container's seccomp profile is not RuntimeDefault")
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Error("the root filesystem is writable")
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Error("privilege escalation is allowed")
	case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0:
		t.Errorf("capabilities %+v, want all dropped", sc.Capabilities)
	case sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot:
		t.Error("runAsNonRoot is not set")
	}
	if psc := pod.SecurityContext; psc.RunAsUser == nil || *psc.RunAsUser != spearimage.UID {
		t.Errorf("runAsUser %v, want the image's user %d", psc.RunAsUser, spearimage.UID)
	}

	// The probes run the CLI of the image against the loopback API:
	// readiness checks /readyz, liveness and startup /livez (a draining or
	// not yet ready agent must not be restarted).
	def, _ := spearimage.Lookup("spearlet")
	for _, pr := range []struct {
		name  string
		probe *corev1.Probe
		args  []string
	}{
		{"startup", c.StartupProbe, []string{def.Binary, "health", "--live"}},
		{"liveness", c.LivenessProbe, []string{def.Binary, "health", "--live"}},
		{"readiness", c.ReadinessProbe, []string{def.Binary, "health"}},
	} {
		if p := pr.probe; p == nil || p.Exec == nil || !slices.Equal(p.Exec.Command, pr.args) {
			t.Errorf("%s probe %+v, want exec %v", pr.name, p, pr.args)
		}
	}

	// Writable places are emptyDirs: /tmp, the wasm cache, and the state
	// directory's parent (the agent makes the directory itself, 0700).
	for _, dir := range []string{env["TMPDIR"], env["SPEARLET_WASM_CACHE_DIR"], filepath.Dir(env["SPEARLET_STATE_DIR"])} {
		i := slices.IndexFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return m.MountPath == dir })
		if dir == "" || i < 0 {
			t.Errorf("no volume mounted at %q", dir)
			continue
		}
		v := slices.IndexFunc(pod.Volumes, func(v corev1.Volume) bool { return v.Name == c.VolumeMounts[i].Name })
		if v < 0 || pod.Volumes[v].EmptyDir == nil || pod.Volumes[v].EmptyDir.SizeLimit == nil {
			t.Errorf("%s is not a size-limited emptyDir", dir)
		}
	}

	// The API listens on loopback; the only ports are the instances'.
	for _, k := range []string{"SPEARLET_HTTP_ADDR", "SPEARLET_API_GRPC_ADDR"} {
		host, _, err := net.SplitHostPort(env[k])
		if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
			t.Errorf("%s=%q: the API must listen on loopback only", k, env[k])
		}
	}
	var ports []int32
	for _, p := range c.Ports {
		ports = append(ports, p.ContainerPort)
	}
	for _, k := range []string{"SPEARLET_GRPC_ADDR", "SPEARLET_TCP_ADDR"} {
		_, port, _ := net.SplitHostPort(env[k])
		if !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return strconv.Itoa(int(p.ContainerPort)) == port }) {
			t.Errorf("%s=%q is not among the container's ports %v", k, env[k], ports)
		}
	}
	if len(c.Ports) != 2 {
		t.Errorf("container ports %v, want only the two instance channel ports", ports)
	}
	// The API is authenticated: no setting turns its socket or token off.
	for _, k := range []string{"SPEARLET_API_SOCKET", "SPEARLET_API_TOKEN_FILE"} {
		if v, ok := env[k]; ok && (v == "" || v == "none") {
			t.Errorf("%s=%q", k, v)
		}
	}
	if env["SPEARLET_STATE_DIR"] == "" || filepath.Dir(env["SPEARLET_STATE_DIR"]) == env["SPEARLET_STATE_DIR"] {
		t.Errorf("SPEARLET_STATE_DIR=%q, want a subdirectory of a volume", env["SPEARLET_STATE_DIR"])
	}

	// A NetworkPolicy admits exactly those ports to the agents' pods: not
	// the API's.
	found := false
	for _, np := range objects[networkingv1.NetworkPolicy](t, ms, "NetworkPolicy") {
		if np.Namespace != ds.Namespace {
			continue
		}
		sel := np.Spec.PodSelector.MatchLabels
		matches := len(sel) > 0
		for k, v := range sel {
			matches = matches && ds.Spec.Template.Labels[k] == v
		}
		if !matches {
			continue
		}
		found = true
		var allowed []int32
		for _, rule := range np.Spec.Ingress {
			for _, p := range rule.Ports {
				allowed = append(allowed, p.Port.IntVal)
			}
			if len(rule.Ports) == 0 {
				t.Errorf("NetworkPolicy %s admits every port", np.Name)
			}
		}
		slices.Sort(allowed)
		if !slices.Equal(allowed, ports) {
			t.Errorf("NetworkPolicy %s admits ports %v, want %v", np.Name, allowed, ports)
		}
	}
	if !found {
		t.Error("no NetworkPolicy selects the agents' pods")
	}
}

// The docs name every manifest.
func TestDocsNameTheManifests(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "docs", "kubernetes.md"))
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join("kubernetes", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if !strings.Contains(string(doc), filepath.Base(f)) {
			t.Errorf("docs/kubernetes.md does not mention %s", filepath.Base(f))
		}
	}
}
