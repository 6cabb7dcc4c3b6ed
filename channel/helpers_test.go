package channel_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/channel"
	"github.com/spear-go/spear/internal/auth"
	"github.com/spear-go/spear/internal/session"
	"github.com/spear-go/spear/proto/spearpb"
	"github.com/spear-go/spear/sdk"
	"github.com/spear-go/spear/transport"
	"github.com/spear-go/spear/wire"
)

// testTimeout bounds every wait in these tests: generous, for a loaded
// machine, and never expected to be reached.
const testTimeout = 30 * time.Second

// testCtx returns a context that ends after testTimeout or with the test.
func testCtx(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	tb.Cleanup(cancel)
	return ctx
}

// newFactory returns a factory closed when the test ends.
func newFactory(tb testing.TB, opts channel.Options) *channel.Factory {
	tb.Helper()
	f, err := channel.NewFactory(opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.Close() })
	return f
}

// newChannel creates a channel of the given type for a fresh instance of a
// runtime type that supports it.
func newChannel(tb testing.TB, f *channel.Factory, typ channel.Type, cfg channel.Config) *channel.Channel {
	tb.Helper()
	rt := spear.Process
	if typ == channel.Memory {
		rt = spear.Wasm
	}
	cfg.Type = typ
	ch, err := f.CreateChannel(testCtx(tb), rt, &cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return ch
}

// child is an instance running as a child process (the test binary in
// child mode, see runChild).
type child struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has been reaped
	err  error         // Wait's result, set before done closes
}

// startChild starts a child instance with ch's credentials, as the leader
// of its own process group. The child is killed and reaped when the test
// ends, if it has not ended before.
func startChild(tb testing.TB, ch *channel.Channel) *child {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	release, err := ch.Credentials().HandOver(cmd, channel.SecretViaFD)
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	err = cmd.Start()
	release()
	if err != nil {
		tb.Fatal(err)
	}
	c := &child{cmd: cmd, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	tb.Cleanup(func() {
		c.kill()
		<-c.done
	})
	return c
}

// pid returns the child's process id, which is also its process group id.
func (c *child) pid() int { return c.cmd.Process.Pid }

// kill sends SIGKILL to the child's process group.
func (c *child) kill() { _ = syscall.Kill(-c.pid(), syscall.SIGKILL) }

// startInProcess serves ch's instance with testHandler from this process,
// until the test ends. It returns the instance and Serve's result, which
// arrives when Serve returns.
func startInProcess(tb testing.TB, ch *channel.Channel, mod func(*sdk.Options)) (*sdk.Instance, <-chan error) {
	tb.Helper()
	cr := ch.Credentials()
	var in *sdk.Instance
	tlsCfg, err := cr.TLS.ClientConfig(cr.Secret, cr.Address)
	if err != nil {
		tb.Fatal(err)
	}
	opts := sdk.Options{
		ID: cr.ID, Secret: cr.Secret, Channel: string(cr.Type), Address: cr.Address, TLS: tlsCfg,
		Handler:    testHandler(cr.ID, func(p []byte) error { return in.Send(p) }),
		MaxBackoff: 200 * time.Millisecond,
	}
	if mod != nil {
		mod(&opts)
	}
	in, err = sdk.New(opts)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		done <- in.Serve(ctx)
	}()
	tb.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	return in, done
}

// waitConnected waits until ch has an instance connection.
func waitConnected(tb testing.TB, ch *channel.Channel) {
	tb.Helper()
	if err := ch.WaitConnected(testCtx(tb)); err != nil {
		tb.Fatalf("instance %s never connected: %v", ch.InstanceID(), err)
	}
}

// echo runs the default method and checks the answer names ch's instance
// and carries the payload.
func echo(ctx context.Context, ch *channel.Channel, payload string) error {
	out, err := channel.Execute(ctx, ch, channel.Invocation{Payload: []byte(payload)})
	if err != nil {
		return err
	}
	if want := ch.InstanceID().String() + "|" + payload; string(out) != want {
		return errors.New("got answer " + string(out) + ", want " + want)
	}
	return nil
}

// dial opens a raw transport connection to where cr says, over TLS when
// cr says so.
func dial(tb testing.TB, cr channel.Credentials) transport.Conn {
	tb.Helper()
	cfg, err := cr.TLS.ClientConfig(cr.Secret, cr.Address)
	if err != nil {
		tb.Fatal(err)
	}
	conn, err := transport.Dial(testCtx(tb), string(cr.Type), cr.Address, transport.DialConfig{TLS: cfg})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return conn
}

// connectAs dials cr's address and runs the instance's handshake as id
// with secret. The connection is closed when the test ends.
func connectAs(tb testing.TB, cr channel.Credentials, id spear.InstanceID, secret spear.Secret) (transport.Conn, error) {
	tb.Helper()
	conn := dial(tb, cr)
	_, err := auth.Connect(testCtx(tb), conn, id, secret)
	return conn, err
}

// rawInstance is an authenticated connection run by a bare session, for
// tests that need an instance the SDK would not be: one that never
// reconnects, or answers only when told to.
type rawInstance struct {
	sess    *session.Session
	started chan struct{} // receives once per request that reaches the handler
	release chan struct{} // closed to let held requests answer
}

// startRaw authenticates as cr's instance and serves requests: each one
// signals started, then waits for release (or the request's end) before
// answering "raw|<nonce>".
func startRaw(tb testing.TB, cr channel.Credentials, nonce string) *rawInstance {
	tb.Helper()
	conn, err := connectAs(tb, cr, cr.ID, cr.Secret)
	if err != nil {
		tb.Fatal(err)
	}
	r := &rawInstance{started: make(chan struct{}, 64), release: make(chan struct{})}
	r.sess = session.Start(conn, session.Config{
		Handler: session.HandlerFunc(func(ctx context.Context, req wire.Frame, resp *session.Responder) {
			r.started <- struct{}{}
			select {
			case <-r.release:
			case <-ctx.Done():
				return
			}
			_ = resp.Send(&wire.Frame{Type: wire.TypeExecuteResponse, Payload: executeResponse("raw|" + nonce)})
		}),
	})
	tb.Cleanup(func() {
		r.sess.Close(nil)
		r.sess.Wait()
	})
	return r
}

// readUntilClosed reads frames from conn until it fails, returning the
// frames read and the error that ended reading.
func readUntilClosed(conn transport.Conn) ([]wire.Frame, error) {
	var frames []wire.Frame
	for {
		f, err := conn.ReadFrame()
		if err != nil {
			return frames, err
		}
		frames = append(frames, f)
	}
}

// executeResponse encodes an EXECUTE_RESPONSE payload.
func executeResponse(payload string) []byte {
	b, _ := proto.Marshal(&spearpb.ExecuteResponse{Payload: []byte(payload)})
	return b
}
