package kubetest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8s "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Timeouts of the control plane's life cycle.
const (
	readyTimeout = 2 * time.Minute // a server to answer its health check
	stopTimeout  = 5 * time.Second // a server to exit after SIGTERM (an API server with open watches takes longer; then it is killed)
	pollInterval = 100 * time.Millisecond
)

// AdminUser is the user of ControlPlane.AdminConfig, a member of
// system:masters.
const AdminUser = "spear-test-admin"

// ControlPlane is an etcd and a kube-apiserver running as child processes
// on loopback ports chosen when it starts. The API server serves TLS with
// a certificate of a CA generated for it, authenticates static tokens
// (the admin's) and service account tokens, and authorizes with RBAC, as
// a production cluster does. There is no controller manager and no
// scheduler: Node plays the scheduler and the kubelet for one node, and
// Apply creates what the service account controller would.
//
// Its methods are safe for concurrent use.
type ControlPlane struct {
	// Immutable after Start.
	dir        string
	bins       string
	pki        *pki
	adminToken string
	apiPort    int
	etcdURL    string

	mu   sync.Mutex // guards the fields below
	etcd *server
	api  *server
}

// server is one child process, its output kept in a log file.
type server struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{} // closed when the process has exited
	err  error         // set before done closes
}

// Start starts etcd and kube-apiserver from the binaries in bins, keeping
// their data, keys and logs in dir, and waits until the API server is
// ready. Stop ends them.
func Start(ctx context.Context, bins, dir string) (*ControlPlane, error) {
	cp := &ControlPlane{dir: dir, bins: bins}
	var err error
	if cp.pki, err = newPKI(dir); err != nil {
		return nil, fmt.Errorf("generate keys: %w", err)
	}
	if cp.adminToken, err = randomToken(); err != nil {
		return nil, err
	}
	// The static token file: token,user,uid,"groups".
	tokens := fmt.Sprintf("%s,%s,%s,\"system:masters\"\n", cp.adminToken, AdminUser, AdminUser)
	if err := os.WriteFile(filepath.Join(dir, "tokens.csv"), []byte(tokens), 0o600); err != nil {
		return nil, err
	}
	if err := cp.startEtcd(ctx); err != nil {
		return nil, err
	}
	if err := cp.StartAPIServer(ctx); err != nil {
		cp.Stop()
		return nil, err
	}
	return cp, nil
}

// startEtcd starts etcd on two free ports, trying again with other ports
// should another process take one first.
func (cp *ControlPlane) startEtcd(ctx context.Context) error {
	var err error
	for range 3 {
		client, peer := freePort(), freePort()
		cp.etcdURL = "http://127.0.0.1:" + strconv.Itoa(client)
		peerURL := "http://127.0.0.1:" + strconv.Itoa(peer)
		var s *server
		s, err = cp.spawn("etcd",
			"--name=spear-test",
			"--data-dir="+filepath.Join(cp.dir, "etcd"),
			"--listen-client-urls="+cp.etcdURL,
			"--advertise-client-urls="+cp.etcdURL,
			"--listen-peer-urls="+peerURL,
			"--initial-advertise-peer-urls="+peerURL,
			"--initial-cluster=spear-test="+peerURL,
			// The data is thrown away after the test: no need to sync it.
			"--unsafe-no-fsync",
			"--log-level=warn",
		)
		if err != nil {
			return err
		}
		if err = waitReady(ctx, s, cp.etcdURL+"/health", nil, ""); err == nil {
			cp.mu.Lock()
			cp.etcd = s
			cp.mu.Unlock()
			return nil
		}
		s.stop()
	}
	return err
}

// StartAPIServer starts kube-apiserver and waits until it is ready. The
// first start picks a free port; later ones (after StopAPIServer) reuse
// it, so that clients made before reach the new server.
func (cp *ControlPlane) StartAPIServer(ctx context.Context) error {
	cp.mu.Lock()
	running := cp.api != nil
	cp.mu.Unlock()
	if running {
		return errors.New("kube-apiserver is running")
	}
	first := cp.apiPort == 0
	var err error
	for range 3 {
		if first {
			cp.apiPort = freePort()
		}
		var s *server
		s, err = cp.spawn("kube-apiserver", cp.apiServerArgs()...)
		if err != nil {
			return err
		}
		if err = waitReady(ctx, s, cp.URL()+"/readyz", cp.pki.caPEM, cp.adminToken); err == nil {
			cp.mu.Lock()
			cp.api = s
			cp.mu.Unlock()
			return nil
		}
		s.stop()
		if !first {
			break
		}
	}
	return err
}

func (cp *ControlPlane) apiServerArgs() []string {
	p := cp.pki
	return []string{
		"--etcd-servers=" + cp.etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(cp.apiPort),
		"--cert-dir=" + filepath.Join(cp.dir, "apiserver-certs"),
		"--tls-cert-file=" + p.serverCert,
		"--tls-private-key-file=" + p.serverKey,
		"--client-ca-file=" + p.caFile,
		"--token-auth-file=" + filepath.Join(cp.dir, "tokens.csv"),
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + p.saPub,
		"--service-account-signing-key-file=" + p.saKey,
		"--service-cluster-ip-range=10.96.0.0/24",
		// Loopback is no address for the kubernetes Service's endpoints.
		"--endpoint-reconciler-type=none",
		// Logs and exec reach a Node's kubelet with this identity.
		"--kubelet-client-certificate=" + p.kubeletClientCert,
		"--kubelet-client-key=" + p.kubeletClientKey,
		"--kubelet-certificate-authority=" + p.caFile,
		"--kubelet-preferred-address-types=InternalIP",
		"--profiling=false",
	}
}

// StopAPIServer stops kube-apiserver (SIGTERM, then SIGKILL) and waits
// until it has exited. etcd keeps running, so a new StartAPIServer finds
// the cluster as it was.
func (cp *ControlPlane) StopAPIServer() {
	cp.mu.Lock()
	s := cp.api
	cp.api = nil
	cp.mu.Unlock()
	if s != nil {
		s.stop()
	}
}

// Stop stops both servers. It is idempotent.
func (cp *ControlPlane) Stop() {
	cp.StopAPIServer()
	cp.mu.Lock()
	s := cp.etcd
	cp.etcd = nil
	cp.mu.Unlock()
	if s != nil {
		s.stop()
	}
}

// URL is the API server's address.
func (cp *ControlPlane) URL() string { return "https://127.0.0.1:" + strconv.Itoa(cp.apiPort) }

// CA returns the PEM certificate of the CA that signed the API server's
// serving certificate.
func (cp *ControlPlane) CA() []byte { return bytes.Clone(cp.pki.caPEM) }

// Config returns a client configuration that authenticates with the
// bearer token.
func (cp *ControlPlane) Config(token string) *rest.Config {
	return &rest.Config{
		Host:            cp.URL(),
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{CAData: cp.CA()},
		// Warnings (Pod Security's, say) are the test's to check, not to
		// print.
		WarningHandler: rest.NoWarnings{},
	}
}

// AdminConfig returns a client configuration for AdminUser, who may do
// anything, without client-side rate limits (tests poll).
func (cp *ControlPlane) AdminConfig() *rest.Config {
	cfg := cp.Config(cp.adminToken)
	cfg.QPS, cfg.Burst = -1, 0
	return cfg
}

// AdminClient returns a clientset for AdminUser.
func (cp *ControlPlane) AdminClient() (k8s.Interface, error) {
	return k8s.NewForConfig(cp.AdminConfig())
}

// ServiceAccountToken returns a token of the service account namespace/name,
// from the TokenRequest API as the kubelet gets one for a pod: the
// service account's own identity, for an hour.
func (cp *ControlPlane) ServiceAccountToken(ctx context.Context, namespace, name string) (string, error) {
	c, err := cp.AdminClient()
	if err != nil {
		return "", err
	}
	hour := int64(3600)
	tr, err := c.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &hour}},
		metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token of service account %s/%s: %w", namespace, name, err)
	}
	return tr.Status.Token, nil
}

// Kubeconfig returns a kubeconfig file's content that reaches the API
// server with the token, for programs such as spearlet.
func (cp *ControlPlane) Kubeconfig(token string) ([]byte, error) {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["spear-test"] = &clientcmdapi.Cluster{Server: cp.URL(), CertificateAuthorityData: cp.CA()}
	cfg.AuthInfos["spear-test"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["spear-test"] = &clientcmdapi.Context{Cluster: "spear-test", AuthInfo: "spear-test"}
	cfg.CurrentContext = "spear-test"
	return clientcmd.Write(*cfg)
}

// Logs returns the last lines of each server's output, for a failing
// test's report.
func (cp *ControlPlane) Logs(lines int) string {
	var b strings.Builder
	for _, name := range []string{"etcd", "kube-apiserver"} {
		out, _ := os.ReadFile(filepath.Join(cp.dir, name+".log"))
		l := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
		if len(l) > lines {
			l = l[len(l)-lines:]
		}
		fmt.Fprintf(&b, "--- %s (last %d lines)\n%s\n", name, len(l), strings.Join(l, "\n"))
	}
	return b.String()
}

// spawn starts bins/name with args, appending its output to dir/name.log.
func (cp *ControlPlane) spawn(name string, args ...string) (*server, error) {
	logPath := filepath.Join(cp.dir, name+".log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child has its own copy
	cmd := exec.Command(filepath.Join(cp.bins, name), args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	s := &server{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		s.err = cmd.Wait()
		close(s.done)
	}()
	return s, nil
}

// stop sends SIGTERM, then SIGKILL after stopTimeout, and waits for the
// process to exit.
func (s *server) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
		return
	case <-time.After(stopTimeout):
	}
	_ = s.cmd.Process.Kill()
	<-s.done
}

// waitReady polls url until it answers 200, the process exits, or
// readyTimeout passes.
func waitReady(ctx context.Context, s *server, url string, caPEM []byte, token string) error {
	tr := &http.Transport{}
	if caPEM != nil {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(caPEM)
		tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	var last string
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := hc.Do(req)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%s: %s", resp.Status, body)
		} else {
			last = err.Error()
		}
		t := time.NewTimer(pollInterval)
		select {
		case <-s.done:
			t.Stop()
			exit := s.err
			if exit == nil {
				exit = errors.New("exit status 0")
			}
			return fmt.Errorf("%s exited before it was ready (%w); see %s", s.name, exit, s.log)
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%s not ready: %w (last answer: %s); see %s", s.name, ctx.Err(), last, s.log)
		case <-t.C:
		}
	}
}

// freePort returns a loopback port that was free a moment ago. The caller
// retries with another if a server cannot bind it.
func freePort() int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(fmt.Sprintf("kubetest: no free loopback port: %v", err))
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
