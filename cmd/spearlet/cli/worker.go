package cli

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/sdk"
)

// newWorkerCmd is the instance the default "echo" function runs: this
// binary, connecting back to the daemon with the SPEAR_* environment.
func newWorkerCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "worker",
		Short:  "Serve as a function instance (started by the daemon)",
		Hidden: true,
		Args:   cobra.NoArgs,
		Run: func(*cobra.Command, []string) {
			sdk.Run(work) // exits the process on error
		},
	}
}

// workLog is where the "log" method writes: JSON records on stderr.
var workLog = slog.New(slog.NewJSONHandler(os.Stderr, nil))

// maxSleep bounds the "sleep" method.
const maxSleep = 10 * time.Minute

// work is the worker's function. Methods:
//
//   - "" answers "<instance id>|<payload>";
//   - "upper" answers the payload in upper case;
//   - "stream" writes the payload back in up to four chunks;
//   - "sleep" sleeps for the duration in the payload ("250ms"), then
//     answers "<instance id>|slept <duration>";
//   - "fail" fails with the payload as the message;
//   - "log" writes the payload to stderr as a JSON log record (which the
//     agent logs as a record of its own) and answers "logged".
func work(ctx context.Context, req *sdk.Request) ([]byte, error) {
	id := os.Getenv(spear.EnvInstanceID)
	switch req.Method {
	case "":
		return append([]byte(id+"|"), req.Payload...), nil
	case "upper":
		return bytes.ToUpper(req.Payload), nil
	case "stream":
		for _, chunk := range chunks(req.Payload, 4) {
			if _, err := req.Write(chunk); err != nil {
				return nil, err
			}
		}
		return nil, nil
	case "sleep":
		d, err := time.ParseDuration(strings.TrimSpace(string(req.Payload)))
		if err != nil || d < 0 || d > maxSleep {
			return nil, sdk.Error(spear.CodeInternal, fmt.Sprintf("sleep wants a duration up to %s, such as 250ms, not %q", maxSleep, req.Payload))
		}
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return []byte(id + "|slept " + d.String()), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	case "fail":
		return nil, sdk.Error(spear.CodeInternal, string(req.Payload))
	case "log":
		workLog.Info(string(req.Payload), "method", req.Method, "bytes", len(req.Payload))
		return []byte("logged"), nil
	}
	return nil, sdk.Error(spear.CodeNotFound, fmt.Sprintf("no method %q (have \"\", upper, stream, sleep, fail, log)", req.Method))
}

// chunks splits b into up to n nearly equal, non-empty pieces.
func chunks(b []byte, n int) [][]byte {
	var out [][]byte
	for i := n; i > 0 && len(b) > 0; i-- {
		k := (len(b) + i - 1) / i
		out = append(out, b[:k])
		b = b[k:]
	}
	return out
}
