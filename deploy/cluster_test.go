package deploy

// The manifests against a real API server (the Kubernetes tier, see
// internal/kubetest): they apply, the agent's pod passes Pod Security
// admission, and the service account may do exactly what the runtime
// needs.

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	k8s "k8s.io/client-go/kubernetes"

	"github.com/spear-go/spear/internal/kubetest"
	"github.com/spear-go/spear/runtime/kubernetes"
)

func TestMain(m *testing.M) { os.Exit(kubetest.RunTests(m)) }

const clusterTimeout = 2 * time.Minute

// applied applies the manifests to the shared control plane and returns
// an admin client.
func applied(t *testing.T) (context.Context, *kubetest.ControlPlane, k8s.Interface) {
	t.Helper()
	cp := kubetest.Shared(t)
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	t.Cleanup(cancel)
	objs, err := kubetest.Manifests("kubernetes")
	if err != nil {
		t.Fatal(err)
	}
	if err := kubetest.Apply(ctx, cp.AdminConfig(), objs); err != nil {
		t.Fatalf("the manifests do not apply: %v", err)
	}
	admin, err := cp.AdminClient()
	if err != nil {
		t.Fatal(err)
	}
	return ctx, cp, admin
}

func TestManifestsApply(t *testing.T) {
	ctx, _, admin := applied(t)
	ds, err := admin.AppsV1().DaemonSets("spear-system").Get(ctx, "spearlet", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ds.Spec.Template.Spec.ServiceAccountName != "spearlet" {
		t.Errorf("stored DaemonSet runs as %q", ds.Spec.Template.Spec.ServiceAccountName)
	}
	// Applying again fails nothing and changes nothing.
	applied(t)
	again, err := admin.AppsV1().DaemonSets("spear-system").Get(ctx, "spearlet", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if again.ResourceVersion != ds.ResourceVersion {
		t.Errorf("a second apply changed the DaemonSet (resource version %s to %s)", ds.ResourceVersion, again.ResourceVersion)
	}
}

// A manifest the API server refuses fails at the dry run, and leaves
// nothing behind.
func TestBrokenManifestFailsDryRun(t *testing.T) {
	ctx, cp, admin := applied(t)
	objs, err := kubetest.Manifests("kubernetes")
	if err != nil {
		t.Fatal(err)
	}
	var broken *unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == "DaemonSet" {
			broken = o.DeepCopy()
		}
	}
	broken.SetName("spearlet-broken")
	containers, _, _ := unstructured.NestedSlice(broken.Object, "spec", "template", "spec", "containers")
	containers[0].(map[string]any)["name"] = "Not_A_Label" // container names are DNS labels
	if err := unstructured.SetNestedSlice(broken.Object, containers, "spec", "template", "spec", "containers"); err != nil {
		t.Fatal(err)
	}
	err = kubetest.Apply(ctx, cp.AdminConfig(), []*unstructured.Unstructured{broken})
	if err == nil || !strings.Contains(err.Error(), "dry run") || !strings.Contains(err.Error(), "containers[0].name") {
		t.Errorf("applying an invalid DaemonSet: %v, want the dry run to name the field", err)
	}
	if _, err := admin.AppsV1().DaemonSets("spear-system").Get(ctx, "spearlet-broken", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the refused DaemonSet is stored: %v", err)
	}
}

// The agent's pod meets the restricted Pod Security standard but for its
// hostPorts, and is admitted with them in spear-system.
func TestAgentPodPassesPodSecurity(t *testing.T) {
	ctx, _, admin := applied(t)
	ds, err := admin.AppsV1().DaemonSets("spear-system").Get(ctx, "spearlet", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	restricted := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "psa-restricted", Labels: map[string]string{
		"pod-security.kubernetes.io/enforce": "restricted",
	}}}
	if _, err := admin.CoreV1().Namespaces().Create(ctx, restricted, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "spearlet"}}
	if _, err := admin.CoreV1().ServiceAccounts("psa-restricted").Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	dryRun := func(ns string, edit func(*corev1.PodSpec)) error {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "spearlet-psa", Namespace: ns, Labels: ds.Spec.Template.Labels}}
		pod.Spec = *ds.Spec.Template.Spec.DeepCopy()
		edit(&pod.Spec)
		_, err := admin.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err
	}
	noHostPorts := func(s *corev1.PodSpec) {
		for i := range s.Containers[0].Ports {
			s.Containers[0].Ports[i].HostPort = 0
		}
	}
	if err := dryRun("psa-restricted", noHostPorts); err != nil {
		t.Errorf("the agent's pod without hostPorts under the restricted standard: %v", err)
	}
	if err := dryRun("psa-restricted", func(*corev1.PodSpec) {}); err == nil || !strings.Contains(err.Error(), "hostPort") {
		t.Errorf("with hostPorts under restricted: %v, want refused for hostPort (or the check proves nothing)", err)
	}
	if err := dryRun("spear-system", func(*corev1.PodSpec) {}); err != nil {
		t.Errorf("the agent's pod in spear-system: %v", err)
	}
}

// The service account may do exactly runtime/kubernetes.Permissions in the
// functions namespace, and nothing in other namespaces or on other
// resources.
func TestServiceAccountPermissions(t *testing.T) {
	ctx, cp, _ := applied(t)
	token, err := cp.ServiceAccountToken(ctx, "spear-system", "spearlet")
	if err != nil {
		t.Fatal(err)
	}
	sa, err := k8s.NewForConfig(cp.Config(token))
	if err != nil {
		t.Fatal(err)
	}
	can := func(ns, verb, resource, sub string) bool {
		t.Helper()
		r, err := sa.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: ns, Verb: verb, Resource: resource, Subresource: sub,
			}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return r.Status.Allowed
	}
	for _, p := range kubernetes.Permissions {
		if !can("spear-functions", p.Verb, p.Resource, p.Subresource) {
			t.Errorf("the service account may not %s in spear-functions", p)
		}
		if can("spear-system", p.Verb, p.Resource, p.Subresource) || can("default", p.Verb, p.Resource, p.Subresource) {
			t.Errorf("the service account may %s outside spear-functions", p)
		}
	}
	for _, p := range []kubernetes.Permission{
		{Verb: "get", Resource: "secrets"}, {Verb: "list", Resource: "secrets"}, {Verb: "watch", Resource: "secrets"},
		{Verb: "update", Resource: "pods"}, {Verb: "create", Resource: "pods", Subresource: "exec"},
		{Verb: "list", Resource: "configmaps"}, {Verb: "create", Resource: "serviceaccounts", Subresource: "token"},
	} {
		if can("spear-functions", p.Verb, p.Resource, p.Subresource) {
			t.Errorf("the service account may %s in spear-functions, which it does not need", p)
		}
	}
	// And the API server enforces it: the token lists pods, not secrets.
	if _, err := sa.CoreV1().Pods("spear-functions").List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("list pods as the agent: %v", err)
	}
	if _, err := sa.CoreV1().Secrets("spear-functions").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("list secrets as the agent: %v, want forbidden", err)
	}
}
