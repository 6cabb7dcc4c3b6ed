package stats

import (
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// checkBucket asserts that v falls in a bucket whose upper bound is at
// least v while the previous bucket's is below v.
func checkBucket(t *testing.T, v int64) {
	t.Helper()
	b := bucketOf(v)
	if b < 0 || b >= numBuckets {
		t.Fatalf("bucketOf(%d) = %d, outside [0, %d)", v, b, numBuckets)
	}
	if up := bucketUpper(b); up < v {
		t.Fatalf("bucketOf(%d) = %d whose upper bound %d is below the value", v, b, up)
	}
	if b > 0 && bucketUpper(b-1) >= v {
		t.Fatalf("bucketOf(%d) = %d but the previous bucket's upper bound %d already holds it", v, b, bucketUpper(b-1))
	}
}

func TestBucketsCoverEveryValue(t *testing.T) {
	for v := int64(0); v <= 1<<13; v++ {
		checkBucket(t, v)
	}
	for exp := 10; exp < 63; exp++ {
		p := int64(1) << exp
		for _, v := range []int64{p - 1, p, p + 1, p + p/3, 2*p - 1} {
			checkBucket(t, v)
		}
	}
	checkBucket(t, math.MaxInt64)
	r := rand.New(rand.NewPCG(1, 2))
	for range 100000 {
		checkBucket(t, r.Int64N(1<<uint(r.IntN(63))+1))
	}
}

func TestBucketBoundsAreContiguousAndNarrow(t *testing.T) {
	prev := int64(-1)
	for i := range numBuckets {
		up := bucketUpper(i)
		if up <= prev {
			t.Fatalf("bucketUpper(%d) = %d is not above bucketUpper(%d) = %d", i, up, i-1, prev)
		}
		// Both ends of every bucket map back to it.
		if got := bucketOf(prev + 1); got != i {
			t.Fatalf("lowest value %d of bucket %d maps to bucket %d", prev+1, i, got)
		}
		if got := bucketOf(up); got != i {
			t.Fatalf("upper bound %d of bucket %d maps to bucket %d", up, i, got)
		}
		// Above the first group a bucket spans at most 1/32 of its values.
		if lo := prev + 1; lo >= 1<<minShift && i < numBuckets-1 {
			if width := up - lo + 1; width*subBuckets > lo {
				t.Fatalf("bucket %d [%d, %d] is wider than 1/%d of its lower bound", i, lo, up, subBuckets)
			}
		}
		prev = up
	}
	if prev != math.MaxInt64 {
		t.Fatalf("the last bucket ends at %d, want it open-ended", prev)
	}
}

// nearestRank is the exact q-quantile of sorted samples, by the same
// nearest-rank definition the histogram uses.
func nearestRank(sorted []time.Duration, q float64) time.Duration {
	rank := int(math.Ceil(q * float64(len(sorted))))
	return sorted[max(rank, 1)-1]
}

func TestPercentilesWithinBucketResolution(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{1, 7, 100, 5000} {
		c := New()
		samples := make([]time.Duration, n)
		var sum time.Duration
		for i := range samples {
			// Log-uniform from 1µs to about 10s, as latencies are.
			d := time.Duration(math.Exp(math.Log(1e3) + r.Float64()*math.Log(1e7)))
			samples[i] = d
			sum += d
			c.Latency(d)
		}
		slices.Sort(samples)
		l := c.Snapshot().Latency
		if l.Count != uint64(n) {
			t.Errorf("n=%d: count %d", n, l.Count)
		}
		if l.Max != samples[n-1] {
			t.Errorf("n=%d: max %v, want exactly %v", n, l.Max, samples[n-1])
		}
		if want := sum / time.Duration(n); l.Mean != want {
			t.Errorf("n=%d: mean %v, want %v", n, l.Mean, want)
		}
		for _, p := range []struct {
			q   float64
			got time.Duration
		}{{0.50, l.P50}, {0.90, l.P90}, {0.99, l.P99}} {
			exact := nearestRank(samples, p.q)
			if p.got < exact || float64(p.got) > float64(exact)*(1+1.0/subBuckets) {
				t.Errorf("n=%d: p%v = %v, exact %v: outside [exact, exact*(1+1/%d)]", n, p.q*100, p.got, exact, subBuckets)
			}
		}
	}
}

func TestVeryLongAndNegativeLatencies(t *testing.T) {
	c := New()
	c.Latency(-time.Second)  // a clock step; counted as 0
	long := 20 * time.Minute // beyond the histogram's range
	c.Latency(long)
	c.Latency(100 * time.Hour)
	l := c.Snapshot().Latency
	if l.Count != 3 || l.Max != 100*time.Hour {
		t.Fatalf("count %d max %v, want 3 and 100h", l.Count, l.Max)
	}
	if l.P50 < long || l.P50 > l.Max {
		t.Errorf("p50 %v, want within [%v, %v]", l.P50, long, l.Max)
	}
	if l.P99 != l.Max {
		t.Errorf("p99 %v, want the max %v", l.P99, l.Max)
	}
}

func TestSnapshotErrorsOnlySeenKinds(t *testing.T) {
	c := New()
	if s := c.Snapshot(); s.Errors != nil || s.Latency != (Latency{}) {
		t.Fatalf("fresh counters: errors %v latency %+v, want none", s.Errors, s.Latency)
	}
	c.Error(KindTimeout)
	c.Error(KindTimeout)
	c.Error(KindSend)
	c.Error(numErrorKinds) // unknown kinds are ignored
	c.Error(255)
	got := c.Snapshot().Errors
	want := map[string]uint64{"timeout": 2, "send": 1}
	if len(got) != len(want) || got["timeout"] != 2 || got["send"] != 1 {
		t.Fatalf("errors %v, want %v", got, want)
	}
}

func TestErrorKindNames(t *testing.T) {
	seen := map[string]bool{}
	for k := range numErrorKinds {
		name := k.String()
		if name == "" || name == "unknown" || seen[name] {
			t.Errorf("kind %d has name %q (empty, unknown or repeated)", k, name)
		}
		seen[name] = true
	}
	if got := numErrorKinds.String(); got != "unknown" {
		t.Errorf("out-of-range kind prints %q", got)
	}
}

func TestConcurrentUse(t *testing.T) {
	c := New()
	const workers, each = 8, 500
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				c.Sent(10)
				c.Received(3)
				c.Error(ErrorKind(i % int(numErrorKinds)))
				c.Latency(time.Duration(w*each+i+1) * time.Microsecond)
				if i%100 == 0 {
					_ = c.Snapshot() // reading while others write
				}
			}
			c.Connected()
			c.Disconnected()
		})
	}
	wg.Wait()
	s := c.Snapshot()
	const n = workers * each
	if s.MessagesSent != n || s.BytesSent != 10*n || s.MessagesReceived != n || s.BytesReceived != 3*n {
		t.Errorf("traffic %+v, want %d messages of 10 and 3 bytes each way", s, n)
	}
	var errs uint64
	for _, v := range s.Errors {
		errs += v
	}
	if errs != n || len(s.Errors) != int(numErrorKinds) {
		t.Errorf("errors %v: total %d, want %d over %d kinds", s.Errors, errs, n, numErrorKinds)
	}
	if s.Latency.Count != n || s.Latency.Max != n*time.Microsecond {
		t.Errorf("latency count %d max %v, want %d and %v", s.Latency.Count, s.Latency.Max, n, n*time.Microsecond)
	}
	if s.Connects != workers || s.Disconnects != workers {
		t.Errorf("connects %d disconnects %d, want %d", s.Connects, s.Disconnects, workers)
	}
	if s.Uptime <= 0 {
		t.Errorf("uptime %v", s.Uptime)
	}
}

func TestLatencyHistogramCountsUnderBounds(t *testing.T) {
	c := New()
	if h := c.LatencyHistogram([]time.Duration{time.Millisecond}); h.Count != 0 || h.Cumulative[0] != 0 {
		t.Fatalf("empty histogram = %+v", h)
	}
	r := rand.New(rand.NewPCG(3, 4))
	var samples []time.Duration
	var sum time.Duration
	for range 5000 {
		d := time.Duration(r.Int64N(int64(200 * time.Millisecond)))
		samples = append(samples, d)
		sum += d
		c.Latency(d)
	}
	bounds := []time.Duration{0, 100 * time.Microsecond, time.Millisecond, 10 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, time.Second}
	h := c.LatencyHistogram(bounds)
	if h.Count != uint64(len(samples)) || h.Sum != sum {
		t.Fatalf("count %d sum %s, want %d and %s", h.Count, h.Sum, len(samples), sum)
	}
	for i, b := range bounds {
		// Exact counts at b and at b less one bucket width (3%) bracket
		// the re-bucketed count.
		var atB, under uint64
		for _, s := range samples {
			if s <= b {
				atB++
			}
			if float64(s) <= float64(b)*(1-1.0/subBuckets)-1 {
				under++
			}
		}
		if got := h.Cumulative[i]; got > atB || got < under {
			t.Errorf("le %s: %d samples, want between %d and %d", b, got, under, atB)
		}
		if i > 0 && h.Cumulative[i] < h.Cumulative[i-1] {
			t.Errorf("cumulative counts fall at %s", b)
		}
	}
	if h.Cumulative[len(bounds)-1] != h.Count {
		t.Errorf("every sample is under 1s, but le=1s counts %d of %d", h.Cumulative[len(bounds)-1], h.Count)
	}
}

func TestHeartbeatRTTInSnapshot(t *testing.T) {
	c := New()
	if c.Snapshot().HeartbeatRTT != 0 {
		t.Fatal("heartbeat RTT before any probe")
	}
	c.HeartbeatRTT(3 * time.Millisecond)
	c.HeartbeatRTT(2 * time.Millisecond)
	if got := c.Snapshot().HeartbeatRTT; got != 2*time.Millisecond {
		t.Fatalf("HeartbeatRTT = %s, want the last, 2ms", got)
	}
}
