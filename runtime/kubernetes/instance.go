package kubernetes

import (
	"bufio"
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
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/channel"
	"github.com/spear-go/spear/runtime"
)

const (
	// logsTimeout bounds the API calls behind Logs.
	logsTimeout = 10 * time.Second
	// keptLogLines is how many log lines outlive the pod.
	keptLogLines = 100
)

// instance is one pod and its channel.
//
// Lifecycle: starting -> running -> stopping -> stopped, or starting ->
// stopped when Start fails. Whoever moves it to stopping (Stop, or the
// watcher when the pod ends on its own) tears it down and calls finish.
type instance struct {
	// Immutable after construction.
	rt         *Runtime
	id         spear.InstanceID
	function   string
	ch         *channel.Channel
	ns         string
	podName    string
	secretName string
	grace      time.Duration
	created    time.Time
	log        *slog.Logger

	ended     context.Context // cancelled, with the reason as cause, when the pod ends or goes
	end       context.CancelCauseFunc
	gone      chan struct{} // closed when the watcher sees the pod gone
	goneOnce  sync.Once
	watchCtx  context.Context
	stopWatch context.CancelFunc
	watchDone chan struct{} // closed when the watcher returns
	done      chan struct{} // closed by finish

	// Set by Start before the instance is shared.
	podUID        types.UID // the pod Start created
	secretCreated bool      // Start created the Secret (it may be someone else's otherwise)

	mu       sync.Mutex // guards the fields below
	status   runtime.Status
	reason   string
	waiting  string   // why the pod is not running yet, for Start's timeout error
	logs     []string // the last lines, kept as the instance stopped
	watchErr error    // why the pod cannot be watched, ending a Start
}

var _ runtime.Instance = (*instance)(nil)

func newInstance(r *Runtime, id spear.InstanceID, set runtime.Settings, obj *objects, ch *channel.Channel) *instance {
	i := &instance{
		rt:         r,
		id:         id,
		function:   set.Function,
		ch:         ch,
		ns:         obj.namespace,
		podName:    obj.pod.Name,
		secretName: obj.secret.Name,
		grace:      set.StopGrace,
		created:    time.Now(),
		log:        r.log.With("instance", id.String(), "namespace", obj.namespace, "pod", obj.pod.Name),
		gone:       make(chan struct{}),
		watchDone:  make(chan struct{}),
		done:       make(chan struct{}),
		status:     runtime.StatusStarting,
	}
	i.ended, i.end = context.WithCancelCause(context.Background())
	i.watchCtx, i.stopWatch = context.WithCancel(context.Background())
	return i
}

func (i *instance) ID() spear.InstanceID      { return i.id }
func (i *instance) Channel() *channel.Channel { return i.ch }
func (i *instance) Done() <-chan struct{}     { return i.done }

func (i *instance) podsClient() typedcorev1.PodInterface {
	return i.rt.opts.Client.CoreV1().Pods(i.ns)
}

func (i *instance) secretsClient() typedcorev1.SecretInterface {
	return i.rt.opts.Client.CoreV1().Secrets(i.ns)
}

// Info reports the instance's state. A running instance whose channel has
// no connection reports StatusUnhealthy.
func (i *instance) Info() runtime.Info {
	i.mu.Lock()
	info := runtime.Info{ID: i.id, Function: i.function, Status: i.status, Reason: i.reason, Created: i.created, Pod: i.ns + "/" + i.podName}
	i.mu.Unlock()
	if info.Status == runtime.StatusRunning && !i.ch.IsConnected() {
		info.Status, info.Reason = runtime.StatusUnhealthy, "channel disconnected"
	}
	return info
}

// Logs returns up to n of the container's last log lines, read from the
// API server (bounded by an internal timeout), or, once the instance has
// stopped, from the last 100 lines kept as it stopped. Errors give no
// lines.
func (i *instance) Logs(n int) []string {
	if n <= 0 {
		return nil
	}
	i.mu.Lock()
	stopped, captured := i.status == runtime.StatusStopped, i.logs
	i.mu.Unlock()
	if stopped {
		return tail(captured, n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), logsTimeout)
	defer cancel()
	lines, err := i.fetchLogs(ctx, n)
	if err != nil {
		i.log.Debug("reading pod logs", "err", err)
	}
	return lines
}

func (i *instance) fetchLogs(ctx context.Context, n int) ([]string, error) {
	lines := int64(n)
	b, err := i.podsClient().GetLogs(i.podName, &corev1.PodLogOptions{Container: containerName, TailLines: &lines}).DoRaw(ctx)
	if err != nil {
		return nil, apiErr("get", "pods/log", i.ns, i.podName, err)
	}
	s := strings.TrimRight(string(b), "\n")
	if s == "" {
		return nil, nil
	}
	return tail(strings.Split(s, "\n"), n), nil
}

// keepLogs saves the container's last lines for Logs after the pod is
// gone. It is best effort.
func (i *instance) keepLogs(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, logsTimeout)
	defer cancel()
	lines, err := i.fetchLogs(ctx, keptLogLines)
	if err != nil {
		i.log.Debug("reading pod logs", "err", err)
		return
	}
	i.mu.Lock()
	i.logs = lines
	i.mu.Unlock()
}

// FollowLogs implements runtime.Follower with the API server's log stream
// (follow=true), which ends when the container does. A stopped instance
// gives its kept lines.
func (i *instance) FollowLogs(ctx context.Context, n int, fn func(line string) error) error {
	i.mu.Lock()
	stopped, captured := i.status == runtime.StatusStopped, i.logs
	i.mu.Unlock()
	if stopped {
		for _, l := range tail(captured, max(n, 0)) {
			if err := fn(l); err != nil {
				return err
			}
		}
		return nil
	}
	lines := int64(max(n, 0))
	rc, err := i.podsClient().GetLogs(i.podName, &corev1.PodLogOptions{Container: containerName, Follow: true, TailLines: &lines}).Stream(ctx)
	if err != nil {
		return apiErr("get", "pods/log", i.ns, i.podName, err)
	}
	defer rc.Close()
	sc := bufio.NewScanner(rc)
	sc.Buffer(make([]byte, 0, 64<<10), runtime.MaxLineBytes*4)
	for sc.Scan() {
		if err := fn(sc.Text()); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return sc.Err()
}

func tail(lines []string, n int) []string {
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return append([]string(nil), lines...)
}

// waitConnected waits until the channel is connected, the pod ends, the
// timeout passes, ctx ends or the runtime closes; on success the instance
// is running.
func (i *instance) waitConnected(ctx context.Context, timeout time.Duration) error {
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	defer context.AfterFunc(i.ended, cancel)()
	defer context.AfterFunc(i.rt.ctx, cancel)()
	err := i.ch.WaitConnected(wctx)

	i.mu.Lock()
	defer i.mu.Unlock()
	// Under i.mu, so that the watcher either sees the instance running
	// (and tears it down itself) or Start sees the pod ended.
	switch {
	case i.watchErr != nil:
		return i.watchErr
	case i.ended.Err() != nil:
		return fmt.Errorf("%w: the pod ended before the instance connected: %w", spear.ErrConnectionFailed, context.Cause(i.ended))
	case err == nil:
		i.status = runtime.StatusRunning
		return nil
	case ctx.Err() != nil:
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("%w: waiting for the instance to connect: %w", spear.ErrTimeout, ctx.Err())
		}
		return ctx.Err()
	case i.rt.ctx.Err() != nil:
		return runtime.ErrClosed
	case errors.Is(err, spear.ErrTimeout):
		msg := fmt.Sprintf("the instance did not connect within %s", timeout)
		if i.waiting != "" {
			msg += " (" + i.waiting + ")"
		}
		return fmt.Errorf("%w: %s", spear.ErrTimeout, msg)
	}
	return err
}

// stop is Runtime.Stop.
func (i *instance) stop(ctx context.Context) error {
	i.mu.Lock()
	if i.status == runtime.StatusStopping || i.status == runtime.StatusStopped {
		i.mu.Unlock()
		select {
		case <-i.done:
			return nil
		case <-ctx.Done():
			return spear.InstanceErr(i.id, "stop", fmt.Errorf("%w: waiting for another stop: %w", spear.ErrTimeout, ctx.Err()))
		}
	}
	i.status = runtime.StatusStopping
	i.mu.Unlock()

	if i.ch.IsConnected() {
		sctx, cancel := context.WithTimeout(ctx, min(signalTimeout, i.grace))
		if err := channel.SendSignal(sctx, i.ch, channel.SignalTerminate, "", nil); err != nil {
			i.log.Debug("terminate signal not acknowledged", "err", err)
		}
		cancel()
	}
	i.keepLogs(ctx)
	err := i.teardown(ctx, i.grace)
	i.finish("stopped")
	<-i.watchDone
	if err != nil {
		return spear.InstanceErr(i.id, "stop", err)
	}
	i.log.Info("instance stopped")
	return nil
}

// teardown deletes the Secret (if Start created it) and then the pod
// with the given grace period, waits until the pod is gone when grace is
// positive (and the watcher runs), and closes the channel. The Secret
// goes first so that an agent killed in between leaves a pod, which the
// next run finds by its labels, rather than a Secret, which it does not
// look for.
func (i *instance) teardown(ctx context.Context, grace time.Duration) error {
	var errs []error
	if i.secretCreated {
		if err := i.secretsClient().Delete(ctx, i.secretName, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, apiErr("delete", "secrets", i.ns, i.secretName, err))
		}
	}
	podErr := i.deletePod(ctx, grace)
	if podErr != nil {
		errs = append(errs, podErr)
	}
	if grace > 0 && podErr == nil {
		if err := i.waitGone(ctx, grace); err != nil {
			errs = append(errs, err)
		}
	}
	i.ch.Close()
	return errors.Join(errs...)
}

// deletePod deletes the pod Start created (not one that took its name
// since) with the grace period.
func (i *instance) deletePod(ctx context.Context, grace time.Duration) error {
	opts := withUID(i.podUID)
	secs := int64((grace + time.Second - 1) / time.Second)
	opts.GracePeriodSeconds = &secs
	err := i.podsClient().Delete(ctx, i.podName, opts)
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return apiErr("delete", "pods", i.ns, i.podName, err)
	}
	return nil
}

// waitGone waits until the watcher sees the pod gone. When the pod
// outlives its grace period by forceAfter (an unreachable node, say), it
// is deleted with no grace.
func (i *instance) waitGone(ctx context.Context, grace time.Duration) error {
	force := time.NewTimer(grace + forceAfter)
	defer force.Stop()
	for {
		select {
		case <-i.gone:
			return nil
		case <-i.watchDone:
			return nil // the watcher stops only once the pod is gone, or when told
		case <-force.C:
			i.log.Warn("pod outlived its grace period; forcing its deletion")
			if err := i.deletePod(ctx, 0); err != nil {
				return err
			}
		case <-ctx.Done():
			return fmt.Errorf("%w: waiting for the pod to go: %w", spear.ErrTimeout, ctx.Err())
		}
	}
}

// finish marks the instance stopped with reason, stops the watcher,
// forgets the instance and closes Done. The channel is closed already.
func (i *instance) finish(reason string) {
	i.mu.Lock()
	if i.status == runtime.StatusStopped {
		i.mu.Unlock()
		return
	}
	i.status, i.reason = runtime.StatusStopped, reason
	i.mu.Unlock()
	i.ch.Lost("the pod ended: " + reason)
	i.stopWatch()
	i.rt.forget(i)
	close(i.done)
}

// podEnded runs on the watcher when the pod has ended or gone, for the
// reason why. A waiting Start learns it through i.ended; a running
// instance is torn down here.
func (i *instance) podEnded(why string) {
	i.end(errors.New(why))
	i.mu.Lock()
	running := i.status == runtime.StatusRunning
	if running {
		i.status = runtime.StatusStopping
	}
	i.mu.Unlock()
	if !running {
		return
	}
	i.log.Warn("instance ended", "reason", why)
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	i.keepLogs(ctx)
	if err := i.teardown(ctx, 0); err != nil {
		i.log.Warn("cleanup after the pod ended", "err", err)
	}
	i.finish(why)
}

// stopping reports whether Stop is tearing the instance down.
func (i *instance) stopping() bool {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.status == runtime.StatusStopping || i.status == runtime.StatusStopped
}

// watch follows the pod from resource version rv until it is gone, until
// it ends (unless a Stop waits for it to go), or until stopWatch. Watches
// end now and then on a real API server; it resumes from the last version
// seen, or re-reads the pod when that version has expired.
func (i *instance) watch(rv string) {
	defer close(i.watchDone)
	ctx := i.watchCtx
	backoff := 100 * time.Millisecond
	for {
		finished, err := i.watchOnce(ctx, &rv)
		if finished || ctx.Err() != nil {
			return
		}
		if err == nil {
			backoff = 100 * time.Millisecond
			continue
		}
		if denied(err) && i.failStart(err) {
			return // Start fails with err: without a watch it cannot follow the pod
		}
		if expired(err) {
			i.log.Info("the pod's watch expired (resource version too old); reading the pod afresh", "err", err)
		} else {
			i.log.Warn("watching the pod", "err", err, "retry_in", backoff)
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

// watchOnce runs one watch; finished reports that there is nothing left
// to watch.
func (i *instance) watchOnce(ctx context.Context, rv *string) (finished bool, err error) {
	pods := i.podsClient()
	w, err := pods.Watch(ctx, metav1.ListOptions{
		FieldSelector:       fields.OneTermEqualSelector("metadata.name", i.podName).String(),
		ResourceVersion:     *rv,
		AllowWatchBookmarks: true,
	})
	if err != nil {
		if expired(err) {
			*rv = ""
		}
		return false, apiErr("watch", "pods", i.ns, i.podName, err)
	}
	defer w.Stop()
	// Read the pod once the watch is in place: a watch from *rv may not
	// replay what happened before it (client-go's fake keeps no history,
	// and *rv is empty after an expiry), so the pod may be gone already.
	pod, err := pods.Get(ctx, i.podName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return i.observeGone(), nil
	case err != nil:
		return false, apiErr("get", "pods", i.ns, i.podName, err)
	case i.observe(pod):
		return true, nil
	}
	for {
		var ev watch.Event
		var ok bool
		select {
		case ev, ok = <-w.ResultChan():
		case <-ctx.Done():
			return false, ctx.Err()
		}
		if !ok {
			return false, nil // the server ended the watch; resume
		}
		if ev.Type == watch.Error {
			err := apierrors.FromObject(ev.Object)
			if expired(err) {
				*rv = ""
			}
			return false, apiErr("watch", "pods", i.ns, i.podName, err)
		}
		pod, ok := ev.Object.(*corev1.Pod)
		if !ok {
			continue
		}
		if ev.Type == watch.Bookmark {
			*rv = pod.ResourceVersion
			continue
		}
		if pod.Name != i.podName {
			continue // client-go's fake clientset ignores field selectors
		}
		*rv = pod.ResourceVersion
		if ev.Type == watch.Deleted {
			return i.observeGone(), nil
		}
		if i.observe(pod) {
			return true, nil
		}
	}
}

func expired(err error) bool { return apierrors.IsGone(err) || apierrors.IsResourceExpired(err) }

// denied reports whether err means the agent may not make the request:
// retrying will not help until someone changes its RBAC.
func denied(err error) bool { return apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err) }

// failStart ends a Start in progress with err, and reports whether there
// was one.
func (i *instance) failStart(err error) bool {
	i.mu.Lock()
	starting := i.status == runtime.StatusStarting
	if starting {
		i.watchErr = err
	}
	i.mu.Unlock()
	if starting {
		i.end(err)
	}
	return starting
}

// observe takes in the pod's state and reports whether watching is over:
// the pod ended and no Stop waits for it to go.
func (i *instance) observe(pod *corev1.Pod) bool {
	ended, why := podEnded(pod)
	if !ended {
		i.mu.Lock()
		i.waiting = podWaiting(pod)
		i.mu.Unlock()
		return false
	}
	if i.stopping() {
		return false
	}
	i.podEnded(why)
	return true
}

func (i *instance) observeGone() bool {
	i.goneOnce.Do(func() { close(i.gone) })
	if !i.stopping() {
		i.podEnded("pod deleted")
	}
	return true
}
