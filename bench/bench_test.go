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
	if err := Run(ctx, &out, Options{Quick: true, Rounds: 1}); err != nil {
		t.Fatalf("Run: %v\noutput so far:\n%s", err, out.String())
	}
	lineRE := regexp.MustCompile(`^(ratio|ops|time|mem|n|us) ([a-z0-9._]+)=([0-9]+(?:\.[0-9]+)?)(µs)?$`)
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
	want = append(want, "ratio start", "time start", "time start.base")
	want = append(want, "us coldstart.process", "us coldstart.process.warm", "ops conns1", "ops conns2", "ops conns4", "ratio conns2", "ratio conns4")
	want = append(want, "mem idle", "mem idle.go", "mem idle.rss_before", "mem idle.rss_after", "n idle")
	for _, w := range want {
		if _, ok := got[w]; !ok {
			t.Errorf("no %q line", w)
		}
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
	if err := Run(context.Background(), &out, o); err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(out.Bytes(), []byte("ratio memory64=")) || bytes.Contains(out.Bytes(), []byte("unix")) {
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

// BenchmarkInvoke64 is Agent.Invoke (spear) against channel.Execute
// (base); BenchmarkTraced64 Agent.Invoke traced (spear) against untraced
// (base). -benchmem shows the allocations tracing adds when on, and that
// off adds none.
func BenchmarkInvoke64(b *testing.B) { benchPair(b, invokePair(false)) }
func BenchmarkTraced64(b *testing.B) { benchPair(b, invokePair(true)) }
