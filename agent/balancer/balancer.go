// Package balancer chooses which instance of a function serves an
// invocation. A Balancer sees the pool's ready instances as Endpoints,
// which carry the load figures every policy reads (in-flight invocations,
// a peak-EWMA of latency), and picks one per invocation:
//
//   - least-inflight: the fewest invocations running (the default);
//   - round-robin: each in turn;
//   - p2c-ewma: the power of two random choices over peak-EWMA latency
//     times in-flight invocations, as Finagle and Linkerd do;
//   - hash: consistent hashing with bounded loads on a key the caller
//     gives, for affinity (stateful functions).
//
// The pool owns the endpoints and decides which are ready (connected,
// not ejected, not leaving); a balancer only chooses among those it was
// last given with Update. Balancers are not safe for concurrent use: the
// pool calls them under its lock, as grpc-go's pickers are called for one
// connection state at a time.
package balancer

import (
	"fmt"
	"math"
	"time"
)

// Policy names a balancing policy, as written in a function's config.
type Policy string

// The policies.
const (
	LeastInflight Policy = "least-inflight"
	RoundRobin    Policy = "round-robin"
	P2CEWMA       Policy = "p2c-ewma"
	Hash          Policy = "hash"
)

// Policies lists the policies, the default first.
func Policies() []Policy { return []Policy{LeastInflight, RoundRobin, P2CEWMA, Hash} }

// Balancer picks an endpoint for each invocation.
type Balancer interface {
	// Update replaces the endpoints the balancer may pick from. The
	// slice is the balancer's until the next Update.
	Update(eps []*Endpoint)
	// Pick returns an endpoint with a free slot (InFlight under
	// Capacity) for an invocation with the given affinity key (empty
	// when the caller gave none), or nil when none has one.
	Pick(key string) *Endpoint
}

// Options tune the policies; zero values mean the defaults.
type Options struct {
	// LoadFactor is the hash policy's bound: no endpoint takes more than
	// LoadFactor times the mean load, rounded up (default 1.25).
	LoadFactor float64
	// Replicas is how many points each endpoint has on the hash ring
	// (default 160).
	Replicas int
	// Decay is p2c-ewma's time constant (default DefaultDecay).
	Decay time.Duration
	// Clock tells the time (default time.Now); tests set it.
	Clock func() time.Time
}

// Defaults of Options.
const (
	DefaultLoadFactor = 1.25
	DefaultReplicas   = 160
)

// New returns a balancer of the named policy; the empty name means
// least-inflight.
func New(p Policy, opts Options) (Balancer, error) {
	if opts.Decay <= 0 {
		opts.Decay = DefaultDecay
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	switch p {
	case LeastInflight, "":
		return &leastInflight{}, nil
	case RoundRobin:
		return &roundRobin{}, nil
	case P2CEWMA:
		return newP2C(opts), nil
	case Hash:
		return newRing(opts), nil
	}
	return nil, fmt.Errorf("unknown balancer %q (want least-inflight, round-robin, p2c-ewma or hash)", p)
}

// Endpoint is one instance as balancers see it. The pool updates it;
// balancers only read it.
type Endpoint struct {
	// Name identifies the endpoint for good (the instance id); the hash
	// ring places it by its name.
	Name string
	// Capacity is how many invocations it may run at once.
	Capacity int
	// Value is the pool's own handle on the endpoint.
	Value any

	inflight int
	ewma     float64   // peak-EWMA of latency, in nanoseconds; 0 until the first sample
	stamp    time.Time // when ewma was last updated
}

// DefaultDecay is the time constant of the latency average: a sample's
// weight falls to 1/e after it.
const DefaultDecay = 10 * time.Second

// InFlight returns the invocations running on the endpoint.
func (e *Endpoint) InFlight() int { return e.inflight }

// Free reports whether the endpoint has a free slot.
func (e *Endpoint) Free() bool { return e.inflight < e.Capacity }

// Begin counts an invocation the endpoint was picked for.
func (e *Endpoint) Begin() { e.inflight++ }

// End counts an invocation's end, and its latency when measured (took >
// 0): the average rises at once to a slower sample (the "peak") and
// decays towards faster ones with time constant decay.
func (e *Endpoint) End(now time.Time, took, decay time.Duration) {
	e.inflight--
	if took <= 0 {
		return
	}
	rtt := float64(took)
	switch {
	case e.ewma == 0 || rtt > e.ewma:
		e.ewma = rtt
	default:
		w := math.Exp(-float64(now.Sub(e.stamp)) / float64(decay))
		e.ewma = e.ewma*w + rtt*(1-w)
	}
	e.stamp = now
}

// Latency returns the endpoint's latency average, 0 before any sample.
func (e *Endpoint) Latency() time.Duration { return time.Duration(e.ewma) }

// latencyAt is the average as p2c-ewma reads it at now: decayed towards
// zero for the time since the last sample, so an endpoint that lost every
// duel because it was slow is tried again once its figure has aged, and a
// recovered instance wins its traffic back.
func (e *Endpoint) latencyAt(now time.Time, decay time.Duration) float64 {
	if e.ewma == 0 {
		return 0
	}
	return e.ewma * math.Exp(-float64(max(now.Sub(e.stamp), 0))/float64(decay))
}
