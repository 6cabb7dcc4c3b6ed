//go:build !nokubernetes

package cli

import (
	"fmt"

	k8s "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/agent"
	"github.com/spear-go/spear/runtime"
	"github.com/spear-go/spear/runtime/kubernetes"
)

// The kubernetes runtime, and with it client-go. Building with
// -tags nokubernetes leaves this file out.
func init() {
	runtimes[spear.Kubernetes] = func(env agent.RuntimeEnv) (runtime.Runtime, error) {
		client, err := kubeClient(env.Config.Kubernetes.Kubeconfig)
		if err != nil {
			return nil, err
		}
		return kubernetes.New(kubernetes.Options{
			Factory:   env.Factory,
			Client:    client,
			Namespace: env.Config.Kubernetes.Namespace,
			NodeName:  env.Config.Kubernetes.NodeName,
			Logger:    env.Logger,
		})
	}
}

// kubeClient builds a client from a kubeconfig file, or from the
// in-cluster configuration when path is empty.
func kubeClient(path string) (k8s.Interface, error) {
	var rc *rest.Config
	var err error
	if path != "" {
		rc, err = clientcmd.BuildConfigFromFlags("", path)
	} else {
		rc, err = rest.InClusterConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("%w: kubernetes client (set kubernetes.kubeconfig or SPEARLET_KUBECONFIG outside a cluster): %w", spear.ErrConfig, err)
	}
	return k8s.NewForConfig(rc)
}
