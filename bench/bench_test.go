package bench

import (
	"bytes"
	"context"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/channel"
	"github.com/spear-go/spear/internal/rawguest"
	"github.com/spear-go/spear/runtime"
	"github.com/spear-go/spear/runtime/process"
	"github.com/spear-go/spear/runtime/wasm"
)

func TestMain(m *testing.M) {
	if IsChild() {
		os.Exit(ChildMain())
	}
	goleak.VerifyTestMain(m)
}

// TestQuickRun runs every comparison in quick mode and checks that each
// expected line appears and parses. It sets no threshold on the values:
// speed is judged by the command on a quiet machine, not by a test.
func TestQuickRun(t *testing.T) {
	if testing.Short() {
		t.Skip("runs every benchmark comparison: skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	rep, err := Run(ctx, &out, Options{Quick: true, Rounds: 1})
	if err != nil {
		t.Fatalf("Run: %v\noutput so far:\n%s", err, out.String())
	}
	lineRE := regexp.MustCompile(`^(ratio|ops|time|mem|n|us) ([a-z0-9._]+)=([0-9]+(?:\.[0-9]+)?)(µs)?$`)
	machineRE := regexp.MustCompile(`^machine (nproc|cpu|go|load)=.+$`)
	skipRE := regexp.MustCompile(`^skip ([a-z0-9._]+)=(.+)$`)
	got := map[string]float64{}
	skipped := map[string]bool{}
	for _, l := range bytes.Split(bytes.TrimSpace(out.Bytes()), []byte("\n")) {
		if m := skipRE.FindSubmatch(l); m != nil {
			// Only the other languages' SDKs may be missing, and not
			// where .ci/run has set them up.
			if name := string(m[1]); !strings.HasPrefix(name, "python") && !strings.HasPrefix(name, "typescript") || os.Getenv("SPEAR_REQUIRE_SDKS") != "" {
				t.Errorf("skipped: %s", l)
			}
			skipped[string(m[1])] = true
			continue
		}
		if machineRE.Match(l) {
			got["machine"]++
			continue
		}
		m := lineRE.FindSubmatch(l)
		if m == nil {
			t.Errorf("line %q does not parse", l)
			continue
		}
		v, err := strconv.ParseFloat(string(m[3]), 64)
		if err != nil {
			t.Errorf("line %q: %v", l, err)
		}
		got[string(m[1])+" "+string(m[2])] = v
	}
	var want []string
	for _, c := range comparisons {
		switch {
		case c.run != nil, skipped[c.name]:
			continue
		case c.throughput:
			want = append(want, "ops "+c.name, "ops "+c.name+".base")
		}
		want = append(want, "ratio "+c.name, "time "+c.name, "time "+c.name+".base")
	}
	want = append(want, "ratio start", "time start", "time start.base", "mem start.rss", "us wasmstart.agent", "us wasmstart.floor")
	want = append(want, "us coldstart.process", "us coldstart.process.warm", "ops conns1", "ops conns2", "ops conns4", "ratio conns2", "ratio conns4")
	want = append(want, "mem idle10k", "mem idle10k.go", "mem idle10k.rss_before", "mem idle10k.rss_after", "n idle10k")
	for _, w := range want {
		if _, ok := got[w]; !ok {
			t.Errorf("no %q line", w)
		}
	}
	if got["machine"] != 4 {
		t.Errorf("%v machine lines, want nproc, cpu, go and load", got["machine"])
	}
	if len(rep.Figures) != len(bytes.Split(bytes.TrimSpace(out.Bytes()), []byte("\n"))) || rep.Machine.NProc <= 0 {
		t.Errorf("the report has %d figures and machine %+v, for these lines:\n%s", len(rep.Figures), rep.Machine, out.String())
	}
	if got["ratio unix64"] <= 0 {
		t.Errorf("ratio unix64 = %v, want a positive ratio", got["ratio unix64"])
	}
	if t.Failed() {
		t.Logf("output:\n%s", out.String())
	}
}

func TestRunSelects(t *testing.T) {
	var out bytes.Buffer
	o := Options{Quick: true, Rounds: 1, Run: regexp.MustCompile(`^memory64$`)}
	if _, err := Run(context.Background(), &out, o); err != nil {
		t.Fatal(err)
	}
	_, figures, _ := bytes.Cut(out.Bytes(), []byte("machine load="))
	_, figures, _ = bytes.Cut(figures, []byte("\n"))
	if !bytes.HasPrefix(figures, []byte("ratio memory64=")) || bytes.Contains(out.Bytes(), []byte("unix")) {
		t.Errorf("-run memory64 printed:\n%s", out.String())
	}
}

// benchPair runs both sides of a comparison as sub-benchmarks, "spear" and
// "base", so either can be profiled alone, for example
//
//	go test ./bench -run - -bench 'UnixRoundTrip64$/spear' -cpuprofile cpu.out
func benchPair(b *testing.B, setup func(context.Context) (*pair, error)) {
	p, err := setup(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	defer p.close()
	for _, s := range []struct {
		name string
		side side
	}{{"spear", p.ours}, {"base", p.base}} {
		b.Run(s.name, func(b *testing.B) {
			b.ReportAllocs()
			if err := s.side(b.N); err != nil {
				b.Fatal(err)
			}
		})
	}
}

func sized(size int) func(context.Context) (*pair, error) {
	return func(ctx context.Context) (*pair, error) { return unixPair(ctx, size) }
}

func BenchmarkUnixRoundTrip64(b *testing.B)  { benchPair(b, sized(64)) }
func BenchmarkUnixRoundTrip64K(b *testing.B) { benchPair(b, sized(64<<10)) }
func BenchmarkUnixRoundTrip1M(b *testing.B)  { benchPair(b, sized(1<<20)) }

func BenchmarkGRPCRoundTrip64(b *testing.B) {
	benchPair(b, func(ctx context.Context) (*pair, error) { return grpcPair(ctx, 64) })
}

func BenchmarkGRPCRoundTrip64K(b *testing.B) {
	benchPair(b, func(ctx context.Context) (*pair, error) { return grpcPair(ctx, 64<<10) })
}

func BenchmarkMemoryRoundTrip64(b *testing.B) {
	benchPair(b, func(ctx context.Context) (*pair, error) { return memoryPair(ctx, 64) })
}

func BenchmarkConcurrent64(b *testing.B) { benchPair(b, concurrentPair) }

func TestCompare(t *testing.T) {
	old := Report{Figures: []Figure{
		{Kind: "ratio", Name: "unix64", Value: 1.5},
		{Kind: "ops", Name: "concurrent64", Value: 100000},
		{Kind: "mem", Name: "idle10k", Value: 12},
		{Kind: "n", Name: "idle10k", Value: 10000},
	}}
	cur := Report{Figures: []Figure{
		{Kind: "ratio", Name: "unix64", Value: 1.2},       // better
		{Kind: "ops", Name: "concurrent64", Value: 80000}, // 20 % worse
		{Kind: "mem", Name: "idle10k", Value: 12.5},       // 4 % worse: within the threshold
		{Kind: "n", Name: "idle10k", Value: 20000},        // not judged
		{Kind: "ratio", Name: "new64", Value: 9},          // no old figure
	}}
	var out bytes.Buffer
	n, err := Compare(&out, old, cur)
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 || strings.Count(out.String(), "REGRESSION") != 1 || !strings.Contains(out.String(), "concurrent64") {
		t.Errorf("Compare flagged %d:\n%s", n, out.String())
	}
	if !strings.Contains(out.String(), "3 figures") {
		t.Errorf("Compare should judge 3 figures:\n%s", out.String())
	}
}

// BenchmarkAgentRoundTrip64 is the unix64 round trip with the instance in
// a child process (this test binary, as an SDK instance), so that
// -benchmem counts the agent's allocations alone:
//
//	go test ./bench -run - -bench AgentRoundTrip64 -benchmem
func BenchmarkAgentRoundTrip64(b *testing.B) {
	ctx := context.Background()
	f, err := channel.NewFactory(channel.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	rt, err := process.New(process.Options{Factory: f})
	if err != nil {
		b.Fatal(err)
	}
	defer rt.Close(ctx)
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	id := spear.InstanceID{Runtime: spear.Process, Name: "bench-agent"}
	set := runtime.Settings{Channel: &channel.Config{Type: channel.Unix}}
	inst, err := rt.Start(ctx, id, set, process.Spec{Command: exe, Env: runtime.Env{startEnv: "worker"}})
	if err != nil {
		b.Fatal(err)
	}
	op := (&echoChannel{ch: inst.Channel()}).execute(64)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if err := op(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkWasm64(b *testing.B) {
	benchPair(b, func(ctx context.Context) (*pair, error) { return wasmPair(ctx, 64) })
}

// BenchmarkWasmStartAgent starts and stops rawguest.Connect, to profile
// wasmstart.agent (-cpuprofile; ns/op includes the untimed Stop of the
// command's figure, µs/start does not).
func BenchmarkWasmStartAgent(b *testing.B) {
	f, err := channel.NewFactory(channel.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	wrt, err := wasm.New(wasm.Options{Factory: f})
	if err != nil {
		b.Fatal(err)
	}
	defer wrt.Close(context.Background())
	var total float64
	for b.Loop() {
		d, err := timeWasmStarts(context.Background(), wrt, rawguest.Connect, 1, runtime.Settings{StopGrace: time.Millisecond}, nil)
		if err != nil {
			b.Fatal(err)
		}
		total += d
	}
	b.ReportMetric(total/1e3/float64(b.N), "µs/start")
}

func BenchmarkHTTP64(b *testing.B) { benchPair(b, httpPair(64)) }

// BenchmarkInvoke64 is Agent.Invoke (spear) against channel.Execute
// (base); BenchmarkTraced64 Agent.Invoke traced (spear) against untraced
// (base). -benchmem shows the allocations tracing adds when on, and that
// off adds none.
func BenchmarkInvoke64(b *testing.B) { benchPair(b, invokePair(false)) }
func BenchmarkTraced64(b *testing.B) { benchPair(b, invokePair(true)) }
