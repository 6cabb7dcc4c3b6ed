package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
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

// apiErr wraps err, from the request "verb resource namespace/name", in
// ErrAPI. An RBAC denial gets a hint: the server's message names the
// verb and resource, and the fix is in the agent's Role.
func apiErr(verb, resource, namespace, name string, err error) error {
	what := verb + " " + resource
	if ref := strings.Trim(namespace+"/"+name, "/"); ref != "" {
		what += " " + ref
	}
	if apierrors.IsForbidden(err) && strings.Contains(err.Error(), "cannot "+verb) {
		return fmt.Errorf("%w: %s: %w (grant %s on %s in the agent's Role; see deploy/kubernetes/rbac.yaml)", ErrAPI, what, err, verb, resource)
	}
	return fmt.Errorf("%w: %s: %w", ErrAPI, what, err)
}

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
	// NodeName is the node the agent runs on (a DaemonSet hands it in
	// through the downward API as SPEARLET_NODE_NAME). When set, pods are
	// scheduled on that node only, labelled with it (LabelNode), and
	// before its first pod in a namespace the runtime deletes the pods
	// that carry the label there: a previous run's, left by a crash.
	// Agents that share a namespace need distinct node names. Empty: pods
	// go wherever the scheduler puts them, and nothing is reclaimed.
	NodeName string
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
	prepared  map[string]*preparation        // by namespace
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
	if opts.NodeName != "" {
		if errs := validation.IsDNS1123Subdomain(opts.NodeName); len(errs) > 0 {
			return nil, fmt.Errorf("%w: node name %q: %s", spear.ErrInvalidConfig, opts.NodeName, strings.Join(errs, "; "))
		}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Runtime{
		opts:      opts,
		log:       opts.Logger.With("runtime", spear.Kubernetes.String()),
		instances: map[spear.InstanceID]*instance{},
		prepared:  map[string]*preparation{},
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
// (runtime.ErrExists) or a pod name taken (spear.ErrInvalidInstanceID),
// after Close (runtime.ErrClosed) and on API errors (ErrAPI, and a
// *PermissionError when the agent lacks a permission); then it deletes
// whatever it created.
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
	if err := r.prepare(ctx, obj.namespace); err != nil {
		return nil, err
	}
	ch, err := r.opts.Factory.Create(ctx, id, set.Channel)
	if err != nil {
		return nil, err
	}
	obj.connect(ch.Credentials())
	i := newInstance(r, id, set, obj, ch)

	// The pod goes first, so that the Secret can be created owned by it:
	// the garbage collector then deletes the Secret with the pod, whatever
	// happens to the agent. The kubelet waits for the Secret to mount it.
	core := r.opts.Client.CoreV1()
	pod, err := core.Pods(i.ns).Create(ctx, obj.pod, metav1.CreateOptions{})
	if err != nil {
		// Nothing to delete: the pod may be someone else's (AlreadyExists).
		ch.Close()
		err = apiErr("create", "pods", i.ns, i.podName, err)
		if apierrors.IsAlreadyExists(err) {
			// Another agent's instance has the name: a new name will do.
			err = fmt.Errorf("%w: the name is taken: %w", spear.ErrInvalidInstanceID, err)
		}
		return nil, err
	}
	i.podUID = pod.UID
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		i.watch(pod.ResourceVersion)
	}()
	i.log.Info("pod created", "image", spec.Image)

	obj.secret.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Pod", Name: pod.Name, UID: pod.UID}}
	_, err = core.Secrets(i.ns).Create(ctx, obj.secret, metav1.CreateOptions{})
	if err == nil {
		i.secretCreated = true
		err = i.waitConnected(ctx, set.StartTimeout)
	} else {
		err = apiErr("create", "secrets", i.ns, i.secretName, err)
	}
	if err != nil {
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
