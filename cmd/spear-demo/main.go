// Command spear-demo shows the communication layer working end to end
// without the daemon: it starts a few instances as child processes (this
// same binary, re-executed in instance mode), gives each its own
// authenticated channel over unix, tcp and grpc, adds an in-process
// instance over memory, talks to every one of them, and prints what
// happened.
//
//	go run ./cmd/spear-demo
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/channel"
	"github.com/spear-go/spear/sdk"
	"github.com/spear-go/spear/transport"
)

// instanceMode is the environment variable that turns this binary into an
// instance.
const instanceMode = "SPEAR_DEMO_INSTANCE"

// verboseChildren passes the instances' own logs through (-v).
var verboseChildren bool

func main() {
	if os.Getenv(instanceMode) != "" {
		sdk.Run(handle)
		return
	}
	perType := flag.Int("instances", 2, "instances per channel type")
	requests := flag.Int("requests", 100, "concurrent requests per instance")
	verbose := flag.Bool("v", false, "log the agent's channel events")
	flag.Parse()
	verboseChildren = *verbose
	if err := run(context.Background(), *perType, *requests, *verbose); err != nil {
		fmt.Fprintln(os.Stderr, "spear-demo:", err)
		os.Exit(1)
	}
}

// handle is the instances' function: the default method answers with the
// instance's id and the payload, "stream" streams the payload back word by
// word.
func handle(ctx context.Context, req *sdk.Request) ([]byte, error) {
	id := os.Getenv(spear.EnvInstanceID)
	switch req.Method {
	case "":
		return []byte(id + " got " + string(req.Payload)), nil
	case "stream":
		for _, w := range strings.Fields(string(req.Payload)) {
			if _, err := req.Write([]byte(w)); err != nil {
				return nil, err
			}
		}
		return nil, nil
	}
	return nil, sdk.Error(spear.CodeNotFound, "no method "+req.Method)
}

type instance struct {
	ch   *channel.Channel
	cmd  *exec.Cmd // nil for the in-process instance
	stop func()
}

func run(ctx context.Context, perType, requests int, verbose bool) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	f, err := channel.NewFactory(channel.Options{Logger: log})
	if err != nil {
		return err
	}
	defer f.Close()

	var insts []*instance
	defer func() {
		for _, in := range insts {
			in.stop()
		}
	}()
	for _, typ := range []channel.Type{channel.Unix, channel.TCP, channel.GRPC} {
		for range perType {
			in, err := startChild(ctx, f, typ)
			if err != nil {
				return err
			}
			insts = append(insts, in)
		}
	}
	mem, err := startInProcess(ctx, f)
	if err != nil {
		return err
	}
	insts = append(insts, mem)

	fmt.Printf("%-28s %-7s %-8s %s\n", "INSTANCE", "CHANNEL", "REQUESTS", "RESULT")
	for _, in := range insts {
		if err := in.ch.WaitConnected(ctx); err != nil {
			return err
		}
		ok, bad := exercise(ctx, in.ch, requests)
		fmt.Printf("%-28s %-7s %-8d %d answered by their own instance, %d wrong\n",
			in.ch.InstanceID(), in.ch.Type(), requests, ok, bad)
		if bad > 0 {
			return fmt.Errorf("instance %s: %d answers crossed or failed", in.ch.InstanceID(), bad)
		}
	}

	first := insts[0].ch
	st, err := channel.ExecuteStream(ctx, first, channel.Invocation{Method: "stream", Payload: []byte("one two three")})
	if err != nil {
		return err
	}
	var chunks []string
	for {
		b, err := st.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		chunks = append(chunks, string(b))
	}
	fmt.Printf("\nstreamed from %s: %q\n", first.InstanceID(), chunks)

	_, err = channel.Execute(ctx, first, channel.Invocation{Method: "nope"})
	fmt.Printf("unknown method on %s: %v\n", first.InstanceID(), err)

	s := first.Stats()
	fmt.Printf("stats of %s: %d sent, %d received, latency p50 %s p99 %s\n",
		first.InstanceID(), s.MessagesSent, s.MessagesReceived, s.Latency.P50, s.Latency.P99)

	if child := insts[0]; child.cmd != nil {
		pending := make(chan error, 1)
		go func() {
			_, err := channel.Execute(ctx, child.ch, channel.Invocation{Method: "stream", Payload: []byte("x")})
			pending <- err
		}()
		_ = child.cmd.Process.Kill()
		_ = child.cmd.Wait()
		<-child.ch.Disconnected()
		_, err := channel.Execute(ctx, child.ch, channel.Invocation{Payload: []byte("after kill")})
		fmt.Printf("after SIGKILL of %s: connected=%v, next request: %v\n", child.ch.InstanceID(), child.ch.IsConnected(), err)
		<-pending
	}
	return nil
}

// exercise sends n concurrent requests and counts the answers that came
// from the right instance with the right payload.
func exercise(ctx context.Context, ch *channel.Channel, n int) (ok, bad int) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			payload := fmt.Sprintf("request-%d", i)
			out, err := channel.Execute(ctx, ch, channel.Invocation{Payload: []byte(payload)})
			want := ch.InstanceID().String() + " got " + payload
			mu.Lock()
			defer mu.Unlock()
			if err == nil && string(out) == want {
				ok++
			} else {
				bad++
			}
		}()
	}
	wg.Wait()
	return ok, bad
}

func startChild(ctx context.Context, f *channel.Factory, typ channel.Type) (*instance, error) {
	// Once the child runs, only it may connect on a unix socket (the
	// kernel names the peer's pid); until then, only its secret admits it.
	var pid atomic.Int64
	onlyChild := func(info transport.Info) error {
		if want := int(pid.Load()); want > 0 && info.PeerPID >= 0 && info.PeerPID != want {
			return fmt.Errorf("peer process %d is not the child %d", info.PeerPID, want)
		}
		return nil
	}
	ch, err := f.CreateChannel(ctx, spear.Process, &channel.Config{Type: typ, CheckPeer: onlyChild})
	if err != nil {
		return nil, err
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), instanceMode+"=1")
	release, err := ch.Credentials().HandOver(cmd, channel.SecretViaFD)
	if err != nil {
		ch.Close()
		return nil, err
	}
	if verboseChildren {
		cmd.Stderr = os.Stderr
	}
	err = cmd.Start()
	release()
	if err != nil {
		ch.Close()
		return nil, err
	}
	pid.Store(int64(cmd.Process.Pid))
	return &instance{ch: ch, cmd: cmd, stop: func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if ch.IsConnected() {
			_ = channel.SendSignal(sctx, ch, channel.SignalTerminate, "", nil)
		}
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-sctx.Done():
			_ = cmd.Process.Kill()
			<-done
		}
		ch.Close()
	}}, nil
}

func startInProcess(ctx context.Context, f *channel.Factory) (*instance, error) {
	ch, err := f.CreateChannel(ctx, spear.Wasm, nil)
	if err != nil {
		return nil, err
	}
	cr := ch.Credentials()
	in, err := sdk.New(sdk.Options{
		ID: cr.ID, Secret: cr.Secret, Channel: string(cr.Type), Address: cr.Address,
		Handler: sdk.HandlerFunc(func(ctx context.Context, r *sdk.Request) ([]byte, error) {
			return []byte(cr.ID.String() + " got " + string(r.Payload)), nil
		}),
	})
	if err != nil {
		ch.Close()
		return nil, err
	}
	sctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = in.Serve(sctx); close(done) }()
	return &instance{ch: ch, stop: func() { cancel(); <-done; ch.Close() }}, nil
}
