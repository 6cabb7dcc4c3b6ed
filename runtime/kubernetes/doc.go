// Package kubernetes runs runtime instances as Kubernetes pods through
// client-go. It implements runtime.Runtime for spear.Kubernetes ids. What
// an instance runs is a [Spec]; importing the package registers its
// runtime.Kind, so that a function of runtime "kubernetes" decodes into
// one.
//
// For each instance, Start creates a channel (grpc, then tcp, by the
// factory's strategy), a pod, and a Secret owned by the pod holding the
// instance's secret; the pod mounts the Secret read-only and finds it
// through SPEAR_SECRET_FILE, so the secret value never appears in the pod
// spec. The pod dials back to the address the factory advertises
// (AdvertiseGRPC or AdvertiseTCP, normally the node's IP and a hostPort
// of the agent's DaemonSet pod).
//
// With Options.NodeName, pods are scheduled on the agent's node only and
// labelled with it (LabelNode); that label is how an agent restarted after
// a crash finds, and deletes, the pods it left. Before its first pod in a
// namespace, the runtime checks that the agent may do each of Permissions
// there, and fails with a *PermissionError naming what is missing.
//
// Goroutines: one per instance, the watcher, follows the instance's pod
// through a watch on that single pod from creation until the pod is gone or
// has ended, resuming the watch when it breaks or expires. It tells a
// waiting Start when the pod ends before connecting, tears a started
// instance down when its pod fails or disappears, and tells Stop when the
// pod is gone. Runtime.Close waits for every watcher.
//
// Objects are named after the instance: the pod is the instance's name, the
// Secret the name plus "-secret". The Kubernetes namespace is the spec's
// Namespace, else the id's Namespace (the two must agree when both are
// set), else Options.Namespace. See docs/kubernetes.md for running the agent
// on a cluster.
package kubernetes
