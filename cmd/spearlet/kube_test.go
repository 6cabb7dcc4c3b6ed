package main

// The Kubernetes tier end to end (internal/kubetest): the spearlet binary,
// configured by the ConfigMap of deploy/kubernetes and authenticated as
// its service account, against a real API server; the example function's
// image, built by internal/spearimage and unpacked by a simulated node
// that runs it as a process.

import (
	"context"
	"os"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	k8s "k8s.io/client-go/kubernetes"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/agent/api"
	"github.com/spear-go/spear/internal/kubetest"
	"github.com/spear-go/spear/internal/ociimage"
	"github.com/spear-go/spear/internal/spearimage"
	"github.com/spear-go/spear/runtime/kubernetes"
)

const functionsNS = "spear-functions"

// echoImage is the example function's image, unpacked once per test run.
var echoImage struct {
	once  sync.Once
	dir   string
	image kubetest.Image
	err   error
}

// kubeEnv is the control plane with the manifests applied, and what an
// agent needs to run against it.
type kubeEnv struct {
	ctx        context.Context
	cp         *kubetest.ControlPlane
	admin      k8s.Interface
	kubeconfig string // the agent's service account
	config     string // the ConfigMap's config.yaml
	imageRef   string
	image      kubetest.Image
}

func newKubeEnv(t *testing.T) *kubeEnv {
	t.Helper()
	cp := kubetest.Shared(t)
	e := &kubeEnv{ctx: testCtx(t), cp: cp}
	objs, err := kubetest.Manifests("../../deploy/kubernetes")
	if err != nil {
		t.Fatal(err)
	}
	if err := kubetest.Apply(e.ctx, cp.AdminConfig(), objs); err != nil {
		t.Fatal(err)
	}
	if e.admin, err = cp.AdminClient(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	token, err := cp.ServiceAccountToken(e.ctx, "spear-system", "spearlet")
	if err != nil {
		t.Fatal(err)
	}
	kc, err := cp.Kubeconfig(token)
	if err != nil {
		t.Fatal(err)
	}
	e.kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(e.kubeconfig, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if o.GetKind() == "ConfigMap" && o.GetName() == "spearlet-config" {
			data, _, _ := unstructured.NestedString(o.Object, "data", "config.yaml")
			e.config = writeConfig(t, data)
		}
	}
	if e.config == "" {
		t.Fatal("no spearlet-config ConfigMap among the manifests")
	}
	e.imageRef = spearimage.DefaultRepository + "/examples/echo:" + spearimage.Version
	e.image = unpackEcho(t)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("control plane:\n%s", cp.Logs(30))
		}
	})
	return e
}

// unpackEcho builds the example function's image for this machine and
// unpacks it, once per test run.
func unpackEcho(t *testing.T) kubetest.Image {
	t.Helper()
	e := &echoImage
	e.once.Do(func() {
		e.dir, e.err = os.MkdirTemp("", "spear-echo-image-")
		if e.err != nil {
			return
		}
		def, _ := spearimage.Lookup("examples/echo")
		p := ociimage.Platform{OS: "linux", Architecture: goruntime.GOARCH}
		var module string
		if module, e.err = spearimage.ModuleRoot(context.Background(), "."); e.err != nil {
			return
		}
		var res *spearimage.Result
		res, e.err = spearimage.Build(context.Background(), def, spearimage.Options{
			Module: module, Out: filepath.Join(e.dir, "layout"), Platforms: []ociimage.Platform{p},
		})
		if e.err != nil {
			return
		}
		var l *ociimage.Layout
		if l, e.err = ociimage.Open(res.Layout); e.err != nil {
			return
		}
		m, cfg, err := l.Image(spearimage.Version, p)
		if e.err = err; err != nil {
			return
		}
		root := filepath.Join(e.dir, "rootfs")
		if e.err = l.Extract(m, root); e.err != nil {
			return
		}
		e.image = kubetest.Image{Root: root, Entrypoint: cfg.Config.Entrypoint, Cmd: cfg.Config.Cmd, Env: cfg.Config.Env}
	})
	if e.err != nil {
		t.Fatalf("the example function's image: %v", e.err)
	}
	return e.image
}

// node starts a simulated node that has the example image.
func (e *kubeEnv) node(t *testing.T, name string) *kubetest.Node {
	t.Helper()
	return kubetest.StartTestNode(t, e.cp, e.admin, name, map[string]kubetest.Image{e.imageRef: e.image})
}

// agent runs spearlet serve with the manifests' config on node, as the
// DaemonSet does (SPEARLET_NODE_NAME) but with a kubeconfig for the
// service account instead of the in-cluster one.
func (e *kubeEnv) agent(t *testing.T, node string) *daemon {
	t.Helper()
	return startDaemonEnv(t, []string{"SPEARLET_NODE_NAME=" + node},
		"--config", e.config, "--kubeconfig", e.kubeconfig, "--log-level", "debug")
}

// objects returns the names of the pods and Secrets labelled with node
// (all the agents' when node is empty).
func (e *kubeEnv) objects(t *testing.T, node string) (pods, secrets []string) {
	t.Helper()
	set := labels.Set{kubernetes.LabelManagedBy: kubernetes.LabelManagedByValue}
	if node != "" {
		set[kubernetes.LabelNode] = node
	}
	opts := metav1.ListOptions{LabelSelector: set.String()}
	pl, err := e.admin.CoreV1().Pods(functionsNS).List(e.ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pl.Items {
		pods = append(pods, p.Name)
	}
	sl, err := e.admin.CoreV1().Secrets(functionsNS).List(e.ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sl.Items {
		secrets = append(secrets, s.Name)
	}
	slices.Sort(pods)
	slices.Sort(secrets)
	return pods, secrets
}

// running returns the running instances of echo.
func running(t *testing.T, d *daemon) []api.Instance {
	t.Helper()
	var out []api.Instance
	for _, inst := range instances(t, d, "echo") {
		if inst.Status == "running" {
			out = append(out, inst)
		}
	}
	return out
}

// podName is the pod of an instance id "kubernetes:NAME".
func podName(id string) string { return strings.TrimPrefix(id, "kubernetes:") }

func TestKubeInvokeAndReplace(t *testing.T) {
	e := newKubeEnv(t)
	node := e.node(t, "node-e2e")
	d := e.agent(t, node.Name())

	eventually(t, "min_instances to run", func() bool { return len(running(t, d)) == 1 })
	first := running(t, d)[0]
	pod, err := e.admin.CoreV1().Pods(functionsNS).Get(e.ctx, podName(first.ID), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pod.Spec.NodeName != node.Name() || pod.Spec.Containers[0].Image != e.imageRef || first.Channel != "grpc" {
		t.Errorf("pod on %q running %q over %s; want %s, %s, grpc", pod.Spec.NodeName, pod.Spec.Containers[0].Image, first.Channel, node.Name(), e.imageRef)
	}
	// The ConfigMap asks for mutual TLS: the pod is told the agent's pin
	// and its own certificate, and the invocations below cross TLS.
	tlsEnv := map[string]bool{}
	for _, v := range pod.Spec.Containers[0].Env {
		tlsEnv[v.Name] = v.Value != ""
	}
	if !tlsEnv[spear.EnvTLSPin] || !tlsEnv[spear.EnvTLSCert] {
		t.Errorf("pod env %v: no TLS pin or client certificate", pod.Spec.Containers[0].Env)
	}

	for _, tc := range []struct{ args, want string }{
		{"invoke echo hello", "hello"}, // the payload as it is: no newline added off a terminal
		{"invoke echo hello --method upper", "HELLO"},
		{"invoke echo --method whoami", first.ID},
		{"health", "ready\n"},
		{"health --live", "live\n"},
	} {
		out, err := d.cli(t, "", strings.Fields(tc.args)...)
		if err != nil || out != tc.want {
			t.Errorf("spearlet %s: %q, %v; want %q", tc.args, out, err, tc.want)
		}
	}

	// Someone else deletes the pod: the instance is reported stopped, and
	// the restart policy (on-failure) replaces it.
	if err := e.admin.CoreV1().Pods(functionsNS).Delete(e.ctx, pod.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a replacement instance", func() bool {
		r := running(t, d)
		return len(r) == 1 && r[0].ID != first.ID
	})
	var stopped *api.Instance
	for _, inst := range instances(t, d, "echo") {
		if inst.ID == first.ID {
			stopped = &inst
		}
	}
	if stopped == nil || stopped.Status != "stopped" || !strings.Contains(stopped.Reason, "pod deleted") {
		t.Errorf("the deleted pod's instance: %+v, want stopped because its pod was deleted", stopped)
	}
	if out, err := d.cli(t, "", "invoke", "echo", "again"); err != nil || out != "again" {
		t.Errorf("invoke after the replacement: %q, %v", out, err)
	}
	if !strings.Contains(d.logText(), "restart=true") {
		t.Error("the agent did not log the restart")
	}

	d.signal(syscall.SIGTERM)
	if err := d.wait(t); err != nil {
		t.Errorf("agent exit: %v", err)
	}
	if pods, secrets := e.objects(t, node.Name()); len(pods)+len(secrets) > 0 {
		t.Errorf("left after the agent stopped: pods %v, secrets %v", pods, secrets)
	}
}

// Two agents on two nodes share the functions namespace; one is killed
// with SIGKILL and restarted, and finds and deletes what it left.
func TestKubeTwoAgentsAndKill(t *testing.T) {
	e := newKubeEnv(t)
	nodeA, nodeB := e.node(t, "node-e2e-a"), e.node(t, "node-e2e-b")
	a, b := e.agent(t, nodeA.Name()), e.agent(t, nodeB.Name())
	eventually(t, "an instance on each agent", func() bool { return len(running(t, a)) == 1 && len(running(t, b)) == 1 })

	podsA, secretsA := e.objects(t, nodeA.Name())
	podsB, secretsB := e.objects(t, nodeB.Name())
	if len(podsA) != 1 || len(podsB) != 1 || len(secretsA) != 1 || len(secretsB) != 1 || podsA[0] == podsB[0] {
		t.Fatalf("node A: pods %v secrets %v; node B: pods %v secrets %v; want one distinct pod and secret each", podsA, secretsA, podsB, secretsB)
	}
	podA, err := e.admin.CoreV1().Pods(functionsNS).Get(e.ctx, podsA[0], metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []*daemon{a, b} {
		if out, err := d.cli(t, "", "invoke", "echo", "hi"); err != nil || out != "hi" {
			t.Errorf("invoke: %q, %v", out, err)
		}
	}

	// kill -9: B stops nothing; its pod and Secret stay.
	b.signal(syscall.SIGKILL)
	b.wait(t)
	if pods, secrets := e.objects(t, nodeB.Name()); !slices.Equal(pods, podsB) || !slices.Equal(secrets, secretsB) {
		t.Fatalf("after SIGKILL: pods %v secrets %v, want %v %v still there", pods, secrets, podsB, secretsB)
	}

	// Restarted on the same node, it deletes them and starts afresh.
	b = e.agent(t, nodeB.Name())
	eventually(t, "the restarted agent's instance", func() bool { return len(running(t, b)) == 1 })
	eventually(t, "the killed agent's pod and Secret to go", func() bool {
		_, perr := e.admin.CoreV1().Pods(functionsNS).Get(e.ctx, podsB[0], metav1.GetOptions{})
		_, serr := e.admin.CoreV1().Secrets(functionsNS).Get(e.ctx, secretsB[0], metav1.GetOptions{})
		return apierrors.IsNotFound(perr) && apierrors.IsNotFound(serr)
	})
	if !strings.Contains(b.logText(), "deleted a pod left by a previous run") {
		t.Error("the restarted agent did not log what it reclaimed")
	}
	// A was not touched.
	if again, err := e.admin.CoreV1().Pods(functionsNS).Get(e.ctx, podsA[0], metav1.GetOptions{}); err != nil || again.UID != podA.UID || again.DeletionTimestamp != nil {
		t.Errorf("agent A's pod after B's restart: %v", err)
	}
	if out, err := a.cli(t, "", "invoke", "echo", "still"); err != nil || out != "still" {
		t.Errorf("agent A after B's restart: %q, %v", out, err)
	}

	// A stops: only its objects go.
	a.signal(syscall.SIGTERM)
	if err := a.wait(t); err != nil {
		t.Errorf("agent A exit: %v", err)
	}
	if pods, secrets := e.objects(t, nodeA.Name()); len(pods)+len(secrets) > 0 {
		t.Errorf("agent A left pods %v secrets %v", pods, secrets)
	}
	if out, err := b.cli(t, "", "invoke", "echo", "b"); err != nil || out != "b" {
		t.Errorf("agent B after A stopped: %q, %v", out, err)
	}
	b.signal(syscall.SIGTERM)
	if err := b.wait(t); err != nil {
		t.Errorf("agent B exit: %v", err)
	}

	// Nothing leaks: no agent's pod or Secret, no container process.
	eventually(t, "every container process to exit", func() bool { return nodeA.Processes()+nodeB.Processes() == 0 })
	if pods, secrets := e.objects(t, ""); len(pods)+len(secrets) > 0 {
		t.Errorf("left in %s: pods %v, secrets %v", functionsNS, pods, secrets)
	}
}
