package balancer

import (
	"container/heap"
	"fmt"
	"math"
	"testing"
	"time"
)

func endpoints(n, capacity int) []*Endpoint {
	eps := make([]*Endpoint, n)
	for i := range eps {
		eps[i] = &Endpoint{Name: fmt.Sprintf("process:fn-%d", i), Capacity: capacity}
	}
	return eps
}

func mustNew(t *testing.T, p Policy) Balancer {
	t.Helper()
	return mustNewOpts(t, p, Options{})
}

func mustNewOpts(t *testing.T, p Policy, opts Options) Balancer {
	t.Helper()
	b, err := New(p, opts)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Every policy respects capacity: it never picks a full endpoint, and
// picks none when all are full.
func TestPoliciesRespectCapacity(t *testing.T) {
	for _, p := range Policies() {
		t.Run(string(p), func(t *testing.T) {
			b := mustNew(t, p)
			eps := endpoints(3, 2)
			b.Update(eps)
			for i := range 6 {
				e := b.Pick(fmt.Sprint("key-", i%2))
				if e == nil {
					t.Fatalf("pick %d: nil with free slots left", i)
				}
				if !e.Free() {
					t.Fatalf("pick %d: picked a full endpoint", i)
				}
				e.Begin()
			}
			if e := b.Pick("key-0"); e != nil {
				t.Fatalf("picked %s with every endpoint full", e.Name)
			}
			b.Update(nil)
			if e := b.Pick(""); e != nil {
				t.Fatal("picked from an empty set")
			}
		})
	}
}

func TestUnknownPolicy(t *testing.T) {
	if _, err := New("random", Options{}); err == nil {
		t.Fatal("unknown policy accepted")
	}
}

func TestLeastInflightPicksLeastLoaded(t *testing.T) {
	b := mustNew(t, LeastInflight)
	eps := endpoints(3, 10)
	eps[0].inflight, eps[1].inflight, eps[2].inflight = 3, 1, 2
	b.Update(eps)
	if e := b.Pick(""); e != eps[1] {
		t.Fatalf("picked %s, want %s", e.Name, eps[1].Name)
	}
}

// simulate runs a closed loop of callers against eps, each endpoint
// answering in its own fixed time, on a simulated clock, and returns how
// many requests each endpoint served.
func simulate(t *testing.T, p Policy, eps []*Endpoint, latency []time.Duration, callers, requests int) []int {
	now := time.Unix(0, 0)
	b := mustNewOpts(t, p, Options{Clock: func() time.Time { return now }})
	b.Update(eps)
	served := make([]int, len(eps))
	index := map[*Endpoint]int{}
	for i, e := range eps {
		index[e] = i
	}
	var q events
	issue := func() {
		e := b.Pick("")
		e.Begin()
		i := index[e]
		heap.Push(&q, event{at: now.Add(latency[i]), ep: e, took: latency[i]})
	}
	for range callers {
		issue()
	}
	for n := 0; n < requests; n++ {
		ev := heap.Pop(&q).(event)
		now = ev.at
		ev.ep.End(now, ev.took, DefaultDecay)
		served[index[ev.ep]]++
		issue()
	}
	return served
}

type event struct {
	at   time.Time
	ep   *Endpoint
	took time.Duration
}

type events []event

func (q events) Len() int           { return len(q) }
func (q events) Less(i, j int) bool { return q[i].at.Before(q[j].at) }
func (q events) Swap(i, j int)      { q[i], q[j] = q[j], q[i] }
func (q *events) Push(x any)        { *q = append(*q, x.(event)) }
func (q *events) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

// A skewed pool: four endpoints, one ten times slower. p2c-ewma sends at
// least 80 % of requests elsewhere; round-robin gives it its quarter.
func TestSkewedPool(t *testing.T) {
	latency := []time.Duration{time.Millisecond, time.Millisecond, 10 * time.Millisecond, time.Millisecond}
	const requests = 20000
	for _, tc := range []struct {
		policy   Policy
		min, max float64 // the slow endpoint's share
	}{
		{P2CEWMA, 0, 0.20},
		{RoundRobin, 0.24, 0.26},
		{LeastInflight, 0, 0.20},
	} {
		t.Run(string(tc.policy), func(t *testing.T) {
			served := simulate(t, tc.policy, endpoints(4, 1000), latency, 16, requests)
			share := float64(served[2]) / requests
			t.Logf("%s: served %v; the slow endpoint took %.1f %%", tc.policy, served, share*100)
			if share < tc.min || share > tc.max {
				t.Fatalf("the slow endpoint took %.3f of requests, want %.2f to %.2f", share, tc.min, tc.max)
			}
		})
	}
}

// The peak-EWMA rises at once to a slow sample and decays towards fast
// ones.
func TestPeakEWMA(t *testing.T) {
	e := &Endpoint{Capacity: 1}
	now := time.Unix(0, 0)
	e.Begin()
	e.End(now, time.Millisecond, DefaultDecay)
	e.Begin()
	e.End(now, 100*time.Millisecond, DefaultDecay)
	if e.Latency() != 100*time.Millisecond {
		t.Fatalf("after a slow sample: %s, want the peak 100ms", e.Latency())
	}
	for range 50 {
		now = now.Add(time.Second)
		e.Begin()
		e.End(now, time.Millisecond, DefaultDecay)
	}
	if e.Latency() > 2*time.Millisecond {
		t.Fatalf("after 50 s of fast samples: %s, want about 1ms", e.Latency())
	}
	if e.InFlight() != 0 {
		t.Fatalf("in flight %d after balanced Begin/End", e.InFlight())
	}
}

// Hash affinity: growing from 4 to 5 endpoints keeps at least 75 % of
// keys on their endpoint.
func TestHashRemapOnGrowth(t *testing.T) {
	const keys = 10000
	b := mustNew(t, Hash)
	eps := endpoints(5, 1<<20)
	owner := func() []string {
		out := make([]string, keys)
		for k := range keys {
			e := b.Pick(fmt.Sprint("conversation-", k))
			out[k] = e.Name // nothing stays in flight: placement alone
		}
		return out
	}
	b.Update(eps[:4])
	before := owner()
	b.Update(eps)
	after := owner()
	kept := 0
	for k := range keys {
		if before[k] == after[k] {
			kept++
		}
	}
	share := float64(kept) / keys
	t.Logf("4 -> 5 endpoints: %.1f %% of %d keys kept their endpoint", share*100, keys)
	if share < 0.75 {
		t.Fatalf("%.3f of keys kept their endpoint, want at least 0.75", share)
	}
	// The same key maps to the same endpoint while the set stands.
	if again := owner(); fmt.Sprint(again) != fmt.Sprint(after) {
		t.Fatal("placement changed with the set unchanged")
	}
}

// Hash bounded load: with every invocation still in flight, no endpoint
// holds more than 1.25 times the mean, however the keys are skewed.
func TestHashBoundedLoad(t *testing.T) {
	for _, skew := range []struct {
		name string
		key  func(i int) string
	}{
		{"uniform", func(i int) string { return fmt.Sprint("k", i) }},
		{"one hot key", func(i int) string {
			if i%2 == 0 {
				return "hot"
			}
			return fmt.Sprint("k", i)
		}},
	} {
		t.Run(skew.name, func(t *testing.T) {
			b := mustNew(t, Hash)
			eps := endpoints(5, 1<<20)
			b.Update(eps)
			const n = 1000
			for i := range n {
				b.Pick(skew.key(i)).Begin()
			}
			mean := float64(n) / float64(len(eps))
			limit := math.Ceil(DefaultLoadFactor * mean)
			for _, e := range eps {
				if float64(e.inflight) > limit {
					t.Fatalf("%s holds %d, over %.0f (1.25 x mean %.0f)", e.Name, e.inflight, limit, mean)
				}
			}
			t.Logf("loads: %d %d %d %d %d (bound %.0f)", eps[0].inflight, eps[1].inflight, eps[2].inflight, eps[3].inflight, eps[4].inflight, limit)
		})
	}
}

func TestHashWithoutKeyIsLeastInflight(t *testing.T) {
	b := mustNew(t, Hash)
	eps := endpoints(3, 10)
	eps[0].inflight, eps[1].inflight, eps[2].inflight = 2, 2, 0
	b.Update(eps)
	if e := b.Pick(""); e != eps[2] {
		t.Fatalf("picked %s, want the idle one", e.Name)
	}
}
