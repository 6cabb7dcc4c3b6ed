package kubernetes

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/channel"
	"github.com/spear-go/spear/runtime"
)

// Labels and annotations the runtime puts on the objects it creates.
const (
	// LabelInstance holds the instance's name.
	LabelInstance = "spear.dev/instance"
	// LabelFunction holds the function the instance serves.
	LabelFunction = "spear.dev/function"
	// LabelManagedBy is LabelManagedByValue on every object the runtime
	// creates; select on it to find them.
	LabelManagedBy = "spear.dev/managed-by"
	// LabelManagedByValue is the value of LabelManagedBy.
	LabelManagedByValue = "spearlet"
	// LabelNode holds the node of the agent that created the object
	// (Options.NodeName; a hash of it when the name is too long for a
	// label value). An agent finds its own objects by it.
	LabelNode = "spear.dev/node"
	// AnnotationInstanceID holds the instance's full id, which a label
	// value cannot (it contains ':').
	AnnotationInstanceID = "spear.dev/instance-id"
	// AnnotationNode holds the agent's node name in full.
	AnnotationNode = "spear.dev/node-name"
)

const (
	containerName = "function"
	volumeName    = "spear-secret"
	// SecretKey is the key of the instance's hex-encoded secret in its
	// Secret object.
	SecretKey = "secret"
	// SecretMountPath is where the pod's container finds the Secret;
	// SPEAR_SECRET_FILE names SecretMountPath + "/" + SecretKey.
	SecretMountPath = "/var/run/spear"
	// secretFileMode lets the container read the secret whatever user it
	// runs as: the volume is private to the pod, and a non-root image
	// without an fsGroup could not read a 0400 file owned by root.
	secretFileMode int32 = 0o444
)

// objects are the Kubernetes objects of one instance, built and checked
// before anything is created.
type objects struct {
	namespace string
	pod       *corev1.Pod
	secret    *corev1.Secret // Data filled in once the channel exists
}

// namespaceFor picks the Kubernetes namespace of an instance (see the
// package comment).
func namespaceFor(id spear.InstanceID, spec Spec, def string) (string, error) {
	switch {
	case id.Namespace != "" && spec.Namespace != "" && id.Namespace != spec.Namespace:
		return "", fmt.Errorf("%w: spec namespace %q differs from the instance id's namespace %q",
			spear.ErrInvalidConfig, spec.Namespace, id.Namespace)
	case spec.Namespace != "":
		return spec.Namespace, nil
	case id.Namespace != "":
		return id.Namespace, nil
	}
	return def, nil
}

// buildObjects builds the instance's pod and Secret from a valid spec.
// Every error matches spear.ErrInvalidConfig.
func buildObjects(id spear.InstanceID, set runtime.Settings, spec Spec, o Options) (*objects, error) {
	ns, err := namespaceFor(id, spec, o.Namespace)
	if err != nil {
		return nil, err
	}
	labels, err := podLabels(id, set.Function, spec.Labels)
	if err != nil {
		return nil, err
	}
	annotations := map[string]string{AnnotationInstanceID: id.String()}
	if o.NodeName != "" {
		labels[LabelNode] = nodeLabel(o.NodeName)
		annotations[AnnotationNode] = o.NodeName
	}
	meta := metav1.ObjectMeta{
		Namespace:   ns,
		Labels:      labels,
		Annotations: annotations,
	}
	secretMeta := *meta.DeepCopy()
	secretMeta.Name = id.Name + "-secret"
	podMeta := *meta.DeepCopy()
	podMeta.Name = id.Name

	grace := int64((set.StopGrace + time.Second - 1) / time.Second) // whole seconds, rounded up
	noToken := false
	mode := secretFileMode
	pod := &corev1.Pod{
		ObjectMeta: podMeta,
		Spec: corev1.PodSpec{
			// The agent decides restarts: a restarted container would need
			// a fresh channel anyway.
			RestartPolicy:                 corev1.RestartPolicyNever,
			TerminationGracePeriodSeconds: &grace,
			// Functions talk to the agent, not to the Kubernetes API.
			AutomountServiceAccountToken: &noToken,
			Containers: []corev1.Container{{
				Name:            containerName,
				Image:           spec.Image,
				ImagePullPolicy: o.ImagePullPolicy,
				Resources:       resources(spec),
				Env:             userEnv(spec.Env), // the SPEAR_* variables are added by Start
				VolumeMounts: []corev1.VolumeMount{{
					Name:      volumeName,
					MountPath: SecretMountPath,
					ReadOnly:  true,
				}},
			}},
			Volumes: []corev1.Volume{{
				Name: volumeName,
				VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
					SecretName:  secretMeta.Name,
					Items:       []corev1.KeyToPath{{Key: SecretKey, Path: SecretKey}},
					DefaultMode: &mode,
				}},
			}},
		},
	}
	if o.NodeName != "" {
		pod.Spec.Affinity = onNode(o.NodeName)
	}
	secret := &corev1.Secret{ObjectMeta: secretMeta, Type: corev1.SecretTypeOpaque}
	return &objects{namespace: ns, pod: pod, secret: secret}, nil
}

// onNode requires the scheduler to place a pod on node and nowhere else,
// as the DaemonSet controller pins its pods: unlike spec.nodeName, this
// still goes through the scheduler, which checks the node's resources and
// taints.
func onNode(node string) *corev1.Affinity {
	return &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
		RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
			MatchFields: []corev1.NodeSelectorRequirement{{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{node}}},
		}}},
	}}
}

// nodeLabel is node's value for LabelNode: the name itself when it is a
// valid label value (63 characters at most), which nearly every node name
// is; else "sha256-" and the first 28 hex digits of its SHA-256.
func nodeLabel(node string) string {
	if len(validation.IsValidLabelValue(node)) == 0 {
		return node
	}
	sum := sha256.Sum256([]byte(node))
	return "sha256-" + hex.EncodeToString(sum[:14])
}

// connect fills in what the instance needs to reach its channel: the
// SPEAR_* variables in the pod (with how to check the agent's TLS, which
// is not secret) and the secret in the Secret.
func (obj *objects) connect(cr channel.Credentials) {
	c := &obj.pod.Spec.Containers[0]
	c.Env = append(c.Env,
		corev1.EnvVar{Name: spear.EnvInstanceID, Value: cr.ID.String()},
		corev1.EnvVar{Name: spear.EnvChannel, Value: string(cr.Type)},
		corev1.EnvVar{Name: spear.EnvAddress, Value: cr.Address},
		corev1.EnvVar{Name: spear.EnvSecretFile, Value: SecretMountPath + "/" + SecretKey},
	)
	for _, kv := range cr.TLS.Env() {
		k, v, _ := strings.Cut(kv, "=")
		c.Env = append(c.Env, corev1.EnvVar{Name: k, Value: v})
	}
	obj.secret.Data = map[string][]byte{SecretKey: []byte(hex.EncodeToString(cr.Secret))}
}

// podLabels are the runtime's labels and the spec's (which Spec.Validate
// has checked).
func podLabels(id spear.InstanceID, function string, extra map[string]string) (map[string]string, error) {
	labels := map[string]string{
		LabelInstance:  id.Name,
		LabelManagedBy: LabelManagedByValue,
	}
	if function != "" {
		if errs := validation.IsValidLabelValue(function); len(errs) > 0 {
			return nil, fmt.Errorf("%w: function name %q is not a label value: %s",
				spear.ErrInvalidConfig, function, strings.Join(errs, "; "))
		}
		labels[LabelFunction] = function
	}
	maps.Copy(labels, extra)
	return labels, nil
}

// resources makes the spec's CPU and Memory, which Spec.Validate has
// checked, both the request and the limit.
func resources(spec Spec) corev1.ResourceRequirements {
	list := corev1.ResourceList{}
	for name, s := range map[corev1.ResourceName]string{corev1.ResourceCPU: spec.CPU, corev1.ResourceMemory: spec.Memory} {
		if s != "" {
			list[name] = resource.MustParse(s)
		}
	}
	if len(list) == 0 {
		return corev1.ResourceRequirements{}
	}
	return corev1.ResourceRequirements{Requests: list, Limits: list.DeepCopy()}
}

// reservedEnv are the variables Start sets; a Spec's Env may not.
var reservedEnv = []string{spear.EnvInstanceID, spear.EnvChannel, spear.EnvAddress, spear.EnvSecretFile, spear.EnvSecret,
	spear.EnvTLSPin, spear.EnvTLSCA, spear.EnvTLSServerName, spear.EnvTLSCert}

// userEnv is the spec's environment, sorted by name.
func userEnv(env runtime.Env) []corev1.EnvVar {
	out := make([]corev1.EnvVar, 0, len(env)+4)
	for _, k := range slices.Sorted(maps.Keys(env)) {
		out = append(out, corev1.EnvVar{Name: k, Value: env[k]})
	}
	return out
}

// podEnded reports whether pod has ended, and why.
func podEnded(pod *corev1.Pod) (bool, string) {
	switch pod.Status.Phase {
	case corev1.PodFailed, corev1.PodSucceeded:
	default:
		return false, ""
	}
	why := "pod " + strings.ToLower(string(pod.Status.Phase))
	if pod.Status.Reason != "" {
		why += ": " + pod.Status.Reason
	}
	if pod.Status.Message != "" {
		why += ": " + pod.Status.Message
	}
	for _, cs := range pod.Status.ContainerStatuses {
		if t := cs.State.Terminated; t != nil {
			why += fmt.Sprintf("; container %s exited with code %d", cs.Name, t.ExitCode)
			if t.Reason != "" {
				why += ": " + t.Reason
			}
			if t.Message != "" {
				why += ": " + t.Message
			}
		}
	}
	return true, why
}

// podWaiting describes why a pending pod's container is not running yet,
// for the error of a Start that timed out: ErrImagePull and the like.
func podWaiting(pod *corev1.Pod) string {
	for _, cs := range pod.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil && w.Reason != "" {
			if w.Message != "" {
				return fmt.Sprintf("container %s waiting: %s: %s", cs.Name, w.Reason, w.Message)
			}
			return fmt.Sprintf("container %s waiting: %s", cs.Name, w.Reason)
		}
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Message != "" {
			return "not scheduled: " + c.Message
		}
	}
	if pod.Status.Phase != "" {
		return "pod " + strings.ToLower(string(pod.Status.Phase))
	}
	return ""
}
