package kubernetes

import (
	"context"
	"fmt"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/spear-go/spear"
)

// Permission is an API verb on a resource of the core group.
type Permission struct {
	Verb        string
	Resource    string
	Subresource string
}

// String returns "verb resource[/subresource]".
func (p Permission) String() string {
	if p.Subresource != "" {
		return p.Verb + " " + p.Resource + "/" + p.Subresource
	}
	return p.Verb + " " + p.Resource
}

// Permissions are what the runtime does in each namespace it runs pods
// in, and all of it: the Role in deploy/kubernetes/rbac.yaml grants
// exactly these, and a test checks that it does.
var Permissions = []Permission{
	{Verb: "create", Resource: "pods"},
	{Verb: "get", Resource: "pods"},    // a watch's first look at its pod
	{Verb: "list", Resource: "pods"},   // finding a previous run's pods (Options.NodeName)
	{Verb: "watch", Resource: "pods"},  // following each pod
	{Verb: "delete", Resource: "pods"}, // stopping, and cleaning up
	{Verb: "get", Resource: "pods", Subresource: "log"},
	{Verb: "create", Resource: "secrets"},
	{Verb: "delete", Resource: "secrets"},
}

// PermissionError reports Permissions the agent's identity lacks in a
// namespace. It matches ErrAPI and spear.ErrConfig, and not
// spear.ErrTransport as other API errors do: the fix is in the cluster's
// RBAC, not in a retry.
type PermissionError struct {
	// User is the identity the API server saw.
	User string
	// Namespace is where the permissions are missing.
	Namespace string
	// Missing lists them.
	Missing []Permission
}

func (e *PermissionError) Error() string {
	names := make([]string, len(e.Missing))
	for i, p := range e.Missing {
		names[i] = p.String()
	}
	who := "the agent"
	if e.User != "" {
		who = e.User
	}
	return fmt.Sprintf("%s may not %s in namespace %s: grant them in its Role (deploy/kubernetes/rbac.yaml)",
		who, strings.Join(names, ", "), e.Namespace)
}

// Is makes a PermissionError match ErrAPI and spear.ErrConfig.
func (e *PermissionError) Is(target error) bool { return target == ErrAPI || target == spear.ErrConfig }

// checkAccess asks the API server whether the agent may do each of
// Permissions in namespace, and returns a *PermissionError naming those it
// may not. Any authenticated identity may ask about itself.
func (r *Runtime) checkAccess(ctx context.Context, namespace string) error {
	var missing []Permission
	var user string
	reviews := r.opts.Client.AuthorizationV1().SelfSubjectAccessReviews()
	for _, p := range Permissions {
		review, err := reviews.Create(ctx, &authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: namespace, Verb: p.Verb, Resource: p.Resource, Subresource: p.Subresource,
			}},
		}, metav1.CreateOptions{})
		if err != nil {
			return apiErr("create", "selfsubjectaccessreviews", "", "", err)
		}
		if !review.Status.Allowed {
			missing = append(missing, p)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if ssr, err := r.opts.Client.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{}); err == nil {
		user = ssr.Status.UserInfo.Username
	}
	return &PermissionError{User: user, Namespace: namespace, Missing: missing}
}

// reclaim deletes what a previous run of an agent on this node left in
// namespace: pods labelled with the node (and the agent), and the Secrets
// they mount. An agent killed without a chance to stop its instances
// leaves them running; their channels died with it, so they can only be
// removed. It runs before the runtime creates anything in namespace, so
// every pod it finds is a leftover.
func (r *Runtime) reclaim(ctx context.Context, namespace string) error {
	if r.opts.NodeName == "" {
		return nil // no identity to tell this agent's pods from others'
	}
	sel := labels.Set{LabelManagedBy: LabelManagedByValue, LabelNode: nodeLabel(r.opts.NodeName)}.String()
	pods := r.opts.Client.CoreV1().Pods(namespace)
	list, err := pods.List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return apiErr("list", "pods", namespace, "", err)
	}
	for _, pod := range list.Items {
		for _, v := range pod.Spec.Volumes {
			if v.Name != volumeName || v.Secret == nil {
				continue
			}
			err := r.opts.Client.CoreV1().Secrets(namespace).Delete(ctx, v.Secret.SecretName, metav1.DeleteOptions{})
			if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
				return apiErr("delete", "secrets", namespace, v.Secret.SecretName, err)
			}
		}
		if err := pods.Delete(ctx, pod.Name, withUID(pod.UID)); err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return apiErr("delete", "pods", namespace, pod.Name, err)
		}
		r.log.Info("deleted a pod left by a previous run on this node", "namespace", namespace, "pod", pod.Name,
			"instance", pod.Annotations[AnnotationInstanceID])
	}
	return nil
}

// withUID returns delete options that delete only the object with uid,
// not another one that took its name meanwhile.
func withUID(uid types.UID) metav1.DeleteOptions {
	return metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}}
}

// prepare makes namespace ready for the runtime's first pod there: it
// checks the agent's permissions and reclaims a previous run's leftovers.
// Starts in one namespace wait for its preparation; a failed one is tried
// again by the next Start.
func (r *Runtime) prepare(ctx context.Context, namespace string) error {
	r.mu.Lock()
	p, ok := r.prepared[namespace]
	if !ok {
		p = &preparation{done: make(chan struct{})}
		r.prepared[namespace] = p
	}
	r.mu.Unlock()
	if ok {
		select {
		case <-p.done:
			return p.err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	p.err = r.checkAccess(ctx, namespace)
	if p.err == nil {
		p.err = r.reclaim(ctx, namespace)
	}
	if p.err != nil {
		r.mu.Lock()
		delete(r.prepared, namespace)
		r.mu.Unlock()
	}
	close(p.done)
	return p.err
}

// preparation is one namespace's prepare.
type preparation struct {
	done chan struct{} // closed when err is set
	err  error
}
