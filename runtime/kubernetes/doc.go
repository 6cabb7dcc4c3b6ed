// Package kubernetes runs runtime instances as Kubernetes pods through
// client-go. It implements runtime.Runtime for spear.Kubernetes ids. What
// an instance runs is a [Spec]; importing the package registers its
// runtime.Kind, so that a function of runtime "kubernetes" decodes into
// one.
//
// For each instance, Start creates a channel (grpc, then tcp, by the
// factory's strategy), a Secret holding the instance's secret, and a pod
// that mounts that Secret read-only and finds it through SPEAR_SECRET_FILE;
// the secret value never appears in the pod spec. The pod dials back to the
// address the factory advertises (AdvertiseGRPC or AdvertiseTCP, normally
// the node's IP and a hostPort of the agent's DaemonSet pod).
//
// Goroutines: one per instance, the watcher, follows the instance's pod
// through a watch on that single pod from creation until the pod is gone or
// has ended. It tells a waiting Start when the pod ends before connecting,
// tears a started instance down when its pod fails or disappears, and tells
// Stop when the pod is gone. Runtime.Close waits for every watcher.
//
// Objects are named after the instance: the pod is the instance's name, the
// Secret the name plus "-secret". The Kubernetes namespace is the spec's
// Namespace, else the id's Namespace (the two must agree when both are
// set), else Options.Namespace. See docs/kubernetes.md for running the agent
// on a cluster.
package kubernetes
