package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/channel"
	"github.com/spear-go/spear/internal/checkout"
	"github.com/spear-go/spear/runtime"
	"github.com/spear-go/spear/runtime/process"
)

// The SDK comparisons: what the Python and TypeScript SDKs cost over their
// own language's floor. Ours is the agent's unix channel to an echo
// instance on the SDK, a child process started by the process runtime;
// the baseline is the same Go caller doing a raw fixed-size ping-pong over
// a unix socket with a child in the same language that echoes what it
// reads, with plain sockets and nothing else. Both children run the same
// interpreter, so the ratio is the SDK and the protocol, not the language.

// foreign is an SDK in another language.
type foreign struct {
	name    string
	program string // the interpreter
	// instance is the echo instance's source on the SDK, given the SDK's
	// directory; floor is the raw echo's source. ext is their file
	// extension.
	instance func(sdk string) string
	floor    string
	ext      string
	// sdk returns the SDK's directory under a checkout, and an error when
	// it is not ready to use.
	sdk func(root string) (string, error)
	// env is the instance's extra environment.
	env func(sdk string) []string
}

var python = foreign{
	name: "python", program: "python3", ext: ".py",
	instance: func(string) string {
		return "import spear\n\nasync def echo(req):\n    return req.payload\n\nspear.run(echo)\n"
	},
	floor: `import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
n = int(sys.argv[2])
buf = bytearray(n)
view = memoryview(buf)
while True:
    got = 0
    while got < n:
        k = s.recv_into(view[got:], n - got)
        if not k:
            sys.exit(0)
        got += k
    s.sendall(buf)
`,
	sdk: func(root string) (string, error) { return checkout.PythonSDK(root), nil },
	env: func(sdk string) []string { return []string{"PYTHONPATH=" + sdk} },
}

var typescript = foreign{
	name: "typescript", program: "node", ext: ".mjs",
	instance: func(sdk string) string {
		return fmt.Sprintf("import { run } from %q;\n\nrun((req) => req.payload);\n", "file://"+filepath.Join(sdk, "dist", "src", "index.js"))
	},
	floor: `import { createConnection } from "node:net";
const n = Number(process.argv[3]);
const s = createConnection(process.argv[2]);
s.setNoDelay?.(true);
let pending = Buffer.alloc(0);
s.on("data", (d) => {
  pending = pending.length ? Buffer.concat([pending, d]) : d;
  while (pending.length >= n) {
    s.write(pending.subarray(0, n));
    pending = pending.subarray(n);
  }
});
s.on("end", () => process.exit(0));
s.on("error", () => process.exit(0));
`,
	sdk: func(root string) (string, error) {
		sdk := checkout.TypeScriptSDK(root)
		if _, err := os.Stat(filepath.Join(sdk, "dist", "src", "index.js")); err != nil {
			return "", fmt.Errorf("the TypeScript SDK is not built: run npm ci in %s", sdk)
		}
		return sdk, nil
	},
	env: func(string) []string { return nil },
}

// errSkip marks a comparison that cannot run here; Run reports it as a
// "skip" line instead of failing.
type errSkip struct{ reason string }

func (e *errSkip) Error() string { return e.reason }

// foreignPair sets up the comparison for lang with payloads of size bytes.
func foreignPair(lang foreign, size int) func(ctx context.Context) (*pair, error) {
	return func(ctx context.Context) (*pair, error) {
		if _, err := exec.LookPath(lang.program); err != nil {
			return nil, &errSkip{lang.program + " is not installed"}
		}
		cwd, _ := os.Getwd()
		root := checkout.Root(cwd)
		if root == "" {
			return nil, &errSkip{"not run inside a Spear checkout, where the SDKs are"}
		}
		sdk, err := lang.sdk(root)
		if err != nil {
			return nil, &errSkip{err.Error()}
		}
		dir, err := os.MkdirTemp("", "spear-bench-"+lang.name+"-")
		if err != nil {
			return nil, err
		}
		cleanup := []func(){func() { os.RemoveAll(dir) }}
		undo := func() {
			for i := len(cleanup) - 1; i >= 0; i-- {
				cleanup[i]()
			}
		}
		write := func(name, src string) (string, error) {
			p := filepath.Join(dir, name+lang.ext)
			return p, os.WriteFile(p, []byte(src), 0o600)
		}
		instance, err := write("instance", lang.instance(sdk))
		if err == nil {
			var floor string
			if floor, err = write("floor", lang.floor); err == nil {
				var e *echoChannel
				if e, err = newForeignEcho(ctx, lang.program, instance, lang.env(sdk)); err == nil {
					cleanup = append(cleanup, e.close)
					var raw *rawUnix
					if raw, err = newForeignFloor(ctx, dir, lang.program, floor, size); err == nil {
						cleanup = append(cleanup, raw.close)
						return &pair{ours: serial(e.execute(size)), base: serial(raw.roundTrip), close: undo}, nil
					}
				}
			}
		}
		undo()
		return nil, err
	}
}

// newForeignEcho starts the echo instance through the process runtime, as
// the agent starts a function, and waits until it is connected.
func newForeignEcho(ctx context.Context, program, script string, env []string) (*echoChannel, error) {
	f, err := channel.NewFactory(channel.Options{})
	if err != nil {
		return nil, err
	}
	rt, err := process.New(process.Options{Factory: f})
	if err != nil {
		f.Close()
		return nil, err
	}
	closeAll := func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_ = rt.Close(sctx)
		cancel()
		f.Close()
	}
	id := spear.InstanceID{Runtime: spear.Process, Name: "bench-echo"}
	set := runtime.Settings{Channel: &channel.Config{Type: channel.Unix}, StartTimeout: 30 * time.Second}
	inst, err := rt.Start(ctx, id, set, process.Spec{Command: program, Args: []string{script}, Env: runtime.EnvOf(env)})
	if err != nil {
		closeAll()
		return nil, err
	}
	return &echoChannel{ch: inst.Channel(), close: closeAll}, nil
}

// newForeignFloor starts the raw echo child and accepts its connection.
func newForeignFloor(ctx context.Context, dir, program, script string, size int) (*rawUnix, error) {
	path := filepath.Join(dir, "floor.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(program, script, path, strconv.Itoa(size))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		ln.Close()
		return nil, err
	}
	r := &rawUnix{dir: dir, ln: ln, out: payload(size), in: make([]byte, size)}
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	stop := func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	select {
	case c, ok := <-accepted:
		if !ok {
			stop()
			ln.Close()
			return nil, errors.New("bench: the raw echo child did not connect")
		}
		r.conn = c
	case <-time.After(30 * time.Second):
		stop()
		ln.Close() // ends the Accept
		return nil, errors.New("bench: the raw echo child did not connect within 30s")
	case <-ctx.Done():
		stop()
		ln.Close()
		return nil, ctx.Err()
	}
	// The child exits at EOF, when close closes the connection.
	r.served.Add(1)
	go func() {
		defer r.served.Done()
		_ = cmd.Wait()
	}()
	return r, nil
}
