package kubernetes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	k8s "k8s.io/client-go/kubernetes"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/channel"
	"github.com/spear-go/spear/runtime"
)

// Defaults for the zero fields of runtime.Settings and Options.
const (
	// DefaultStartTimeout bounds pod creation to authenticated connection:
	// long enough to schedule a pod and pull its image on a real cluster.
	DefaultStartTimeout = 2 * time.Minute
	// DefaultStopGrace is the pod's termination grace period.
	DefaultStopGrace = 5 * time.Second
	// DefaultNamespace is the namespace of pods whose spec and id name none.
	DefaultNamespace = "default"
)

const (
	// signalTimeout bounds the terminate signal Stop sends first.
	signalTimeout = 2 * time.Second
	// cleanupTimeout bounds the deletions after a failed start or a pod
	// that ended on its own, which run without a caller's context.
	cleanupTimeout = 30 * time.Second
	// forceAfter is how long past the grace period Stop waits for a pod
	// to go before deleting it with no grace (its node may be down).
	forceAfter = 30 * time.Second
)

// ErrAPI matches errors from the Kubernetes API server. It matches
// spear.ErrTransport, and such errors also unwrap to the client-go error,
// so k8s.io/apimachinery/pkg/api/errors.IsAlreadyExists and friends work.
var ErrAPI = fmt.Errorf("%w: kubernetes api request failed", spear.ErrTransport)

func apiErr(op string, err error) error { return fmt.Errorf("%w: %s: %w", ErrAPI, op, err) }

// Options configure a Runtime.
type Options struct {
	// Factory creates the instances' channels. Required. Its
	// AdvertiseGRPC and AdvertiseTCP must be addresses pods can dial,
	// normally the node's IP and the agent's hostPort.
	Factory *channel.Factory
	// Client talks to the Kubernetes API. Required.
	Client k8s.Interface
	// Namespace is where pods go when neither the spec nor the id names a
	// namespace (default DefaultNamespace).
	Namespace string
	// Logger receives the runtime's logs; nil discards them.
	Logger *slog.Logger
	// ImagePullPolicy is the pods' pull policy; empty leaves it to the
	// cluster's default.
	ImagePullPolicy corev1.PullPolicy
}

// Runtime runs instances as Kubernetes pods. It is safe for concurrent use.
type Runtime struct {
	opts   Options
	log    *slog.Logger
	ctx    context.Context // cancelled by Close: fails Starts in progress
	cancel context.CancelFunc
	wg     sync.WaitGroup // Starts in progress and watchers

	mu        sync.Mutex // guards the fields below
	closed    bool
	instances map[spear.InstanceID]*instance // nil: a Start in progress
}

var _ runtime.Runtime = (*Runtime)(nil)

// New returns a runtime that creates pods through opts.Client. It errors,
// matching spear.ErrInvalidConfig, when Factory or Client is missing.
func New(opts Options) (*Runtime, error) {
	if opts.Factory == nil || opts.Client == nil {
		return nil, fmt.Errorf("%w: kubernetes runtime needs a channel factory and a client", spear.ErrInvalidConfig)
	}
	if opts.Namespace == "" {
		opts.Namespace = DefaultNamespace
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Runtime{
		opts:      opts,
		log:       opts.Logger.With("runtime", spear.Kubernetes.String()),
		instances: map[spear.InstanceID]*instance{},
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	return r, nil
}

// Type returns spear.Kubernetes.
func (r *Runtime) Type() spear.RuntimeType { return spear.Kubernetes }

// Start creates the instance's channel, Secret and pod for spec, a Spec,
// and waits until the pod's container has connected and authenticated. It
// fails when the pod ends first (spear.ErrConnectionFailed, with the pod's
// reason), when set.StartTimeout passes (spear.ErrTimeout), on an invalid
// spec (spear.ErrInvalidConfig), on an id already running
// (runtime.ErrExists), after Close (runtime.ErrClosed) and on API errors
// (ErrAPI); then it deletes whatever it created.
func (r *Runtime) Start(ctx context.Context, id spear.InstanceID, set runtime.Settings, rspec runtime.Spec) (runtime.Instance, error) {
	spec, set, err := runtime.Accept[Spec](id, set, rspec, DefaultStartTimeout, DefaultStopGrace)
	if err != nil {
		return nil, spear.InstanceErr(id, "start", err)
	}
	obj, err := buildObjects(id, set, spec, r.opts)
	if err != nil {
		return nil, spear.InstanceErr(id, "start", err)
	}
	if err := r.reserve(id); err != nil {
		return nil, spear.InstanceErr(id, "start", err)
	}
	defer r.wg.Done()
	inst, err := r.start(ctx, id, set, spec, obj)
	r.mu.Lock()
	closed := r.closed
	if err != nil || closed {
		delete(r.instances, id)
	} else {
		r.instances[id] = inst
	}
	r.mu.Unlock()
	if err == nil && closed {
		// Close ran while the instance connected, and did not see it.
		_ = inst.stop(ctx)
		err = runtime.ErrClosed
	}
	if err != nil {
		return nil, spear.InstanceErr(id, "start", err)
	}
	return inst, nil
}

// reserve claims id for a Start, and counts the Start in r.wg.
func (r *Runtime) reserve(id spear.InstanceID) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return runtime.ErrClosed
	}
	if _, ok := r.instances[id]; ok {
		return fmt.Errorf("%w: running", runtime.ErrExists)
	}
	r.instances[id] = nil
	r.wg.Add(1)
	return nil
}

func (r *Runtime) start(ctx context.Context, id spear.InstanceID, set runtime.Settings, spec Spec, obj *objects) (*instance, error) {
	ch, err := r.opts.Factory.Create(ctx, id, set.Channel)
	if err != nil {
		return nil, err
	}
	obj.connect(ch.Credentials())
	i := newInstance(r, id, set, obj, ch)

	// The Secret goes first so that the kubelet can mount it at once.
	core := r.opts.Client.CoreV1()
	if _, err := core.Secrets(i.ns).Create(ctx, obj.secret, metav1.CreateOptions{}); err != nil {
		ch.Close()
		return nil, apiErr("create secret "+i.ns+"/"+i.secretName, err)
	}
	pod, err := core.Pods(i.ns).Create(ctx, obj.pod, metav1.CreateOptions{})
	if err != nil {
		// Not teardown: the pod may be someone else's (AlreadyExists).
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		if derr := core.Secrets(i.ns).Delete(cctx, i.secretName, metav1.DeleteOptions{}); derr != nil {
			i.log.Warn("secret left behind", "secret", i.secretName, "err", derr)
		}
		ch.Close()
		return nil, apiErr("create pod "+i.ns+"/"+i.podName, err)
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		i.watch(pod.ResourceVersion)
	}()
	if err := i.ownSecret(ctx, pod); err != nil {
		i.log.Warn("the secret is not owned by the pod; only Stop deletes it", "err", err)
	}
	i.log.Info("pod created", "namespace", i.ns, "pod", i.podName, "image", spec.Image)

	if err := i.waitConnected(ctx, set.StartTimeout); err != nil {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		i.stopWatch()
		<-i.watchDone
		if terr := i.teardown(cctx, 0); terr != nil {
			i.log.Warn("cleanup after failed start", "err", terr)
		}
		i.finish("start failed: " + err.Error())
		return nil, err
	}
	i.log.Info("instance running")
	return i, nil
}

// ownSecret makes the pod the owner of the instance's Secret, so that the
// garbage collector deletes the Secret with the pod should the agent not.
func (i *instance) ownSecret(ctx context.Context, pod *corev1.Pod) error {
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{
		"ownerReferences": []metav1.OwnerReference{{APIVersion: "v1", Kind: "Pod", Name: pod.Name, UID: pod.UID}},
	}})
	if err != nil {
		return err
	}
	_, err = i.rt.opts.Client.CoreV1().Secrets(i.ns).Patch(ctx, i.secretName, types.MergePatchType, patch, metav1.PatchOptions{})
	if err != nil {
		return apiErr("set the secret's owner", err)
	}
	return nil
}

// Stop stops inst: a terminate signal over its channel, then the pod is
// deleted with its Settings.StopGrace as its grace period, and the Secret with it.
// Stop waits, within ctx, until the pod is gone (forcing its deletion when
// it lingers well past the grace period), and closes the channel. The
// instance is then stopped and forgotten even if a deletion failed; the
// error says so. Stop is idempotent and safe to call concurrently.
func (r *Runtime) Stop(ctx context.Context, inst runtime.Instance) error {
	i, ok := inst.(*instance)
	if !ok || i.rt != r {
		return fmt.Errorf("%w: instance %s is not one of this kubernetes runtime's", spear.ErrUnsupportedRuntime, inst.ID())
	}
	return i.stop(ctx)
}

// Close stops every instance, fails Starts in progress, and waits for the
// runtime's goroutines. It does not close the factory. Idempotent.
func (r *Runtime) Close(ctx context.Context) error {
	r.mu.Lock()
	r.closed = true
	insts := make([]*instance, 0, len(r.instances))
	for _, i := range r.instances {
		if i != nil {
			insts = append(insts, i)
		}
	}
	r.mu.Unlock()
	r.cancel()
	errs := make([]error, len(insts))
	var wg sync.WaitGroup
	for n, i := range insts {
		wg.Go(func() { errs[n] = i.stop(ctx) })
	}
	wg.Wait()
	r.wg.Wait()
	return errors.Join(errs...)
}

func (r *Runtime) forget(i *instance) {
	r.mu.Lock()
	if r.instances[i.id] == i {
		delete(r.instances, i.id)
	}
	r.mu.Unlock()
}
