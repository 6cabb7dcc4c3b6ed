package kubetest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	k8s "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// Image is what a Node runs for a container image: its entrypoint,
// default arguments and environment, and the root filesystem they refer
// to, if any.
type Image struct {
	// Root, when set, is the image's unpacked root filesystem: an
	// absolute entrypoint is found under it. Empty runs the entrypoint as
	// a path on the host.
	Root       string
	Entrypoint []string
	Cmd        []string
	Env        []string
}

// NodeOptions configure a Node.
type NodeOptions struct {
	// Name is the node's name. Required.
	Name string
	// Images maps the image references pods may name to what to run.
	// A pod whose image is missing stays Pending with ErrImagePull.
	Images map[string]Image
	// Dir holds the pods' volumes and logs. Required.
	Dir string
	// Logf, when set, receives what the node does, for a failing test.
	Logf func(format string, args ...any)
}

// Node plays one node of the cluster: it registers a Node object, binds
// the pods that require this node by name (node affinity on
// metadata.name, or a kubernetes.io/hostname node selector; it is the
// scheduler for this node only), and for each pod bound to it does what
// a kubelet does, with local processes in place of containers:
//
//   - it writes the pod's Secret volumes to a directory, waiting for a
//     Secret that does not exist yet, and points the environment's paths
//     under a volume's mount (SPEAR_SECRET_FILE) into that directory;
//   - it runs the container's command (the pod's, else the image's
//     entrypoint) with the image's and the pod's environment;
//   - it reports the pod Running with IP 127.0.0.1, then Succeeded or
//     Failed with the exit code when the process exits;
//   - when the pod is deleted, it sends SIGTERM, SIGKILL after the grace
//     period, and removes the pod from the API;
//   - it serves the container's output to the API server's log requests.
//
// Goroutines: the pod informers' (ended by Stop); one per pod, from its
// start until its process has exited and been reported; one per pod
// being deleted; and the log server's. Stop ends them all, killing the
// processes.
type Node struct {
	// Immutable after StartNode.
	opts    NodeOptions
	client  k8s.Interface
	ctx     context.Context // ends at Stop
	cancel  context.CancelFunc
	factory informers.SharedInformerFactory
	bound   informers.SharedInformerFactory
	srv     *http.Server
	srvDone chan struct{}
	wg      sync.WaitGroup // pods' goroutines

	mu   sync.Mutex // guards pods and logs
	pods map[types.UID]*podRun
	logs map[string]string // "namespace/name" to the latest container log
}

// podRun is one pod's container on the node.
type podRun struct {
	uid       types.UID
	namespace string
	name      string
	cancel    context.CancelFunc // stops a start in progress
	exited    chan struct{}      // closed once the process has exited, or will never run

	// Guarded by Node.mu.
	proc     *os.Process
	deleting bool
}

// signal sends sig to the container's process group while its process
// runs. Node.mu must be held.
func (r *podRun) signal(sig syscall.Signal) {
	if r.proc != nil && !closed(r.exited) {
		_ = syscall.Kill(-r.proc.Pid, sig)
	}
}

// StartNode registers the node and starts serving it. client must be
// allowed to do what a kubelet and a scheduler do (the admin's is).
func (cp *ControlPlane) StartNode(ctx context.Context, client k8s.Interface, opts NodeOptions) (*Node, error) {
	if opts.Name == "" || opts.Dir == "" {
		return nil, errors.New("kubetest: a node needs a name and a directory")
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	n := &Node{opts: opts, client: client, pods: map[types.UID]*podRun{}, logs: map[string]string{}, srvDone: make(chan struct{})}

	tlsCfg, err := cp.pki.kubeletTLS(opts.Name)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /containerLogs/{namespace}/{pod}/{container}", n.serveLogs)
	n.srv = &http.Server{Handler: mux, TLSConfig: tlsCfg, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(n.srvDone)
		_ = n.srv.ServeTLS(ln, "", "")
	}()
	if err := n.register(ctx, ln.Addr().(*net.TCPAddr).Port); err != nil {
		n.srv.Close()
		<-n.srvDone
		return nil, err
	}

	n.ctx, n.cancel = context.WithCancel(context.Background())
	// Two views of the pods: those waiting for a node, and those bound to
	// this one. Informers list, watch, and relist when a watch breaks or
	// its resource version has expired, as the real components do.
	n.factory = informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", "").String()
	}))
	n.bound = informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", opts.Name).String()
	}))
	_, err = n.factory.Core().V1().Pods().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { n.schedule(obj) },
		UpdateFunc: func(_, obj any) { n.schedule(obj) },
	})
	if err == nil {
		_, err = n.bound.Core().V1().Pods().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { n.sync(obj) },
			UpdateFunc: func(_, obj any) { n.sync(obj) },
			DeleteFunc: func(obj any) { n.gone(obj) },
		})
	}
	if err != nil {
		n.Stop()
		return nil, err
	}
	n.factory.Start(n.ctx.Done())
	n.bound.Start(n.ctx.Done())
	return n, nil
}

// Name returns the node's name.
func (n *Node) Name() string { return n.opts.Name }

// register creates (or updates) the node's Node object: Ready, with a
// loopback address and the log server's port.
func (n *Node) register(ctx context.Context, port int) error {
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: n.opts.Name, Labels: map[string]string{
			"kubernetes.io/hostname": n.opts.Name,
			"kubernetes.io/os":       "linux",
		}},
	}
	nodes := n.client.CoreV1().Nodes()
	got, err := nodes.Create(ctx, node, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		got, err = nodes.Get(ctx, n.opts.Name, metav1.GetOptions{})
	}
	if err != nil {
		return fmt.Errorf("register node %s: %w", n.opts.Name, err)
	}
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("4"),
		corev1.ResourceMemory: resource.MustParse("8Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	got.Status = corev1.NodeStatus{
		Capacity:    capacity,
		Allocatable: capacity,
		Conditions: []corev1.NodeCondition{{
			Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
			LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now(),
		}},
		Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: "127.0.0.1"},
			{Type: corev1.NodeHostName, Address: n.opts.Name},
		},
		DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: int32(port)}},
		NodeInfo:        corev1.NodeSystemInfo{OperatingSystem: "linux", Architecture: "amd64", KubeletVersion: KubernetesVersion},
	}
	if _, err := nodes.UpdateStatus(ctx, got, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("status of node %s: %w", n.opts.Name, err)
	}
	return nil
}

// Stop stops watching, kills every container's process, and waits for
// the node's goroutines. The pods stay as they were in the API, as with
// a node that went down. It is idempotent.
func (n *Node) Stop() {
	if n.cancel == nil {
		return
	}
	n.cancel()
	n.factory.Shutdown()
	n.bound.Shutdown()
	n.mu.Lock()
	for _, r := range n.pods {
		r.cancel()
		r.signal(syscall.SIGKILL)
	}
	n.mu.Unlock()
	n.wg.Wait()
	n.srv.Close()
	<-n.srvDone
}

// Processes returns the number of containers whose process is running.
func (n *Node) Processes() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	count := 0
	for _, r := range n.pods {
		if r.proc != nil && !closed(r.exited) {
			count++
		}
	}
	return count
}

// schedule binds a pending pod that requires this node to it.
func (n *Node) schedule(obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok || pod.Spec.NodeName != "" || pod.DeletionTimestamp != nil || !n.requires(pod) {
		return
	}
	binding := &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID},
		Target:     corev1.ObjectReference{Kind: "Node", Name: n.opts.Name},
	}
	err := n.client.CoreV1().Pods(pod.Namespace).Bind(n.ctx, binding, metav1.CreateOptions{})
	if err != nil && n.ctx.Err() == nil {
		n.opts.Logf("node %s: bind %s/%s: %v", n.opts.Name, pod.Namespace, pod.Name, err)
	}
}

// requires reports whether pod may only run on this node.
func (n *Node) requires(pod *corev1.Pod) bool {
	if pod.Spec.NodeSelector["kubernetes.io/hostname"] == n.opts.Name {
		return true
	}
	a := pod.Spec.Affinity
	if a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return false
	}
	for _, term := range a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
		for _, r := range term.MatchFields {
			if r.Key == "metadata.name" && r.Operator == corev1.NodeSelectorOpIn && slices.Equal(r.Values, []string{n.opts.Name}) {
				return true
			}
		}
	}
	return false
}

// sync acts on a pod bound to the node: starts it the first time it is
// seen, and terminates it once it is being deleted.
func (n *Node) sync(obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ctx.Err() != nil {
		return
	}
	r := n.pods[pod.UID]
	if pod.DeletionTimestamp != nil {
		if r == nil {
			// Never started here (it ended before this node last looked,
			// say): nothing to stop.
			r = &podRun{uid: pod.UID, namespace: pod.Namespace, name: pod.Name, cancel: func() {}, exited: make(chan struct{})}
			close(r.exited)
			n.pods[pod.UID] = r
		}
		if !r.deleting {
			r.deleting = true
			grace := int64(corev1.DefaultTerminationGracePeriodSeconds)
			if pod.DeletionGracePeriodSeconds != nil {
				grace = *pod.DeletionGracePeriodSeconds
			}
			n.wg.Add(1)
			go n.terminate(r, time.Duration(grace)*time.Second)
		}
		return
	}
	if r != nil || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return
	}
	ctx, cancel := context.WithCancel(n.ctx)
	r = &podRun{uid: pod.UID, namespace: pod.Namespace, name: pod.Name, cancel: cancel, exited: make(chan struct{})}
	n.pods[pod.UID] = r
	n.wg.Add(1)
	go n.run(ctx, r, pod.DeepCopy())
}

// gone kills the container of a pod removed from the API without a
// graceful deletion (a force delete).
func (n *Node) gone(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	r := n.pods[pod.UID]
	if r == nil {
		return
	}
	r.deleting = true
	r.cancel()
	r.signal(syscall.SIGKILL)
}

// terminate stops r's process (SIGTERM, SIGKILL after grace) and removes
// the pod from the API, as the kubelet finishes a graceful deletion.
func (n *Node) terminate(r *podRun, grace time.Duration) {
	defer n.wg.Done()
	r.cancel()
	n.mu.Lock()
	r.signal(syscall.SIGTERM)
	n.mu.Unlock()
	t := time.NewTimer(grace)
	select {
	case <-r.exited:
	case <-t.C:
		n.mu.Lock()
		r.signal(syscall.SIGKILL)
		n.mu.Unlock()
	case <-n.ctx.Done():
	}
	t.Stop()
	<-r.exited
	zero := int64(0)
	n.retry(func(ctx context.Context) error {
		err := n.client.CoreV1().Pods(r.namespace).Delete(ctx, r.name, metav1.DeleteOptions{
			GracePeriodSeconds: &zero,
			Preconditions:      &metav1.Preconditions{UID: &r.uid},
		})
		if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
			return nil // gone, or the name is another pod's now
		}
		return err
	})
	n.mu.Lock()
	delete(n.pods, r.uid)
	n.mu.Unlock()
}

// run starts pod's container and reports it until its process exits.
func (n *Node) run(ctx context.Context, r *podRun, pod *corev1.Pod) {
	defer n.wg.Done()
	cmd, err := n.start(ctx, r, pod)
	if cmd == nil {
		close(r.exited)
		if err != nil && ctx.Err() == nil {
			n.report(r, err.status)
		}
		return
	}
	c := pod.Spec.Containers[0]
	started := metav1.Now()
	n.report(r, func(s *corev1.PodStatus) {
		s.Phase = corev1.PodRunning
		s.HostIP, s.PodIP = "127.0.0.1", "127.0.0.1"
		s.HostIPs, s.PodIPs = []corev1.HostIP{{IP: "127.0.0.1"}}, []corev1.PodIP{{IP: "127.0.0.1"}}
		s.StartTime = &started
		s.Conditions = []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue},
			{Type: corev1.PodInitialized, Status: corev1.ConditionTrue},
			{Type: corev1.ContainersReady, Status: corev1.ConditionTrue},
			{Type: corev1.PodReady, Status: corev1.ConditionTrue},
		}
		s.ContainerStatuses = []corev1.ContainerStatus{{
			Name: c.Name, Image: c.Image, Ready: true, Started: new(true),
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: started}},
		}}
	})

	code := exitCode(cmd.Wait())
	close(r.exited)
	n.mu.Lock()
	deleting := r.deleting
	n.mu.Unlock()
	n.opts.Logf("node %s: pod %s/%s: exited with code %d", n.opts.Name, pod.Namespace, pod.Name, code)
	if deleting || n.ctx.Err() != nil {
		return // terminate reports the pod gone, or the node is going down
	}
	finished := metav1.Now()
	n.report(r, func(s *corev1.PodStatus) {
		phase, reason := corev1.PodFailed, "Error"
		if code == 0 {
			phase, reason = corev1.PodSucceeded, "Completed"
		}
		s.Phase = phase
		s.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse, Reason: "PodCompleted"}}
		s.ContainerStatuses = []corev1.ContainerStatus{{
			Name: c.Name, Image: c.Image, Started: new(false),
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
				ExitCode: int32(code), Reason: reason, StartedAt: started, FinishedAt: finished,
			}},
		}}
	})
}

// podError is why a pod's container could not start, and the status that
// says so.
type podError struct {
	status func(*corev1.PodStatus)
}

// failed is a podError that fails the pod with reason and message.
func failed(reason, msg string) *podError {
	return &podError{status: func(s *corev1.PodStatus) { s.Phase, s.Reason, s.Message = corev1.PodFailed, reason, msg }}
}

// start prepares and starts pod's container: its image, volumes, command
// and log. It returns the running command, or nil and why not (nil too
// when the pod is being deleted or the node stops).
func (n *Node) start(ctx context.Context, r *podRun, pod *corev1.Pod) (*exec.Cmd, *podError) {
	if len(pod.Spec.Containers) != 1 {
		return nil, failed("Unsupported", "the test node runs pods of exactly one container")
	}
	c := pod.Spec.Containers[0]
	img, ok := n.opts.Images[c.Image]
	if !ok {
		return nil, &podError{status: func(s *corev1.PodStatus) {
			s.Phase = corev1.PodPending
			s.ContainerStatuses = []corev1.ContainerStatus{{Name: c.Name, Image: c.Image, State: corev1.ContainerState{
				Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImagePull", Message: "image " + c.Image + " is not on test node " + n.opts.Name},
			}}}
		}}
	}
	dir := filepath.Join(n.opts.Dir, pod.Namespace+"_"+pod.Name+"_"+string(pod.UID))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, failed("ContainerCannotRun", err.Error())
	}
	mounts, err := n.mountVolumes(ctx, r, pod, c, filepath.Join(dir, "volumes"))
	if err != nil {
		return nil, failed("VolumeMountFailed", err.Error())
	}
	// The pod's command replaces the image's entrypoint, its args the
	// image's cmd, as in Kubernetes.
	argv := append(slices.Clone(img.Entrypoint), img.Cmd...)
	if len(c.Command) > 0 {
		argv = append(slices.Clone(c.Command), c.Args...)
	} else if len(c.Args) > 0 {
		argv = append(slices.Clone(img.Entrypoint), c.Args...)
	}
	if len(argv) == 0 {
		return nil, failed("ContainerCannotRun", "no command")
	}
	if img.Root != "" && filepath.IsAbs(argv[0]) {
		argv[0] = filepath.Join(img.Root, argv[0])
	}
	logPath := filepath.Join(dir, c.Name+".log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, failed("ContainerCannotRun", err.Error())
	}
	defer logf.Close() // the process has its own copy
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = containerEnv(img.Env, c.Env, mounts)
	cmd.Dir = dir
	if img.Root != "" {
		cmd.Dir = img.Root
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = sysProcAttr()

	n.mu.Lock()
	defer n.mu.Unlock()
	if r.deleting || ctx.Err() != nil {
		return nil, nil
	}
	if err := cmd.Start(); err != nil {
		return nil, failed("ContainerCannotRun", err.Error())
	}
	r.proc = cmd.Process
	n.logs[pod.Namespace+"/"+pod.Name] = logPath
	n.opts.Logf("node %s: pod %s/%s: started %v (pid %d)", n.opts.Name, pod.Namespace, pod.Name, argv, cmd.Process.Pid)
	return cmd, nil
}

// exitCode is a container's exit code from its process's wait error: the
// status, or 128 plus the signal that killed it.
func exitCode(err error) int {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	return 128
}

// mountVolumes writes the container's Secret volumes under dir, waiting
// (with backoff, reporting ContainerCreating) for Secrets that do not
// exist yet, as the kubelet does. It returns each mount path's directory
// on the host.
func (n *Node) mountVolumes(ctx context.Context, r *podRun, pod *corev1.Pod, c corev1.Container, dir string) (map[string]string, error) {
	mounts := map[string]string{}
	for _, vm := range c.VolumeMounts {
		i := slices.IndexFunc(pod.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == vm.Name })
		if i < 0 {
			return nil, fmt.Errorf("volume mount %s names no volume", vm.Name)
		}
		v := pod.Spec.Volumes[i]
		host := filepath.Join(dir, v.Name)
		if err := os.MkdirAll(host, 0o700); err != nil {
			return nil, err
		}
		mounts[vm.MountPath] = host
		switch {
		case v.Secret != nil:
			s, err := n.waitSecret(ctx, r, pod, c, v.Secret.SecretName)
			if err != nil {
				return nil, err
			}
			mode := os.FileMode(0o644)
			if v.Secret.DefaultMode != nil {
				mode = os.FileMode(*v.Secret.DefaultMode)
			}
			items := v.Secret.Items
			if len(items) == 0 {
				for k := range s.Data {
					items = append(items, corev1.KeyToPath{Key: k, Path: k})
				}
			}
			for _, it := range items {
				data, ok := s.Data[it.Key]
				if !ok {
					return nil, fmt.Errorf("secret %s has no key %s", s.Name, it.Key)
				}
				if !filepath.IsLocal(it.Path) {
					return nil, fmt.Errorf("secret item path %q leaves the volume", it.Path)
				}
				m := mode
				if it.Mode != nil {
					m = os.FileMode(*it.Mode)
				}
				if err := os.WriteFile(filepath.Join(host, it.Path), data, m); err != nil {
					return nil, err
				}
			}
		case v.EmptyDir != nil:
		default:
			return nil, fmt.Errorf("volume %s: the test node mounts Secret and emptyDir volumes only", v.Name)
		}
	}
	return mounts, nil
}

func (n *Node) waitSecret(ctx context.Context, r *podRun, pod *corev1.Pod, c corev1.Container, name string) (*corev1.Secret, error) {
	backoff := 100 * time.Millisecond
	reported := false
	for {
		s, err := n.client.CoreV1().Secrets(pod.Namespace).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			return s, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if !reported && apierrors.IsNotFound(err) {
			reported = true
			n.report(r, func(s *corev1.PodStatus) {
				s.Phase = corev1.PodPending
				s.ContainerStatuses = []corev1.ContainerStatus{{Name: c.Name, Image: c.Image, State: corev1.ContainerState{
					Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating", Message: "secret " + name + " not found"},
				}}}
			})
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// containerEnv is the image's environment with the container's on top.
// Values that are paths under a volume's mount path are pointed at the
// volume's directory on the host, which is where a process that shares
// the host's filesystem finds them.
func containerEnv(image []string, env []corev1.EnvVar, mounts map[string]string) []string {
	vars := map[string]string{}
	var order []string
	set := func(k, v string) {
		if _, ok := vars[k]; !ok {
			order = append(order, k)
		}
		vars[k] = v
	}
	for _, kv := range image {
		k, v, _ := strings.Cut(kv, "=")
		set(k, v)
	}
	for _, e := range env {
		v := e.Value
		for mount, host := range mounts {
			if rest, ok := strings.CutPrefix(v, mount); ok && (rest == "" || strings.HasPrefix(rest, "/")) {
				v = host + rest
			}
		}
		set(e.Name, v)
	}
	out := make([]string, 0, len(order))
	for _, k := range order {
		out = append(out, k+"="+vars[k])
	}
	return out
}

// report updates the pod's status, if the pod is still r's, retrying
// while the API server is unreachable.
func (n *Node) report(r *podRun, set func(*corev1.PodStatus)) {
	n.retry(func(ctx context.Context) error {
		pods := n.client.CoreV1().Pods(r.namespace)
		pod, err := pods.Get(ctx, r.name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		if pod.UID != r.uid || pod.DeletionTimestamp != nil {
			return nil
		}
		set(&pod.Status)
		_, err = pods.UpdateStatus(ctx, pod, metav1.UpdateOptions{})
		return err
	})
}

// retry calls f until it succeeds or the node stops, with backoff.
func (n *Node) retry(f func(context.Context) error) {
	backoff := 100 * time.Millisecond
	for {
		err := f(n.ctx)
		if err == nil || n.ctx.Err() != nil {
			return
		}
		n.opts.Logf("node %s: %v (retrying)", n.opts.Name, err)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-n.ctx.Done():
			t.Stop()
			return
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// serveLogs answers the API server's request for a container's log, with
// the kubelet's tailLines parameter.
func (n *Node) serveLogs(w http.ResponseWriter, req *http.Request) {
	n.mu.Lock()
	path, ok := n.logs[req.PathValue("namespace")+"/"+req.PathValue("pod")]
	n.mu.Unlock()
	if !ok {
		http.Error(w, "no such container", http.StatusNotFound)
		return
	}
	f, err := os.Open(path)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if v := req.URL.Query().Get("tailLines"); v != "" {
		if t, err := strconv.Atoi(v); err == nil && t >= 0 && t < len(lines) {
			lines = lines[len(lines)-t:]
		}
	}
	w.Header().Set("Content-Type", "text/plain")
	for _, l := range lines {
		fmt.Fprintln(w, l)
	}
	if req.URL.Query().Get("follow") != "true" {
		return
	}
	// Follow, as the kubelet does: what the container writes next, until
	// it exits or the client leaves. f is at the end of what was sent.
	exited := n.exited(req.PathValue("namespace"), req.PathValue("pod"))
	rc := http.NewResponseController(w)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		_, _ = io.Copy(w, f)
		_ = rc.Flush()
		select {
		case <-exited:
			_, _ = io.Copy(w, f)
			return
		case <-req.Context().Done():
			return
		case <-tick.C:
		}
	}
}

// exited returns a channel closed once the pod's container has exited
// (at once for a pod the node does not run).
func (n *Node) exited(namespace, name string) <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, r := range n.pods {
		if r.namespace == namespace && r.name == name {
			return r.exited
		}
	}
	done := make(chan struct{})
	close(done)
	return done
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
