package kubernetes_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	k8s "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/channel"
	"github.com/spear-go/spear/internal/chantls"
	"github.com/spear-go/spear/internal/kubetest"
	"github.com/spear-go/spear/internal/statedir"
	"github.com/spear-go/spear/runtime"
	"github.com/spear-go/spear/runtime/kubernetes"
	"github.com/spear-go/spear/runtime/process"
)

// TestMain runs the tests, or, in a pod of the Kubernetes tier (see
// cluster_test.go), the test function.
func TestMain(m *testing.M) {
	if os.Getenv(envTestFunction) != "" {
		runTestFunction()
		return
	}
	os.Exit(kubetest.RunTests(m))
}

// testTimeout bounds every wait: generous, for a loaded machine.
const testTimeout = 60 * time.Second

// syncBuffer is a bytes.Buffer safe for the logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type env struct {
	client  *fake.Clientset
	factory *channel.Factory
	rt      *kubernetes.Runtime
	kubelet *kubelet
	logs    *syncBuffer
	ctx     context.Context
}

func setup(t *testing.T, configure func(*kubelet)) *env {
	t.Helper()
	return setupWith(t, channel.Options{}, configure)
}

// setupWith is setup with the factory's options.
func setupWith(t *testing.T, opts channel.Options, configure func(*kubelet)) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs:\n%s", logs)
		}
	})
	opts.Logger = log
	f, err := channel.NewFactory(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	client := newFakeClient()
	rt, err := kubernetes.New(kubernetes.Options{Factory: f, Client: client, Namespace: "functions", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := rt.Close(context.Background()); err != nil {
			t.Errorf("close runtime: %v", err)
		}
	})
	k := startKubelet(t, client, configure)
	return &env{client: client, factory: f, rt: rt, kubelet: k, logs: logs, ctx: ctx}
}

// newFakeClient returns a fake clientset whose access reviews allow
// everything (the fake's own answer, the request echoed, denies).
func newFakeClient() *fake.Clientset {
	c := fake.NewClientset()
	c.PrependReactor("create", "selfsubjectaccessreviews", func(action k8stesting.Action) (bool, kruntime.Object, error) {
		r := action.(k8stesting.CreateAction).GetObject().(*authorizationv1.SelfSubjectAccessReview).DeepCopy()
		r.Status.Allowed = true
		return true, r, nil
	})
	return c
}

func instanceID(t *testing.T, name string) spear.InstanceID {
	t.Helper()
	id, err := spear.NewInstanceID(spear.Kubernetes, name)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// podSpec is what Start takes, in one value for the tests to adjust.
type podSpec struct {
	runtime.Settings
	kubernetes.Spec
}

func spec() podSpec {
	return podSpec{
		Settings: runtime.Settings{Function: "echo", StartTimeout: testTimeout, StopGrace: time.Second},
		Spec: kubernetes.Spec{
			Image:  "registry.example/echo:1",
			Labels: map[string]string{"team": "blue"},
			CPU:    "250m",
			Memory: "64Mi",
			Env:    runtime.Env{"GREETING": "hello"},
		},
	}
}

// start starts an instance of s.
func (e *env) start(id spear.InstanceID, s podSpec) (runtime.Instance, error) {
	return startSpec(e.ctx, e.rt, id, s)
}

// startSpec starts s as id on rt.
func startSpec(ctx context.Context, rt *kubernetes.Runtime, id spear.InstanceID, s podSpec) (runtime.Instance, error) {
	return rt.Start(ctx, id, s.Settings, s.Spec)
}

// assertNothingLeft checks that no pod, Secret or channel of id remains.
func (e *env) assertNothingLeft(t *testing.T, id spear.InstanceID) {
	t.Helper()
	if _, err := e.client.CoreV1().Pods("functions").Get(e.ctx, id.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("pod %s: got err %v, want not found", id.Name, err)
	}
	if _, err := e.client.CoreV1().Secrets("functions").Get(e.ctx, id.Name+"-secret", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("secret of %s: got err %v, want not found", id.Name, err)
	}
	if _, ok := e.factory.Get(id); ok {
		t.Errorf("the factory still has a channel for %s", id)
	}
}

// With TLS on the agent's channels, the pod is told how to check the
// agent and, in mutual mode, its certificate, all in plain variables (none
// of it is secret); the instance connects over TLS.
func TestStartOverMutualTLS(t *testing.T) {
	state, err := statedir.Open(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	defer state.Close()
	tlsAgent, err := chantls.Load(state, chantls.Config{Mode: chantls.Mutual})
	if err != nil {
		t.Fatal(err)
	}
	e := setupWith(t, channel.Options{TLS: tlsAgent}, nil)
	id := instanceID(t, "echo-tls")
	inst, err := e.start(id, spec())
	if err != nil {
		t.Fatal(err)
	}
	cr := inst.Channel().Credentials()
	pod, err := e.client.CoreV1().Pods("functions").Get(e.ctx, id.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, v := range pod.Spec.Containers[0].Env {
		env[v.Name] = v.Value
	}
	if env[spear.EnvTLSPin] != tlsAgent.Pin() || env[spear.EnvTLSCert] != string(cr.TLS.Cert) || env[spear.EnvTLSCert] == "" {
		t.Errorf("pod's TLS env: pin %q cert %d bytes", env[spear.EnvTLSPin], len(env[spear.EnvTLSCert]))
	}
	if strings.Contains(fmt.Sprint(pod.Spec), "PRIVATE KEY") {
		t.Error("a private key is in the pod's spec")
	}
	out, err := channel.Execute(e.ctx, inst.Channel(), channel.Invocation{Payload: []byte("ping")})
	if err != nil || string(out) != "echo-tls:ping" {
		t.Fatalf("execute over TLS: %q, %v", out, err)
	}
	if err := e.rt.Stop(e.ctx, inst); err != nil {
		t.Fatal(err)
	}
	// The variables are the runtime's: a function may not set them.
	s := spec()
	s.Env = runtime.Env{spear.EnvTLSPin: "00"}
	if _, err := e.start(instanceID(t, "echo-tls2"), s); !errors.Is(err, spear.ErrInvalidConfig) {
		t.Errorf("a spec setting %s: %v, want ErrInvalidConfig", spear.EnvTLSPin, err)
	}
}

func TestStartInvokeStop(t *testing.T) {
	e := setup(t, nil)
	id := instanceID(t, "echo-1")
	inst, err := e.start(id, spec())
	if err != nil {
		t.Fatal(err)
	}
	ch := inst.Channel()
	cr := ch.Credentials()
	hexSecret := hex.EncodeToString(cr.Secret)
	if cr.Type != channel.GRPC {
		t.Errorf("channel type %s, want grpc (the kubernetes strategy's first)", cr.Type)
	}
	if got := inst.Info(); got.Status != runtime.StatusRunning || got.Function != "echo" || got.ID != id {
		t.Errorf("info after start: %+v", got)
	}

	pod, err := e.client.CoreV1().Pods("functions").Get(e.ctx, "echo-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkPod(t, pod, cr, hexSecret)

	secret, err := e.client.CoreV1().Secrets("functions").Get(e.ctx, "echo-1-secret", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := string(secret.Data[kubernetes.SecretKey]); got != hexSecret {
		t.Errorf("secret object holds %d bytes that are not the channel's secret", len(got))
	}
	if secret.Type != corev1.SecretTypeOpaque || secret.Labels[kubernetes.LabelInstance] != "echo-1" {
		t.Errorf("secret type %q labels %v", secret.Type, secret.Labels)
	}
	if refs := secret.OwnerReferences; len(refs) != 1 || refs[0].Kind != "Pod" || refs[0].Name != "echo-1" {
		t.Errorf("secret owner references %+v, want the pod", refs)
	}

	out, err := channel.Execute(e.ctx, ch, channel.Invocation{Payload: []byte("ping")})
	if err != nil || string(out) != "echo-1:ping" {
		t.Fatalf("execute: %q, %v; want the stand-in's answer", out, err)
	}

	if err := e.rt.Stop(e.ctx, inst); err != nil {
		t.Fatal(err)
	}
	select {
	case <-inst.Done():
	default:
		t.Error("Done not closed after Stop")
	}
	if got := inst.Info(); got.Status != runtime.StatusStopped || got.Reason == "" {
		t.Errorf("info after stop: %+v", got)
	}
	if err := ch.WaitConnected(e.ctx); !errors.Is(err, spear.ErrChannelClosed) {
		t.Errorf("channel after stop: %v, want closed", err)
	}
	e.assertNothingLeft(t, id)
	if err := e.rt.Stop(e.ctx, inst); err != nil {
		t.Errorf("second stop: %v", err)
	}
	if strings.Contains(e.logs.String(), hexSecret) {
		t.Error("the secret appears in the logs")
	}
}

func checkPod(t *testing.T, pod *corev1.Pod, cr channel.Credentials, hexSecret string) {
	t.Helper()
	wantLabels := map[string]string{
		kubernetes.LabelInstance:  "echo-1",
		kubernetes.LabelFunction:  "echo",
		kubernetes.LabelManagedBy: "spearlet",
		"team":                    "blue",
	}
	for k, v := range wantLabels {
		if pod.Labels[k] != v {
			t.Errorf("pod label %s=%q, want %q", k, pod.Labels[k], v)
		}
	}
	if pod.Spec.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("restart policy %q", pod.Spec.RestartPolicy)
	}
	if g := pod.Spec.TerminationGracePeriodSeconds; g == nil || *g != 1 {
		t.Errorf("termination grace %v, want 1s from StopGrace", g)
	}
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("%d containers", len(pod.Spec.Containers))
	}
	c := pod.Spec.Containers[0]
	if c.Image != "registry.example/echo:1" {
		t.Errorf("image %q", c.Image)
	}
	for _, r := range []corev1.ResourceList{c.Resources.Requests, c.Resources.Limits} {
		if q := r[corev1.ResourceCPU]; q.Cmp(resource.MustParse("250m")) != 0 {
			t.Errorf("cpu %s, want 250m", q.String())
		}
		if q := r[corev1.ResourceMemory]; q.Cmp(resource.MustParse("64Mi")) != 0 {
			t.Errorf("memory %s, want 64Mi", q.String())
		}
	}
	env := map[string]string{}
	for _, v := range c.Env {
		env[v.Name] = v.Value
		if strings.Contains(v.Value, hexSecret) || v.ValueFrom != nil {
			t.Errorf("env %s carries the secret or a reference to it", v.Name)
		}
	}
	want := map[string]string{
		spear.EnvInstanceID: cr.ID.String(),
		spear.EnvChannel:    string(cr.Type),
		spear.EnvAddress:    cr.Address,
		spear.EnvSecretFile: kubernetes.SecretMountPath + "/" + kubernetes.SecretKey,
		"GREETING":          "hello",
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("env %s=%q, want %q", k, env[k], v)
		}
	}
	if _, ok := env[spear.EnvSecret]; ok {
		t.Errorf("env has %s", spear.EnvSecret)
	}
	var vol *corev1.Volume
	for n := range pod.Spec.Volumes {
		if v := &pod.Spec.Volumes[n]; v.Secret != nil && v.Secret.SecretName == "echo-1-secret" {
			vol = v
		}
	}
	if vol == nil {
		t.Fatalf("no volume of the instance's secret in %+v", pod.Spec.Volumes)
	}
	mounted := false
	for _, m := range c.VolumeMounts {
		mounted = mounted || m.Name == vol.Name && m.ReadOnly && m.MountPath == kubernetes.SecretMountPath
	}
	if !mounted {
		t.Errorf("secret volume not mounted read-only at %s: %+v", kubernetes.SecretMountPath, c.VolumeMounts)
	}
}

func TestPodFailsBeforeConnecting(t *testing.T) {
	e := setup(t, func(k *kubelet) {
		k.broken = func(*corev1.Pod) string { return "config file missing" }
	})
	id := instanceID(t, "broken")
	inst, err := e.start(id, spec())
	if err == nil {
		e.rt.Stop(e.ctx, inst)
		t.Fatal("Start succeeded for a pod that failed")
	}
	if !errors.Is(err, spear.ErrConnectionFailed) || !strings.Contains(err.Error(), "config file missing") {
		t.Errorf("got %v, want a connection failure with the pod's reason", err)
	}
	e.assertNothingLeft(t, id)
}

func TestPodPendingTimesOut(t *testing.T) {
	e := setup(t, func(k *kubelet) {
		k.pending = func(*corev1.Pod) bool { return true }
	})
	id := instanceID(t, "never-pulled")
	s := spec()
	s.StartTimeout = 100 * time.Millisecond // nothing will ever connect
	_, err := e.start(id, s)
	if !errors.Is(err, spear.ErrTimeout) {
		t.Errorf("got %v, want a timeout", err)
	}
	e.assertNothingLeft(t, id)
}

func TestPodFailsAfterStart(t *testing.T) {
	e := setup(t, nil)
	id := instanceID(t, "oom")
	inst, err := e.start(id, spec())
	if err != nil {
		t.Fatal(err)
	}
	e.kubelet.fail(e.ctx, "functions", "oom", "OOMKilled")
	select {
	case <-inst.Done():
	case <-e.ctx.Done():
		t.Fatal("Done not closed after the pod failed")
	}
	info := inst.Info()
	if info.Status != runtime.StatusStopped || !strings.Contains(info.Reason, "OOMKilled") {
		t.Errorf("info %+v, want stopped with the pod's reason", info)
	}
	if err := inst.Channel().WaitConnected(e.ctx); !errors.Is(err, spear.ErrChannelClosed) {
		t.Errorf("channel: %v, want closed", err)
	}
	e.assertNothingLeft(t, id)
	// The fake API server answers every log request with "fake logs".
	if got := inst.Logs(5); !slices.Equal(got, []string{"fake logs"}) {
		t.Errorf("logs kept after the pod went: %q", got)
	}
	if err := e.rt.Stop(e.ctx, inst); err != nil {
		t.Errorf("stop after the pod failed: %v", err)
	}
}

func TestPodDeletedFromOutside(t *testing.T) {
	e := setup(t, nil)
	id := instanceID(t, "evicted")
	stopsWhenPodDeleted(t, e.ctx, e.client, e.rt, id, spec(), "functions")
	e.assertNothingLeft(t, id)
}

// stopsWhenPodDeleted starts id, deletes its pod as someone else would
// (eviction, kubectl delete), and checks that the instance stops, saying
// why.
func stopsWhenPodDeleted(t *testing.T, ctx context.Context, client k8s.Interface, rt *kubernetes.Runtime, id spear.InstanceID, s podSpec, ns string) {
	t.Helper()
	inst, err := startSpec(ctx, rt, id, s)
	if err != nil {
		t.Fatal(err)
	}
	if err := client.CoreV1().Pods(ns).Delete(ctx, id.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-inst.Done():
	case <-ctx.Done():
		t.Fatal("the instance did not stop when its pod was deleted")
	}
	if info := inst.Info(); info.Status != runtime.StatusStopped || !strings.Contains(info.Reason, "pod deleted") {
		t.Errorf("info %+v, want stopped because the pod was deleted", info)
	}
}

func TestInvalidSpec(t *testing.T) {
	e := setup(t, nil)
	tests := []struct {
		name string
		edit func(*podSpec)
	}{
		{"cpu", func(s *podSpec) { s.CPU = "lots" }},
		{"negative memory", func(s *podSpec) { s.Memory = "-1Gi" }},
		{"no image", func(s *podSpec) { s.Image = "" }},
		{"reserved label", func(s *podSpec) { s.Labels = map[string]string{kubernetes.LabelInstance: "x"} }},
		{"bad label value", func(s *podSpec) { s.Labels = map[string]string{"a": "not ok!"} }},
		{"reserved env", func(s *podSpec) { s.Env = runtime.Env{spear.EnvAddress: "elsewhere:1"} }},
		{"malformed env", func(s *podSpec) { s.Env = runtime.Env{"NO=VALUE": ""} }},
		{"namespace", func(s *podSpec) { s.Namespace = "Not_A_Namespace" }},
		{"negative grace", func(s *podSpec) { s.StopGrace = -time.Second }},
		{"another runtime's spec", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := spec()
			id := instanceID(t, "invalid")
			var err error
			if tt.edit != nil {
				tt.edit(&s)
				_, err = e.start(id, s)
			} else {
				_, err = e.rt.Start(e.ctx, id, s.Settings, process.Spec{Command: "x"})
			}
			if !errors.Is(err, spear.ErrInvalidConfig) {
				t.Errorf("got %v, want ErrInvalidConfig", err)
			}
			e.assertNothingLeft(t, id)
		})
	}
}

func TestStartRejectsWrongIDs(t *testing.T) {
	e := setup(t, nil)
	_, err := e.start(spear.InstanceID{Runtime: spear.Process, Name: "p"}, spec())
	if !errors.Is(err, spear.ErrUnsupportedRuntime) {
		t.Errorf("process id: got %v, want ErrUnsupportedRuntime", err)
	}
	nsID := spear.InstanceID{Runtime: spear.Kubernetes, Namespace: "tenant-a", Name: "x"}
	s := spec()
	s.Namespace = "functions"
	if _, err := e.start(nsID, s); !errors.Is(err, spear.ErrInvalidConfig) {
		t.Errorf("id namespace differing from spec namespace: got %v, want ErrInvalidConfig", err)
	}

	id := instanceID(t, "twice")
	inst, err := e.start(id, spec())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.start(id, spec()); !errors.Is(err, runtime.ErrExists) || !errors.Is(err, spear.ErrInvalidInstanceID) {
		t.Errorf("second start: got %v, want runtime.ErrExists (an invalid id)", err)
	}
	if out, err := channel.Execute(e.ctx, inst.Channel(), channel.Invocation{Payload: []byte("still")}); err != nil || string(out) != "twice:still" {
		t.Errorf("first instance after the refused start: %q, %v", out, err)
	}
	if err := e.rt.Stop(e.ctx, inst); err != nil {
		t.Fatal(err)
	}
}

func TestIDNamespaceIsKubernetesNamespace(t *testing.T) {
	e := setup(t, nil)
	id := spear.InstanceID{Runtime: spear.Kubernetes, Namespace: "team-b", Name: "ns-echo"}
	inst, err := e.start(id, spec())
	if err != nil {
		t.Fatal(err)
	}
	pod, err := e.client.CoreV1().Pods("team-b").Get(e.ctx, "ns-echo", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("pod not in the id's namespace: %v", err)
	}
	if pod.Annotations[kubernetes.AnnotationInstanceID] != id.String() {
		t.Errorf("annotations %v", pod.Annotations)
	}
	if err := e.rt.Stop(e.ctx, inst); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.CoreV1().Pods("team-b").Get(e.ctx, "ns-echo", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("pod after stop: %v", err)
	}
}

func TestPodNameTakenLeavesItAlone(t *testing.T) {
	e := setup(t, nil)
	other := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "taken", Namespace: "functions"}}
	if _, err := e.client.CoreV1().Pods("functions").Create(e.ctx, other, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	id := instanceID(t, "taken")
	_, err := e.start(id, spec())
	if !errors.Is(err, kubernetes.ErrAPI) || !apierrors.IsAlreadyExists(err) || !errors.Is(err, spear.ErrInvalidInstanceID) {
		t.Errorf("got %v, want an already-exists API error that says the name is taken", err)
	}
	if _, err := e.client.CoreV1().Pods("functions").Get(e.ctx, "taken", metav1.GetOptions{}); err != nil {
		t.Errorf("the other pod was touched: %v", err)
	}
	if _, err := e.client.CoreV1().Secrets("functions").Get(e.ctx, "taken-secret", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("secret left behind: %v", err)
	}
}

func TestCloseStopsAll(t *testing.T) {
	e := setup(t, nil)
	var insts []runtime.Instance
	for _, name := range []string{"a", "b"} {
		inst, err := e.start(instanceID(t, name), spec())
		if err != nil {
			t.Fatal(err)
		}
		insts = append(insts, inst)
	}
	if err := e.rt.Close(e.ctx); err != nil {
		t.Fatal(err)
	}
	for _, inst := range insts {
		select {
		case <-inst.Done():
		default:
			t.Errorf("%s not stopped by Close", inst.ID())
		}
		e.assertNothingLeft(t, inst.ID())
	}
	if _, err := e.start(instanceID(t, "late"), spec()); !errors.Is(err, runtime.ErrClosed) {
		t.Errorf("Start after Close: %v, want runtime.ErrClosed", err)
	}
}

func TestNewNeedsFactoryAndClient(t *testing.T) {
	if _, err := kubernetes.New(kubernetes.Options{Client: fake.NewClientset()}); !errors.Is(err, spear.ErrInvalidConfig) {
		t.Errorf("no factory: %v", err)
	}
}

func TestCloseDuringStart(t *testing.T) {
	scheduled := make(chan struct{})
	e := setup(t, func(k *kubelet) {
		k.pending = func(*corev1.Pod) bool {
			close(scheduled)
			return true
		}
	})
	id := instanceID(t, "interrupted")
	errc := make(chan error, 1)
	go func() {
		_, err := e.start(id, spec())
		errc <- err
	}()
	select {
	case <-scheduled:
	case <-e.ctx.Done():
		t.Fatal("the pod was never created")
	}
	if err := e.rt.Close(e.ctx); err != nil {
		t.Fatal(err)
	}
	// Close waits for the Starts it interrupts: their cleanup is done.
	e.assertNothingLeft(t, id)
	select {
	case err := <-errc:
		if !errors.Is(err, runtime.ErrClosed) && !errors.Is(err, spear.ErrChannelClosed) {
			t.Errorf("Start interrupted by Close: %v", err)
		}
	case <-e.ctx.Done():
		t.Fatal("Start did not return")
	}
}

// With a node name, pods are pinned to the node by affinity and labelled
// with it; a name too long for a label value is labelled by its hash.
func TestNodeNamePinsAndLabelsPods(t *testing.T) {
	long := strings.Repeat("n", 70) + ".example.com"
	for _, node := range []string{"node-1", long} {
		e := setup(t, nil)
		f, err := channel.NewFactory(channel.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		rt, err := kubernetes.New(kubernetes.Options{Factory: f, Client: e.client, Namespace: "functions", NodeName: node})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := startSpec(e.ctx, rt, instanceID(t, "pinned"), spec()); err != nil {
			t.Fatal(err)
		}
		pod, err := e.client.CoreV1().Pods("functions").Get(e.ctx, "pinned", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		terms := pod.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
		if len(terms) != 1 || len(terms[0].MatchFields) != 1 || !slices.Equal(terms[0].MatchFields[0].Values, []string{node}) ||
			terms[0].MatchFields[0].Key != "metadata.name" {
			t.Errorf("node affinity %+v, want metadata.name in [%s]", terms, node)
		}
		label := pod.Labels[kubernetes.LabelNode]
		if (node == long) != strings.HasPrefix(label, "sha256-") || len(label) > 63 || (node != long && label != node) {
			t.Errorf("node label %q for node %q", label, node)
		}
		if pod.Annotations[kubernetes.AnnotationNode] != node {
			t.Errorf("node annotation %q, want %q", pod.Annotations[kubernetes.AnnotationNode], node)
		}
		if err := rt.Close(e.ctx); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := kubernetes.New(kubernetes.Options{Factory: &channel.Factory{}, Client: newFakeClient(), NodeName: "Not A Node"}); !errors.Is(err, spear.ErrInvalidConfig) {
		t.Errorf("invalid node name: %v, want ErrInvalidConfig", err)
	}
}
