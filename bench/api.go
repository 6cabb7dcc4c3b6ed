package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/agent"
	"github.com/spear-go/spear/client"
	"github.com/spear-go/spear/proto/agentpb"
	"github.com/spear-go/spear/proto/transportpb"
	"github.com/spear-go/spear/runtime"
	"github.com/spear-go/spear/runtime/process"
)

// The agent comparisons: what the whole of the agent's path adds to an
// invocation, through its HTTP and gRPC APIs, to a process instance of
// the minimal SDK binary, against a plain Go echo server of the same kind
// on the same machine.

// daemon is a spearlet daemon (agent.Run, as `spearlet serve` runs it)
// serving one process function, "echo", with one instance of the minimal
// SDK binary, and the API clients the comparisons call it with.
type daemon struct {
	api  apiClients
	stop func()
}

// apiClients are the clients of a daemon's two APIs. apiConnect is the
// one place that says how to reach the APIs (address, socket, token):
// the comparisons take their connections from it.
type apiClients struct {
	http *client.Client
	grpc agentpb.AgentClient
	cc   *grpc.ClientConn
}

// apiConnect makes the API clients of the daemon listening on httpAddr and
// grpcAddr, which authenticate with token, sharing hc for HTTP with the
// baseline, so both keep their connections alive the same way.
func apiConnect(httpAddr, grpcAddr net.Addr, token string, hc *http.Client) (apiClients, error) {
	cc, err := grpc.NewClient(grpcAddr.String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(bearer(token)))
	if err != nil {
		return apiClients{}, err
	}
	return apiClients{
		http: &client.Client{Addr: httpAddr.String(), Token: token, HTTPClient: hc},
		grpc: agentpb.NewAgentClient(cc),
		cc:   cc,
	}, nil
}

// bearer sends the API token with every gRPC call, over loopback without
// TLS as the daemon's default listener is.
type bearer string

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials.
func (bearer) RequireTransportSecurity() bool { return false }

func (a apiClients) close() { a.cc.Close() }

// startDaemon runs the daemon until stop, and waits until its function
// answers.
func startDaemon(ctx context.Context, hc *http.Client) (*daemon, error) {
	dir, err := os.MkdirTemp("", "spear-bench-")
	if err != nil {
		return nil, err
	}
	worker, err := minimalWorker(ctx, dir)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	// A state directory and token of its own, so that the daemon neither
	// takes nor needs a real spearlet's.
	token := rand.Text() + rand.Text() // 52 characters; the daemon wants 32 or more
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	cfg, err := agent.ParseConfig(fmt.Appendf(nil, `state_dir: %q
api: {http_addr: "127.0.0.1:0", grpc_addr: "127.0.0.1:0", token_file: %q}
functions:
  - {name: echo, runtime: process, command: %q, min_instances: 1, max_instances: 1}
`, filepath.Join(dir, "state"), tokenFile, worker))
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	type addrs struct{ http, grpc net.Addr }
	ready := make(chan addrs, 1)
	runCtx, cancel := context.WithCancel(context.Background())
	ended := make(chan error, 1)
	go func() {
		ended <- agent.Run(runCtx, cfg, agent.RunOptions{
			Runtimes: map[spear.RuntimeType]agent.NewRuntime{
				spear.Process: func(env agent.RuntimeEnv) (runtime.Runtime, error) {
					return process.New(process.Options{Factory: env.Factory, Logger: env.Logger})
				},
			},
			Ready: func(h, g net.Addr) { ready <- addrs{h, g} },
		})
	}()
	stop := func() {
		cancel()
		<-ended
		os.RemoveAll(dir)
	}
	var at addrs
	select {
	case at = <-ready:
	case err := <-ended:
		os.RemoveAll(dir)
		return nil, fmt.Errorf("daemon: %w", err)
	case <-ctx.Done():
		stop()
		return nil, ctx.Err()
	}
	api, err := apiConnect(at.http, at.grpc, token, hc)
	if err != nil {
		stop()
		return nil, err
	}
	d := &daemon{api: api, stop: func() { api.close(); stop() }}
	// The instance starts with the daemon; wait for its first answer.
	wctx, wcancel := context.WithTimeout(ctx, time.Minute)
	defer wcancel()
	for {
		_, err := api.http.Invoke(wctx, "echo", []byte("x"), client.InvokeOptions{Method: "echo"})
		if err == nil {
			return d, nil
		}
		select {
		case <-wctx.Done():
			d.stop()
			return nil, fmt.Errorf("the daemon's echo function did not answer: %w", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// httpPair compares an invocation through the daemon's HTTP API with a
// POST to a plain net/http server that echoes the body.
func httpPair(size int) func(context.Context) (*pair, error) {
	return func(ctx context.Context) (*pair, error) {
		hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
		d, err := startDaemon(ctx, hc)
		if err != nil {
			return nil, err
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			d.stop()
			return nil, err
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			_, _ = w.Write(b)
		}), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		in := payload(size)
		url := "http://" + ln.Addr().String() + "/echo"
		base := func() error {
			resp, err := hc.Post(url, "application/octet-stream", bytes.NewReader(in))
			if err != nil {
				return err
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil && len(b) != size {
				err = errShortEcho
			}
			return err
		}
		ours := func() error {
			res, err := d.api.http.Invoke(context.Background(), "echo", in, client.InvokeOptions{Method: "echo"})
			if err == nil && len(res.Payload) != size {
				err = errShortEcho
			}
			return err
		}
		return &pair{ours: serial(ours), base: serial(base), close: func() {
			_ = srv.Close()
			d.stop()
			hc.CloseIdleConnections()
		}}, nil
	}
}

// grpcAPIPair compares an invocation through the daemon's gRPC API with a
// unary call to a plain grpc-go echo service, both over loopback tcp.
func grpcAPIPair(ctx context.Context) (*pair, error) {
	const size = 64
	d, err := startDaemon(ctx, http.DefaultClient)
	if err != nil {
		return nil, err
	}
	g, err := newGRPCServer("tcp")
	if err != nil {
		d.stop()
		return nil, err
	}
	in := payload(size)
	base := func() error {
		out := new(transportpb.Frame)
		if err := g.cc.Invoke(context.Background(), echoMethod, &transportpb.Frame{Data: in}, out); err != nil {
			return err
		}
		if len(out.Data) != size {
			return errShortEcho
		}
		return nil
	}
	ours := func() error {
		res, err := d.api.grpc.Invoke(context.Background(), &agentpb.InvokeRequest{Function: "echo", Method: "echo", Payload: in})
		if err == nil && len(res.Payload) != size {
			err = errShortEcho
		}
		return err
	}
	if err := errors.Join(base(), ours()); err != nil { // connect both before timing
		g.close()
		d.stop()
		return nil, err
	}
	return &pair{ours: serial(ours), base: serial(base), close: func() { g.close(); d.stop() }}, nil
}
