package kubernetes_test

import (
	"context"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/internal/chantls"
	"github.com/spear-go/spear/sdk"
)

// kubelet stands in for the kubelets of a cluster made of client-go's fake
// clientset. For each new pod it "mounts" the pod's secret volume by
// writing the Secret to a file, and runs the pod's container as an
// in-process sdk instance configured from the pod's environment and that
// file; then it reports the pod Running and Ready. A deleted pod's
// container is stopped.
type kubelet struct {
	t      *testing.T
	client *fake.Clientset
	dir    string
	// broken, when it returns a non-empty message for a pod, makes the
	// pod's container exit with it instead of starting.
	broken func(*corev1.Pod) string
	// pending, when it returns true for a pod, leaves it Pending with
	// its image not pulled.
	pending func(*corev1.Pod) bool

	wg         sync.WaitGroup // the watch loop and the containers
	mu         sync.Mutex     // guards containers
	containers map[string]*container
}

type container struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// startKubelet runs a kubelet until the test ends.
func startKubelet(t *testing.T, client *fake.Clientset, configure func(*kubelet)) *kubelet {
	t.Helper()
	k := &kubelet{t: t, client: client, dir: t.TempDir(), containers: map[string]*container{}}
	if configure != nil {
		configure(k)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w, err := client.CoreV1().Pods(metav1.NamespaceAll).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	k.wg.Add(1)
	go k.run(ctx, w)
	t.Cleanup(func() {
		cancel()
		k.mu.Lock()
		for _, c := range k.containers {
			c.cancel()
		}
		k.mu.Unlock()
		k.wg.Wait()
	})
	return k
}

func (k *kubelet) run(ctx context.Context, w watch.Interface) {
	defer k.wg.Done()
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.ResultChan():
			if !ok {
				return
			}
			pod, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			switch ev.Type {
			case watch.Added:
				k.startPod(ctx, pod)
			case watch.Deleted:
				k.stopContainer(pod.Namespace + "/" + pod.Name)
			}
		}
	}
}

func (k *kubelet) startPod(ctx context.Context, pod *corev1.Pod) {
	if len(pod.Spec.Containers) == 0 {
		return // not runnable; a test's placeholder
	}
	if k.pending != nil && k.pending(pod) {
		k.setStatus(ctx, pod.Namespace, pod.Name, func(s *corev1.PodStatus) {
			s.Phase = corev1.PodPending
			s.ContainerStatuses = []corev1.ContainerStatus{{Name: pod.Spec.Containers[0].Name,
				State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImagePull"}}}}
		})
		return
	}
	if msg := k.brokenMessage(pod); msg != "" {
		k.exit(ctx, pod.Namespace, pod.Name, 1, "Error", msg)
		return
	}
	opts, err := k.mount(ctx, pod)
	if err != nil {
		k.exit(ctx, pod.Namespace, pod.Name, 1, "ContainerCannotRun", err.Error())
		return
	}
	name := pod.Name
	opts.Handler = sdk.HandlerFunc(func(ctx context.Context, r *sdk.Request) ([]byte, error) {
		return []byte(name + ":" + string(r.Payload)), nil
	})
	in, err := sdk.New(opts)
	if err != nil {
		k.exit(ctx, pod.Namespace, pod.Name, 1, "ContainerCannotRun", err.Error())
		return
	}
	cctx, cancel := context.WithCancel(ctx)
	c := &container{cancel: cancel, done: make(chan struct{})}
	k.mu.Lock()
	k.containers[pod.Namespace+"/"+pod.Name] = c
	k.mu.Unlock()
	k.wg.Add(1)
	go func() {
		defer k.wg.Done()
		defer close(c.done)
		_ = in.Serve(cctx)
	}()
	k.setStatus(ctx, pod.Namespace, pod.Name, func(s *corev1.PodStatus) {
		s.Phase = corev1.PodRunning
		s.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
		s.ContainerStatuses = []corev1.ContainerStatus{{Name: pod.Spec.Containers[0].Name, Ready: true,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}
	})
}

func (k *kubelet) brokenMessage(pod *corev1.Pod) string {
	if k.broken == nil {
		return ""
	}
	return k.broken(pod)
}

// mount writes the pod's secret volume to a directory and reads the
// container's connection settings from its environment and that volume,
// as the sdk's FromEnv would inside the pod.
func (k *kubelet) mount(ctx context.Context, pod *corev1.Pod) (sdk.Options, error) {
	c := pod.Spec.Containers[0]
	root := filepath.Join(k.dir, pod.Namespace, pod.Name)
	for _, vm := range c.VolumeMounts {
		for _, v := range pod.Spec.Volumes {
			if v.Name != vm.Name || v.Secret == nil {
				continue
			}
			s, err := k.secret(ctx, pod.Namespace, v.Secret.SecretName)
			if err != nil {
				return sdk.Options{}, err
			}
			for _, item := range v.Secret.Items {
				path := filepath.Join(root, vm.MountPath, item.Path)
				if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
					return sdk.Options{}, err
				}
				if err := os.WriteFile(path, s.Data[item.Key], 0o400); err != nil {
					return sdk.Options{}, err
				}
			}
		}
	}
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	id, err := spear.ParseInstanceID(env[spear.EnvInstanceID])
	if err != nil {
		return sdk.Options{}, err
	}
	raw, err := os.ReadFile(filepath.Join(root, env[spear.EnvSecretFile]))
	if err != nil {
		return sdk.Options{}, err
	}
	secret, err := hex.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil {
		return sdk.Options{}, err
	}
	tlsCfg, err := chantls.FromEnv(func(k string) string { return env[k] }).ClientConfig(secret, env[spear.EnvAddress])
	if err != nil {
		return sdk.Options{}, err
	}
	return sdk.Options{ID: id, Secret: secret, Channel: env[spear.EnvChannel], Address: env[spear.EnvAddress], TLS: tlsCfg}, nil
}

// secret gets a Secret, waiting for it as a kubelet does: the runtime
// creates it after the pod.
func (k *kubelet) secret(ctx context.Context, ns, name string) (*corev1.Secret, error) {
	for {
		s, err := k.client.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
		if !apierrors.IsNotFound(err) {
			return s, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// fail makes a running pod's container exit with reason.
func (k *kubelet) fail(ctx context.Context, ns, name, reason string) {
	k.stopContainer(ns + "/" + name)
	k.exit(ctx, ns, name, 137, reason, "")
}

func (k *kubelet) exit(ctx context.Context, ns, name string, code int32, reason, msg string) {
	k.setStatus(ctx, ns, name, func(s *corev1.PodStatus) {
		s.Phase = corev1.PodFailed
		s.ContainerStatuses = []corev1.ContainerStatus{{Name: "function", State: corev1.ContainerState{
			Terminated: &corev1.ContainerStateTerminated{ExitCode: code, Reason: reason, Message: msg}}}}
	})
}

func (k *kubelet) stopContainer(key string) {
	k.mu.Lock()
	c := k.containers[key]
	delete(k.containers, key)
	k.mu.Unlock()
	if c != nil {
		c.cancel()
		<-c.done
	}
}

func (k *kubelet) setStatus(ctx context.Context, ns, name string, set func(*corev1.PodStatus)) {
	pods := k.client.CoreV1().Pods(ns)
	pod, err := pods.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return // deleted meanwhile
	}
	set(&pod.Status)
	if _, err := pods.UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil && ctx.Err() == nil {
		k.t.Logf("kubelet: update status of %s/%s: %v", ns, name, err)
	}
}
