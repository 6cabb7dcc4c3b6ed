package agent

import (
	"io"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/spear-go/spear/proto/agentpb"
)

// newGRPCClient serves a's gRPC API on a loopback port and returns a
// client of it; both end with the test.
func newGRPCClient(t *testing.T, a *Agent) agentpb.AgentClient {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	a.RegisterGRPC(srv)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return agentpb.NewAgentClient(conn)
}

func TestGRPC(t *testing.T) {
	a, _ := newTestAgent(t, testConfig(nil))
	c := newGRPCClient(t, a)
	ctx := testCtx(t)

	res, err := c.Invoke(ctx, &agentpb.InvokeRequest{Function: "fn", Payload: []byte("hi")})
	if err != nil || string(res.Payload) != res.Instance+"|hi" {
		t.Fatalf("Invoke = %v, %v", res, err)
	}
	st, err := c.InvokeStream(ctx, &agentpb.InvokeRequest{Function: "fn", Method: "stream", Payload: []byte("a b c")})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	var first string
	for {
		ch, err := st.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if first == "" {
			first = ch.Instance
		}
		got = append(got, string(ch.Data))
	}
	if len(got) != 3 || got[0] != "a" || got[2] != "c" || first != res.Instance {
		t.Errorf("stream chunks %q from %q", got, first)
	}

	for _, tt := range []struct {
		req  *agentpb.InvokeRequest
		code codes.Code
	}{
		{&agentpb.InvokeRequest{Function: "nope"}, codes.NotFound},
		{&agentpb.InvokeRequest{Function: "fn", Method: "fail"}, codes.Internal},
		{&agentpb.InvokeRequest{Function: "fn", Method: "wait", Timeout: durationpb.New(50 * time.Millisecond)}, codes.DeadlineExceeded},
		{&agentpb.InvokeRequest{Function: "fn", Timeout: durationpb.New(0)}, codes.InvalidArgument},
	} {
		if _, err := c.Invoke(ctx, tt.req); status.Code(err) != tt.code {
			t.Errorf("Invoke(%v): %v, want %v", tt.req, err, tt.code)
		}
	}
	fns, err := c.ListFunctions(ctx, &agentpb.ListFunctionsRequest{})
	if err != nil || len(fns.Functions) != 1 || fns.Functions[0].Name != "fn" || fns.Functions[0].Instances != 1 {
		t.Errorf("ListFunctions = %v, %v", fns, err)
	}
	insts, err := c.ListInstances(ctx, &agentpb.ListInstancesRequest{})
	if err != nil || len(insts.Instances) != 1 || insts.Instances[0].Status != "running" || insts.Instances[0].Stats.GetRequests() == 0 {
		t.Errorf("ListInstances = %v, %v", insts, err)
	}
	if _, err := c.DeleteInstance(ctx, &agentpb.DeleteInstanceRequest{Id: "process:nope"}); status.Code(err) != codes.NotFound {
		t.Errorf("DeleteInstance(nope): %v", err)
	}
	in, err := c.CreateInstance(ctx, &agentpb.CreateInstanceRequest{Function: "fn"})
	if err != nil || in.Status != "running" {
		t.Fatalf("CreateInstance = %v, %v", in, err)
	}
	if _, err := c.DeleteInstance(ctx, &agentpb.DeleteInstanceRequest{Id: in.Id}); err != nil {
		t.Errorf("DeleteInstance: %v", err)
	}
	// This agent was given nothing to read its configuration from.
	if _, err := c.Reload(ctx, &agentpb.ReloadRequest{}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("Reload: %v, want FailedPrecondition", err)
	}
}
