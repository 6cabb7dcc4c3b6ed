package agent

import (
	"context"
	"errors"
	"io"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/spear-go/spear/agent/api"
	"github.com/spear-go/spear/proto/agentpb"
)

// RegisterGRPC registers the agent's gRPC service (spear.v1.Agent) on s.
func (a *Agent) RegisterGRPC(s grpc.ServiceRegistrar) {
	agentpb.RegisterAgentServer(s, &grpcService{a: a})
}

// grpcService adapts the Agent to agentpb.AgentServer.
type grpcService struct {
	agentpb.UnimplementedAgentServer
	a *Agent
}

// grpcErr turns an agent error into a gRPC status error. A refusal that
// says when to retry (queue full, crash-loop back-off) also sets the
// retry-after header, in seconds, as HTTP's Retry-After.
func grpcErr(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if d := RetryAfter(err); d > 0 {
		_ = grpc.SetHeader(ctx, metadata.Pairs("retry-after", strconv.Itoa(int((d+time.Second-1)/time.Second))))
	}
	return status.Error(GRPCCode(err), err.Error())
}

func (g *grpcService) ListFunctions(ctx context.Context, _ *agentpb.ListFunctionsRequest) (*agentpb.ListFunctionsResponse, error) {
	resp := &agentpb.ListFunctionsResponse{}
	for _, f := range g.a.Functions() {
		resp.Functions = append(resp.Functions, &agentpb.FunctionInfo{
			Name:           f.Name,
			Runtime:        f.Runtime,
			MinInstances:   uint32(f.MinInstances),
			MaxInstances:   uint32(f.MaxInstances),
			MaxConcurrency: uint32(f.MaxConcurrency),
			Instances:      uint32(f.Instances),
			InFlight:       uint32(f.InFlight),
			Balancer:       f.Balancer,
			Readiness:      f.Readiness,
			Ready:          uint32(f.Ready),
			Queued:         uint32(f.Queued),
			Desired:        uint32(f.Desired),
			Panicking:      f.Panicking,
			Health:         f.Health,
			HealthReason:   f.HealthReason,
			ReadinessMet:   f.ReadinessMet,
			FailedStarts:   uint32(f.FailedStarts),
			NextRetry:      timestamp(f.NextRetry),
			Restarts:       uint32(f.Restarts),
			LastError:      f.LastError,
			LastErrorAt:    timestamp(f.LastErrorAt),
		})
	}
	return resp, nil
}

func (g *grpcService) ListInstances(ctx context.Context, req *agentpb.ListInstancesRequest) (*agentpb.ListInstancesResponse, error) {
	list, err := g.a.Instances(req.GetFunction())
	if err != nil {
		return nil, grpcErr(ctx, err)
	}
	resp := &agentpb.ListInstancesResponse{}
	for _, in := range list {
		resp.Instances = append(resp.Instances, instancePB(in))
	}
	return resp, nil
}

func (g *grpcService) CreateInstance(ctx context.Context, req *agentpb.CreateInstanceRequest) (*agentpb.InstanceInfo, error) {
	in, err := g.a.CreateInstance(ctx, req.GetFunction())
	if err != nil {
		return nil, grpcErr(ctx, err)
	}
	return instancePB(in), nil
}

func (g *grpcService) DeleteInstance(ctx context.Context, req *agentpb.DeleteInstanceRequest) (*agentpb.DeleteInstanceResponse, error) {
	if err := g.a.DeleteInstance(ctx, req.GetId()); err != nil {
		return nil, grpcErr(ctx, err)
	}
	return &agentpb.DeleteInstanceResponse{}, nil
}

func (g *grpcService) InstanceLogs(ctx context.Context, req *agentpb.InstanceLogsRequest) (*agentpb.InstanceLogsResponse, error) {
	n := int(req.GetLines())
	if n == 0 {
		n = defaultLogLines
	}
	lines, err := g.a.Logs(req.GetId(), min(n, maxLogLines))
	if err != nil {
		return nil, grpcErr(ctx, err)
	}
	return &agentpb.InstanceLogsResponse{Lines: lines}, nil
}

func (g *grpcService) FollowInstanceLogs(req *agentpb.InstanceLogsRequest, srv grpc.ServerStreamingServer[agentpb.InstanceLogLine]) error {
	n := int(req.GetLines())
	if n == 0 {
		n = defaultLogLines
	}
	err := g.a.FollowLogs(srv.Context(), req.GetId(), min(n, maxLogLines), func(line string) error {
		return srv.Send(&agentpb.InstanceLogLine{Line: line})
	})
	if err != nil && srv.Context().Err() == nil {
		return grpcErr(srv.Context(), err)
	}
	return err
}

func (g *grpcService) Invoke(ctx context.Context, req *agentpb.InvokeRequest) (*agentpb.InvokeResponse, error) {
	res, err := g.a.Invoke(g.a.grpcCallerTrace(ctx), invocationPB(req))
	if err != nil {
		return nil, grpcErr(ctx, err)
	}
	return &agentpb.InvokeResponse{Payload: res.Payload, Instance: res.Instance.String()}, nil
}

func (g *grpcService) InvokeStream(req *agentpb.InvokeRequest, srv grpc.ServerStreamingServer[agentpb.InvokeChunk]) error {
	s, err := g.a.InvokeStream(g.a.grpcCallerTrace(srv.Context()), invocationPB(req))
	if err != nil {
		return grpcErr(srv.Context(), err)
	}
	defer s.Close()
	instance := s.Instance.String()
	for {
		b, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return grpcErr(srv.Context(), err)
		}
		if err := srv.Send(&agentpb.InvokeChunk{Data: b, Instance: instance}); err != nil {
			return err
		}
		instance = "" // named on the first chunk only
	}
}

func (g *grpcService) Reload(ctx context.Context, _ *agentpb.ReloadRequest) (*agentpb.ReloadResponse, error) {
	res, err := g.a.ReloadConfig(ctx)
	if err != nil {
		return nil, grpcErr(ctx, err)
	}
	return &agentpb.ReloadResponse{Added: res.Added, Changed: res.Changed, Removed: res.Removed, Unchanged: res.Unchanged}, nil
}

func invocationPB(req *agentpb.InvokeRequest) Invocation {
	inv := Invocation{
		Function: req.GetFunction(),
		Method:   req.GetMethod(),
		Payload:  req.GetPayload(),
		Metadata: req.GetMetadata(),
		Key:      req.GetKey(),
	}
	if t := req.GetTimeout(); t != nil {
		inv.Timeout = t.AsDuration()
		if inv.Timeout == 0 {
			inv.Timeout = -1 // an explicit zero is a mistake, not "the default"
		}
	}
	return inv
}

func instancePB(in api.Instance) *agentpb.InstanceInfo {
	pb := &agentpb.InstanceInfo{
		Id:           in.ID,
		Function:     in.Function,
		Runtime:      in.Runtime,
		Status:       in.Status,
		Reason:       in.Reason,
		Created:      timestamppb.New(in.Created),
		Pid:          int64(in.PID),
		InFlight:     uint32(in.InFlight),
		Channel:      in.Channel,
		Connected:    in.Connected,
		Connections:  uint32(in.Connections),
		Health:       in.Health,
		HealthReason: in.HealthReason,
		EjectedUntil: timestamp(in.EjectedUntil),
		Pod:          in.Pod,
		Restarts:     uint32(in.Restarts),
		LastError:    in.LastError,
		LastErrorAt:  timestamp(in.LastErrorAt),
		Stats: &agentpb.ChannelStats{
			MessagesSent:     in.Stats.MessagesSent,
			MessagesReceived: in.Stats.MessagesReceived,
			BytesSent:        in.Stats.BytesSent,
			BytesReceived:    in.Stats.BytesReceived,
			Errors:           in.Stats.Errors,
			Requests:         in.Stats.Latency.Count,
			LatencyMean:      durationpb.New(in.Stats.Latency.Mean),
			LatencyP50:       durationpb.New(in.Stats.Latency.P50),
			LatencyP99:       durationpb.New(in.Stats.Latency.P99),
			Uptime:           durationpb.New(in.Stats.Uptime),
			Connects:         in.Stats.Connects,
			Disconnects:      in.Stats.Disconnects,
		},
		LastHealthCheck: timestamp(in.LastHealthCheck),
	}
	if in.Stats.HeartbeatRTT > 0 {
		pb.Stats.HeartbeatRtt = durationpb.New(in.Stats.HeartbeatRTT)
	}
	return pb
}

// timestamp converts t, leaving a zero time unset.
func timestamp(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}
