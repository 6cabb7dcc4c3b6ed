package kubernetes_test

// The Kubernetes tier (internal/kubetest): the runtime against a real
// kube-apiserver and etcd, authenticated as the service account of
// deploy/kubernetes with exactly the Role the manifests grant, and a node
// simulator that runs each pod as this test binary re-executed as a
// function. The whole flow is real but for the container runtime:
// Secret, pod, scheduling, watch, the instance dialling its grpc channel,
// handshake, invocation, deletion.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8s "k8s.io/client-go/kubernetes"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/channel"
	"github.com/spear-go/spear/internal/kubetest"
	"github.com/spear-go/spear/internal/spearimage"
	"github.com/spear-go/spear/runtime"
	"github.com/spear-go/spear/runtime/kubernetes"
	"github.com/spear-go/spear/sdk"
)

const (
	// envTestFunction, set, makes the test binary the function of a pod.
	envTestFunction = "SPEAR_KUBE_TEST_FUNCTION"
	// functionsNS is the manifests' namespace for function pods.
	functionsNS = "spear-functions"
	// clusterTimeout bounds each test of the tier: pods take seconds.
	clusterTimeout = 2 * time.Minute
)

// echoImage is the example function's image, as the manifests name it.
var echoImage = spearimage.DefaultRepository + "/examples/echo:" + spearimage.Version

// runTestFunction is the function the node runs for echoImage: it answers
// "<instance id>:<payload>", and says on stderr that it started.
func runTestFunction() {
	id := os.Getenv(spear.EnvInstanceID)
	fmt.Fprintf(os.Stderr, "test function %s started\n", id)
	sdk.Run(func(ctx context.Context, r *sdk.Request) ([]byte, error) {
		return []byte(id + ":" + string(r.Payload)), nil
	})
}

// cluster is the shared control plane with the manifests applied.
type cluster struct {
	ctx   context.Context
	cp    *kubetest.ControlPlane
	admin k8s.Interface
	agent k8s.Interface // the spearlet service account
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	cp := kubetest.Shared(t)
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	t.Cleanup(cancel)
	c := &cluster{ctx: ctx, cp: cp}
	c.applyManifests(t)
	var err error
	if c.admin, err = cp.AdminClient(); err != nil {
		t.Fatal(err)
	}
	token, err := cp.ServiceAccountToken(ctx, "spear-system", "spearlet")
	if err != nil {
		t.Fatal(err)
	}
	if c.agent, err = k8s.NewForConfig(cp.Config(token)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("control plane:\n%s", cp.Logs(40))
		}
	})
	return c
}

func (c *cluster) applyManifests(t *testing.T) {
	t.Helper()
	objs, err := kubetest.Manifests("../../deploy/kubernetes")
	if err != nil {
		t.Fatal(err)
	}
	if err := kubetest.Apply(c.ctx, c.cp.AdminConfig(), objs); err != nil {
		t.Fatal(err)
	}
}

// node starts a simulated node that runs echoImage as this test binary.
func (c *cluster) node(t *testing.T, name string) *kubetest.Node {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return kubetest.StartTestNode(t, c.cp, c.admin, name,
		map[string]kubetest.Image{echoImage: {Entrypoint: []string{exe}, Env: []string{envTestFunction + "=1"}}})
}

// runtime returns a runtime on node, authenticated as the agent, whose
// logs go to logs.
func (c *cluster) runtime(t *testing.T, node string, logs *syncBuffer) *kubernetes.Runtime {
	t.Helper()
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("runtime on %s:\n%s", node, logs)
		}
	})
	f, err := channel.NewFactory(channel.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	rt, err := kubernetes.New(kubernetes.Options{Factory: f, Client: c.agent, Namespace: functionsNS, NodeName: node, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := rt.Close(context.Background()); err != nil {
			t.Errorf("close runtime: %v", err)
		}
	})
	return rt
}

func clusterSpec() podSpec {
	return podSpec{
		Settings: runtime.Settings{Function: "echo", StartTimeout: clusterTimeout / 2, StopGrace: 2 * time.Second},
		Spec:     kubernetes.Spec{Image: echoImage},
	}
}

func uniqueID(t *testing.T, prefix string) spear.InstanceID {
	t.Helper()
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return instanceID(t, prefix+"-"+hex.EncodeToString(b))
}

// gone reports whether the pod and Secret of id are gone.
func (c *cluster) gone(id spear.InstanceID) (bool, error) {
	_, perr := c.admin.CoreV1().Pods(functionsNS).Get(c.ctx, id.Name, metav1.GetOptions{})
	_, serr := c.admin.CoreV1().Secrets(functionsNS).Get(c.ctx, id.Name+"-secret", metav1.GetOptions{})
	for _, err := range []error{perr, serr} {
		if err != nil && !apierrors.IsNotFound(err) {
			return false, err
		}
	}
	return apierrors.IsNotFound(perr) && apierrors.IsNotFound(serr), nil
}

// eventually polls cond until it holds or the test's deadline passes.
func (c *cluster) eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-c.ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func TestClusterStartInvokeStop(t *testing.T) {
	c := newCluster(t)
	node := c.node(t, "node-start")
	logs := &syncBuffer{}
	rt := c.runtime(t, node.Name(), logs)
	id := uniqueID(t, "echo")
	inst, err := startSpec(c.ctx, rt, id, clusterSpec())
	if err != nil {
		t.Fatal(err)
	}

	pod, err := c.admin.CoreV1().Pods(functionsNS).Get(c.ctx, id.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pod.Spec.NodeName != node.Name() || pod.Labels[kubernetes.LabelNode] != node.Name() || pod.Status.Phase != corev1.PodRunning {
		t.Errorf("pod on node %q, label %q, phase %s; want bound to and labelled %s, running",
			pod.Spec.NodeName, pod.Labels[kubernetes.LabelNode], pod.Status.Phase, node.Name())
	}
	secret, err := c.admin.CoreV1().Secrets(functionsNS).Get(c.ctx, id.Name+"-secret", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if refs := secret.OwnerReferences; len(refs) != 1 || refs[0].UID != pod.UID {
		t.Errorf("secret owners %+v, want the pod %s", refs, pod.UID)
	}

	out, err := channel.Execute(c.ctx, inst.Channel(), channel.Invocation{Payload: []byte("ping")})
	if want := id.String() + ":ping"; err != nil || string(out) != want {
		t.Fatalf("execute: %q, %v; want %q", out, err, want)
	}
	// The container's output, through the API server and the node.
	started := func(l string) bool { return strings.Contains(l, "test function "+id.String()+" started") }
	if lines := inst.Logs(10); !slices.ContainsFunc(lines, started) {
		t.Errorf("logs %q, want the function's first line", lines)
	}
	// Followed, through the API server's log stream: it ends once the
	// container has.
	followed := make(chan string, 16)
	follow := make(chan error, 1)
	go func() {
		follow <- inst.(runtime.Follower).FollowLogs(c.ctx, 10, func(l string) error { followed <- l; return nil })
		close(followed)
	}()
	if l := <-followed; !started(l) {
		t.Errorf("first followed line %q, want the function's first line", l)
	}

	if err := rt.Stop(c.ctx, inst); err != nil {
		t.Fatal(err)
	}
	for range followed {
	}
	if err := <-follow; err != nil {
		t.Errorf("following the output of a stopped pod: %v, want its end", err)
	}
	if ok, err := c.gone(id); !ok {
		t.Errorf("pod or secret left after Stop (%v)", err)
	}
	if n := node.Processes(); n != 0 {
		t.Errorf("%d container processes left after Stop", n)
	}
}

// Take each permission from the agent's Role in turn: the first Start
// says exactly which one is missing, and creates nothing.
func TestClusterMissingPermission(t *testing.T) {
	c := newCluster(t)
	node := c.node(t, "node-rbac")
	for _, p := range kubernetes.Permissions {
		t.Run(strings.ReplaceAll(p.String(), " ", "_"), func(t *testing.T) {
			c.revoke(t, p)
			rt := c.runtime(t, node.Name(), &syncBuffer{})
			id := uniqueID(t, "rbac")
			inst, err := startSpec(c.ctx, rt, id, clusterSpec())
			if err == nil {
				rt.Stop(c.ctx, inst)
				t.Fatalf("Start succeeded without %s", p)
			}
			var perr *kubernetes.PermissionError
			if !errors.As(err, &perr) || !slices.Equal(perr.Missing, []kubernetes.Permission{p}) || perr.Namespace != functionsNS {
				t.Fatalf("got %v, want a PermissionError naming only %s in %s", err, p, functionsNS)
			}
			msg := err.Error()
			for _, want := range []string{p.Verb, p.Resource, functionsNS, "system:serviceaccount:spear-system:spearlet", "rbac.yaml"} {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not say %q", msg, want)
				}
			}
			if !errors.Is(err, kubernetes.ErrAPI) || !errors.Is(err, spear.ErrConfig) {
				t.Errorf("error %v does not match ErrAPI and spear.ErrConfig", err)
			}
			if ok, err := c.gone(id); !ok {
				t.Errorf("objects created without permission (%v)", err)
			}
		})
	}

	// A permission taken away later shows in the failing request's error.
	rt := c.runtime(t, node.Name(), &syncBuffer{})
	id := uniqueID(t, "rbac-late")
	inst, err := startSpec(c.ctx, rt, id, clusterSpec())
	if err != nil {
		t.Fatal(err)
	}
	c.revoke(t, kubernetes.Permission{Verb: "delete", Resource: "pods"})
	err = rt.Stop(c.ctx, inst)
	if err == nil || !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "delete pods "+functionsNS+"/"+id.Name) ||
		!strings.Contains(err.Error(), "grant delete on pods") {
		t.Errorf("Stop without delete on pods: %v, want a forbidden error naming the request and the fix", err)
	}
	_ = c.admin.CoreV1().Pods(functionsNS).Delete(c.ctx, id.Name, metav1.DeleteOptions{})
}

// revoke takes p out of the agent's Role until the test ends.
func (c *cluster) revoke(t *testing.T, p kubernetes.Permission) {
	t.Helper()
	roles := c.admin.RbacV1().Roles(functionsNS)
	role, err := roles.Get(c.ctx, "spearlet", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	res := p.Resource
	if p.Subresource != "" {
		res += "/" + p.Subresource
	}
	found := false
	for i, r := range role.Rules {
		if slices.Equal(r.Resources, []string{res}) && slices.Contains(r.Verbs, p.Verb) {
			role.Rules[i].Verbs = slices.DeleteFunc(slices.Clone(r.Verbs), func(v string) bool { return v == p.Verb })
			found = true
		}
	}
	if !found {
		t.Fatalf("no rule of the Role grants %s (alone on its resource)", p)
	}
	role.Rules = slices.DeleteFunc(role.Rules, func(r rbacv1.PolicyRule) bool { return len(r.Verbs) == 0 })
	if _, err := roles.Update(c.ctx, role, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The authorizer learns of RBAC changes through a watch: wait for it.
	c.eventually(t, "the revocation to take effect", func() bool { return !c.agentMay(t, p) })
	t.Cleanup(func() {
		c.applyManifests(t)
		c.eventually(t, "the Role to be restored", func() bool { return c.agentMay(t, p) })
	})
}

// agentMay asks the API server whether the agent may do p.
func (c *cluster) agentMay(t *testing.T, p kubernetes.Permission) bool {
	t.Helper()
	r, err := c.agent.AuthorizationV1().SelfSubjectAccessReviews().Create(c.ctx, &authorizationv1.SelfSubjectAccessReview{
		Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace: functionsNS, Verb: p.Verb, Resource: p.Resource, Subresource: p.Subresource,
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return r.Status.Allowed
}

func TestClusterPodDeletedByOthers(t *testing.T) {
	c := newCluster(t)
	node := c.node(t, "node-evict")
	rt := c.runtime(t, node.Name(), &syncBuffer{})
	id := uniqueID(t, "evicted")
	stopsWhenPodDeleted(t, c.ctx, c.admin, rt, id, clusterSpec(), functionsNS)
	c.eventually(t, "the pod and its secret to go", func() bool { ok, _ := c.gone(id); return ok })
}

// The API server goes away under the pods' watches and comes back: the
// instance runs on meanwhile (its channel does not go through the API),
// and the runtime's watch resumes, from a resource version the new server
// may call too old.
func TestClusterAPIServerRestart(t *testing.T) {
	c := newCluster(t)
	node := c.node(t, "node-restart")
	logs := &syncBuffer{}
	rt := c.runtime(t, node.Name(), logs)
	id := uniqueID(t, "survivor")
	inst, err := startSpec(c.ctx, rt, id, clusterSpec())
	if err != nil {
		t.Fatal(err)
	}
	c.cp.StopAPIServer()
	out, err := channel.Execute(c.ctx, inst.Channel(), channel.Invocation{Payload: []byte("down")})
	if err != nil || string(out) != id.String()+":down" {
		t.Errorf("invoke while the API server is down: %q, %v", out, err)
	}
	if err := c.cp.StartAPIServer(c.ctx); err != nil {
		t.Fatal(err)
	}
	// The new server's watch cache starts at the current revision, which
	// the restart itself moved on (the API server's own writes): the
	// runtime's resource version is too old there.
	c.eventually(t, "the runtime to find its watch expired", func() bool {
		return strings.Contains(logs.String(), "resource version too old")
	})
	// The resumed watch sees the pod go.
	if err := c.admin.CoreV1().Pods(functionsNS).Delete(c.ctx, id.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-inst.Done():
	case <-c.ctx.Done():
		t.Fatal("after the API server restarted, the runtime did not see the pod deleted")
	}
}

// The first Start on a node deletes what a previous run on the same node
// left, and nothing of another node's.
func TestClusterReclaimsLeftovers(t *testing.T) {
	c := newCluster(t)
	node := c.node(t, "node-reclaim")
	leftover := func(name, nodeName string) {
		t.Helper()
		labels := map[string]string{kubernetes.LabelManagedBy: kubernetes.LabelManagedByValue, kubernetes.LabelNode: nodeName}
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: functionsNS, Labels: labels},
			Spec: corev1.PodSpec{
				Containers: []corev1.Container{{Name: "function", Image: "registry.example/left:1"}},
				Volumes: []corev1.Volume{{Name: "spear-secret", VolumeSource: corev1.VolumeSource{
					Secret: &corev1.SecretVolumeSource{SecretName: name + "-secret"},
				}}},
			},
		}
		if _, err := c.admin.CoreV1().Pods(functionsNS).Create(c.ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name + "-secret", Namespace: functionsNS, Labels: labels}}
		if _, err := c.admin.CoreV1().Secrets(functionsNS).Create(c.ctx, secret, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	mine, theirs := uniqueID(t, "left-mine"), uniqueID(t, "left-theirs")
	leftover(mine.Name, node.Name())
	leftover(theirs.Name, "node-other")
	t.Cleanup(func() {
		_ = c.admin.CoreV1().Pods(functionsNS).Delete(context.Background(), theirs.Name, metav1.DeleteOptions{})
		_ = c.admin.CoreV1().Secrets(functionsNS).Delete(context.Background(), theirs.Name+"-secret", metav1.DeleteOptions{})
	})

	logs := &syncBuffer{}
	rt := c.runtime(t, node.Name(), logs)
	inst, err := startSpec(c.ctx, rt, uniqueID(t, "fresh"), clusterSpec())
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := c.gone(mine); !ok {
		t.Errorf("this node's leftover pod or secret is still there (%v)", err)
	}
	if ok, _ := c.gone(theirs); ok {
		t.Error("another node's pod was deleted")
	}
	if _, err := c.admin.CoreV1().Pods(functionsNS).Get(c.ctx, inst.ID().Name, metav1.GetOptions{}); err != nil {
		t.Errorf("the new instance's pod: %v", err)
	}
	if !strings.Contains(logs.String(), "previous run") {
		t.Errorf("the runtime did not log what it reclaimed:\n%s", logs)
	}
}

// Two agents on two nodes share the functions namespace: each sees and
// touches only its own pods.
func TestClusterTwoRuntimesShareNamespace(t *testing.T) {
	c := newCluster(t)
	nodeA, nodeB := c.node(t, "node-share-a"), c.node(t, "node-share-b")
	rtA := c.runtime(t, nodeA.Name(), &syncBuffer{})
	rtB := c.runtime(t, nodeB.Name(), &syncBuffer{})
	start := func(rt *kubernetes.Runtime) runtime.Instance {
		inst, err := startSpec(c.ctx, rt, uniqueID(t, "shared"), clusterSpec())
		if err != nil {
			t.Fatal(err)
		}
		return inst
	}
	a1, a2, b1 := start(rtA), start(rtA), start(rtB)
	for inst, node := range map[runtime.Instance]string{a1: nodeA.Name(), a2: nodeA.Name(), b1: nodeB.Name()} {
		pod, err := c.admin.CoreV1().Pods(functionsNS).Get(c.ctx, inst.ID().Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if pod.Spec.NodeName != node || pod.Labels[kubernetes.LabelNode] != node {
			t.Errorf("pod %s on %q labelled %q, want %s", pod.Name, pod.Spec.NodeName, pod.Labels[kubernetes.LabelNode], node)
		}
	}
	if err := rtA.Close(c.ctx); err != nil {
		t.Fatal(err)
	}
	for _, inst := range []runtime.Instance{a1, a2} {
		if ok, err := c.gone(inst.ID()); !ok {
			t.Errorf("%s left after its runtime closed (%v)", inst.ID(), err)
		}
	}
	if ok, _ := c.gone(b1.ID()); ok {
		t.Errorf("closing runtime A deleted B's %s", b1.ID())
	}
	out, err := channel.Execute(c.ctx, b1.Channel(), channel.Invocation{Payload: []byte("b")})
	if err != nil || string(out) != b1.ID().String()+":b" {
		t.Errorf("B's instance after A closed: %q, %v", out, err)
	}
}
