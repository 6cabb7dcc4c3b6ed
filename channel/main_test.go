package channel_test

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/sdk"
)

// childEnv, set to 1, makes the test binary run as an SDK instance instead
// of running tests (see startChild).
const childEnv = "SPEAR_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		os.Exit(runChild())
	}
	goleak.VerifyTestMain(m)
}

// runChild is the whole life of a child instance: it serves testHandler
// with the SPEAR_* settings from the environment until SIGTERM, the agent
// terminates it, or Serve fails.
func runChild() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	id, err := spear.ParseInstanceID(os.Getenv(spear.EnvInstanceID))
	if err != nil {
		fmt.Fprintln(os.Stderr, "test child:", err)
		return 2
	}
	var in *sdk.Instance
	in, err = sdk.New(sdk.Options{
		Handler:    testHandler(id, func(p []byte) error { return in.Send(p) }),
		MaxBackoff: 200 * time.Millisecond,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "test child:", err)
		return 2
	}
	if err := in.Serve(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "test child:", err)
		return 1
	}
	return 0
}

// testHandler is what every test instance runs, in a child process or in
// process. send, which may be nil, sends a one-way message to the agent.
//
//   - method "" answers "<full instance id>|<payload>";
//   - method "sleep" first sends "sleeping|<payload>" (when it can), then
//     sleeps for the duration in the payload or until ctx ends;
//   - method "stream" writes as many chunks as the payload says, "chunk-<i>";
//   - method "send" sends the payload as a one-way message and answers "sent".
func testHandler(id spear.InstanceID, send func([]byte) error) sdk.HandlerFunc {
	return func(ctx context.Context, r *sdk.Request) ([]byte, error) {
		switch r.Method {
		case "":
			return []byte(id.String() + "|" + string(r.Payload)), nil
		case "sleep":
			d, err := time.ParseDuration(string(r.Payload))
			if err != nil {
				return nil, sdk.Error(spear.CodeInvalidMessage, err.Error())
			}
			if send != nil {
				_ = send([]byte("sleeping|" + string(r.Payload)))
			}
			t := time.NewTimer(d)
			defer t.Stop()
			select {
			case <-t.C:
				return []byte("slept"), nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		case "stream":
			n, err := strconv.Atoi(string(r.Payload))
			if err != nil {
				return nil, sdk.Error(spear.CodeInvalidMessage, err.Error())
			}
			for i := range n {
				if _, err := fmt.Fprintf(r, "chunk-%d", i); err != nil {
					return nil, err
				}
			}
			return nil, nil
		case "send":
			if send == nil {
				return nil, sdk.Error(spear.CodeUnavailable, "cannot send")
			}
			if err := send(r.Payload); err != nil {
				return nil, err
			}
			return []byte("sent"), nil
		}
		return nil, sdk.Error(spear.CodeNotFound, "no method "+r.Method)
	}
}
