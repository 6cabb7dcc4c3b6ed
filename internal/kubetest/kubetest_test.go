package kubetest_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8s "k8s.io/client-go/kubernetes"

	"github.com/spear-go/spear/internal/kubetest"
)

func TestMain(m *testing.M) { os.Exit(kubetest.RunTests(m)) }

const testTimeout = time.Minute

// shell is the image of the tests' pods: sh -c with the pod's args.
var shell = kubetest.Image{Entrypoint: []string{"/bin/sh", "-c"}}

func setup(t *testing.T, nodeName string) (context.Context, k8s.Interface, *kubetest.Node, string) {
	t.Helper()
	cp := kubetest.Shared(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	c, err := cp.AdminClient()
	if err != nil {
		t.Fatal(err)
	}
	ns := strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))
	if len(ns) > 63 {
		ns = ns[:63]
	}
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	node := kubetest.StartTestNode(t, cp, c, nodeName, map[string]kubetest.Image{"shell": shell})
	return ctx, c, node, ns
}

func pod(ns, name, node, script string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.PodSpec{
			RestartPolicy:                corev1.RestartPolicyNever,
			AutomountServiceAccountToken: new(false),
			Affinity: &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
				RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
					MatchFields: []corev1.NodeSelectorRequirement{{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{node}}},
				}}},
			}},
			Containers: []corev1.Container{{Name: "main", Image: "shell", Args: []string{script}}},
		},
	}
}

// waitPod polls the pod until cond holds.
func waitPod(t *testing.T, ctx context.Context, c k8s.Interface, ns, name, what string, cond func(*corev1.Pod, error) bool) *corev1.Pod {
	t.Helper()
	for {
		p, err := c.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if cond(p, err) {
			return p
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for pod %s/%s to be %s: last %+v, %v", ns, name, what, p.Status, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func TestNodeRunsPodWithSecretAndDeletesIt(t *testing.T) {
	ctx, c, node, ns := setup(t, "node-a")
	p := pod(ns, "reader", node.Name(), `cat "$SECRET_FILE"; echo; echo ready; trap 'echo bye; exit 0' TERM; while :; do sleep 0.1; done`)
	p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "SECRET_FILE", Value: "/var/run/test/key"}}
	p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "s", MountPath: "/var/run/test", ReadOnly: true}}
	p.Spec.Volumes = []corev1.Volume{{Name: "s", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "later"}}}}
	grace := int64(10)
	p.Spec.TerminationGracePeriodSeconds = &grace
	// The pod first: the node waits for its Secret, as a kubelet does.
	if _, err := c.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitPod(t, ctx, c, ns, "reader", "waiting for its secret", func(p *corev1.Pod, err error) bool {
		return err == nil && len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].State.Waiting != nil
	})
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "later", Namespace: ns}, Data: map[string][]byte{"key": []byte("s3cr3t")}}
	if _, err := c.CoreV1().Secrets(ns).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	running := waitPod(t, ctx, c, ns, "reader", "running", func(p *corev1.Pod, err error) bool {
		return err == nil && p.Status.Phase == corev1.PodRunning
	})
	if running.Spec.NodeName != node.Name() || running.Status.PodIP != "127.0.0.1" {
		t.Errorf("running pod: node %q, IP %q; want %q and 127.0.0.1", running.Spec.NodeName, running.Status.PodIP, node.Name())
	}
	// The log comes through the API server from the node's log server.
	var logs string
	for !strings.Contains(logs, "ready") {
		b, err := c.CoreV1().Pods(ns).GetLogs("reader", &corev1.PodLogOptions{Container: "main"}).DoRaw(ctx)
		if err != nil {
			t.Fatalf("logs: %v", err)
		}
		logs = string(b)
	}
	if !strings.HasPrefix(logs, "s3cr3t\n") {
		t.Errorf("the container read %q from its secret file, want s3cr3t", logs)
	}
	if err := c.CoreV1().Pods(ns).Delete(ctx, "reader", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitPod(t, ctx, c, ns, "reader", "gone", func(_ *corev1.Pod, err error) bool { return apierrors.IsNotFound(err) })
	if n := node.Processes(); n != 0 {
		t.Errorf("%d processes still running after the pod was deleted", n)
	}
}

func TestNodeReportsExitAndMissingImage(t *testing.T) {
	ctx, c, node, ns := setup(t, "node-b")
	if _, err := c.CoreV1().Pods(ns).Create(ctx, pod(ns, "fails", node.Name(), "exit 3"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	failed := waitPod(t, ctx, c, ns, "fails", "failed", func(p *corev1.Pod, err error) bool {
		return err == nil && p.Status.Phase == corev1.PodFailed
	})
	if cs := failed.Status.ContainerStatuses; len(cs) != 1 || cs[0].State.Terminated == nil || cs[0].State.Terminated.ExitCode != 3 {
		t.Errorf("container status %+v, want terminated with exit code 3", cs)
	}

	nopull := pod(ns, "nopull", node.Name(), "true")
	nopull.Spec.Containers[0].Image = "registry.example/absent:1"
	if _, err := c.CoreV1().Pods(ns).Create(ctx, nopull, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitPod(t, ctx, c, ns, "nopull", "waiting for its image", func(p *corev1.Pod, err error) bool {
		return err == nil && len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].State.Waiting != nil &&
			p.Status.ContainerStatuses[0].State.Waiting.Reason == "ErrImagePull"
	})

	// A pod for another node is not this node's to bind.
	if _, err := c.CoreV1().Pods(ns).Create(ctx, pod(ns, "elsewhere", "node-z", "true"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CoreV1().Pods(ns).Create(ctx, pod(ns, "here", node.Name(), "exit 0"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitPod(t, ctx, c, ns, "here", "succeeded", func(p *corev1.Pod, err error) bool {
		return err == nil && p.Status.Phase == corev1.PodSucceeded
	})
	if p, err := c.CoreV1().Pods(ns).Get(ctx, "elsewhere", metav1.GetOptions{}); err != nil || p.Spec.NodeName != "" {
		t.Errorf("pod for node-z: bound to %q (%v), want unbound", p.Spec.NodeName, err)
	}
}

func TestAPIServerRestarts(t *testing.T) {
	ctx, c, node, ns := setup(t, "node-c")
	cp := kubetest.Shared(t)
	cp.StopAPIServer()
	if _, err := c.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err == nil {
		t.Fatal("the API server answered while stopped")
	}
	if err := cp.StartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	// The node's watches resume: it still runs new pods.
	if _, err := c.CoreV1().Pods(ns).Create(ctx, pod(ns, "after", node.Name(), "exit 0"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitPod(t, ctx, c, ns, "after", "succeeded", func(p *corev1.Pod, err error) bool {
		return err == nil && p.Status.Phase == corev1.PodSucceeded
	})
}
