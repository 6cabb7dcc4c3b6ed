package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/channel"
	"github.com/spear-go/spear/internal/auth"
	"github.com/spear-go/spear/internal/session"
	"github.com/spear-go/spear/transport/unix"
)

// childEnv, when set, makes the running binary the instance process of
// the memory comparison (see IsChild).
const childEnv = "SPEAR_BENCH_CHILD"

// IsChild reports whether this process was started by a comparison as its
// peer: by the memory comparison to hold the instance ends of its
// channels, or by the start comparison as the instance it starts. A binary that
// runs the comparison (Options.Exe) must then call ChildMain instead of
// its usual work.
func IsChild() bool { return os.Getenv(childEnv) != "" || os.Getenv(startEnv) != "" }

// ChildMain is the whole life of the memory comparison's instance
// process: it reads credentials from stdin, opens and authenticates one
// connection per credential, writes "ready" to stdout, and holds the
// connections, answering heartbeats, until stdin closes. It returns the
// process's exit status.
func ChildMain() int {
	if status, ok := startChild(); ok {
		return status
	}
	if err := holdConnections(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "spear-bench instance process:", err)
		return 1
	}
	return 0
}

// runIdle measures what idle authenticated unix channels cost the agent:
// resident memory and Go heap plus stacks, per channel. The instance ends
// live in a child process so that they are not counted.
func runIdle(ctx context.Context, o Options, p *printer) error {
	n := o.IdleChannels
	// Each channel holds a listening socket and a connection. Where the
	// open-file limit cannot be raised far enough (a container without
	// CAP_SYS_RESOURCE), as many channels as fit are measured, and "n
	// idle10k" says how many.
	if err := raiseFileLimit(2*n + 256); err != nil {
		limit, lerr := fileLimit()
		if lerr != nil || (int(limit)-256)/2 < n/2 {
			return err
		}
		n = (int(limit) - 256) / 2
	}
	exe, err := executable(o)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	f, err := channel.NewFactory(channel.Options{})
	if err != nil {
		return err
	}
	defer f.Close()

	if o.MemProfile != "" {
		// Record every allocation, so the profile is exact per channel.
		defer func(rate int) { runtime.MemProfileRate = rate }(runtime.MemProfileRate)
		runtime.MemProfileRate = 1
	}
	rssBefore, goBefore, err := footprint()
	if err != nil {
		return err
	}
	chans := make([]*channel.Channel, n)
	creds := new(bytes.Buffer)
	fmt.Fprintln(creds, n)
	for i := range chans {
		ch, err := f.CreateChannel(ctx, spear.Process, &channel.Config{Type: channel.Unix})
		if err != nil {
			return err
		}
		chans[i] = ch
		cr := ch.Credentials()
		fmt.Fprintf(creds, "%s %s %s\n", cr.ID, hex.EncodeToString(cr.Secret), cr.Address)
	}

	cmd := exec.CommandContext(ctx, exe)
	cmd.Env = append(os.Environ(), childEnv+"=idle")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start instance process: %w", err)
	}
	defer func() {
		stdin.Close() // the child's cue to close its connections and exit
		_ = cmd.Wait()
	}()
	if _, err := creds.WriteTo(stdin); err != nil {
		return fmt.Errorf("hand credentials to instance process: %w", err)
	}
	creds = nil
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if line != "ready\n" {
		return fmt.Errorf("instance process did not connect its %d channels (%q, %w)", n, line, err)
	}
	for _, ch := range chans {
		if err := ch.WaitConnected(ctx); err != nil {
			return err
		}
	}

	rssAfter, goAfter, err := footprint()
	if err != nil {
		return err
	}
	if o.MemProfile != "" {
		if err := writeHeapProfile(o.MemProfile); err != nil {
			return err
		}
	}
	perKiB := func(before, after uint64) float64 { return (float64(after) - float64(before)) / float64(n) / 1024 }
	p.line("mem", "idle10k", "%.1f", perKiB(rssBefore, rssAfter))
	p.line("mem", "idle10k.go", "%.1f", perKiB(goBefore, goAfter))
	p.line("mem", "idle10k.rss_before", "%d", rssBefore/1024)
	p.line("mem", "idle10k.rss_after", "%d", rssAfter/1024)
	p.line("n", "idle10k", "%d", n)
	p.line("n", "idle10k.goroutines", "%d", runtime.NumGoroutine())
	runtime.KeepAlive(chans)
	return nil
}

// footprint returns, in bytes, the process's resident set and the Go
// heap and stacks in use, after returning free memory to the system.
func footprint() (rss, goMem uint64, err error) {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	rss, err = residentBytes()
	return rss, ms.HeapInuse + ms.StackInuse, err
}

// writeHeapProfile writes the live heap, for pprof, to path.
func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// holdConnections is ChildMain's work.
func holdConnections(in io.Reader, out io.Writer) error {
	sc := bufio.NewScanner(in)
	if !sc.Scan() {
		return fmt.Errorf("no channel count on stdin: %w", sc.Err())
	}
	n, err := strconv.Atoi(sc.Text())
	if err != nil {
		return fmt.Errorf("channel count: %w", err)
	}
	if err := raiseFileLimit(n + 256); err != nil {
		return err
	}
	type cred struct {
		id     spear.InstanceID
		secret []byte
		addr   string
	}
	creds := make([]cred, 0, n)
	for len(creds) < n && sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) != 3 {
			return fmt.Errorf("bad credential line %q", sc.Text())
		}
		id, err := spear.ParseInstanceID(fields[0])
		if err != nil {
			return err
		}
		secret, err := hex.DecodeString(fields[1])
		if err != nil {
			return err
		}
		creds = append(creds, cred{id, secret, fields[2]})
	}
	if len(creds) < n {
		return fmt.Errorf("got %d of %d credentials: %w", len(creds), n, sc.Err())
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sessions := make([]*session.Session, n)
	defer func() {
		for _, s := range sessions {
			if s != nil {
				s.Close(nil)
			}
		}
	}()
	var g errgroup.Group
	g.SetLimit(16) // the agent handshakes each on its own goroutine; do not flood it
	for i, c := range creds {
		g.Go(func() error {
			conn, err := unix.Dial(ctx, c.addr, unix.Options{})
			if err != nil {
				return err
			}
			if _, err := auth.Connect(ctx, conn, c.id, c.secret); err != nil {
				conn.Close()
				return fmt.Errorf("%s: %w", c.id, err)
			}
			// No handler and no heartbeats of our own: the session only
			// answers the agent's heartbeats.
			sessions[i] = session.Start(conn, session.Config{})
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	if _, err := fmt.Fprintln(out, "ready"); err != nil {
		return err
	}
	for sc.Scan() { // until the agent closes stdin
	}
	if err := sc.Err(); err != nil && !errors.Is(err, os.ErrClosed) {
		return err
	}
	return nil
}
