package balancer

import (
	"math/rand/v2"
	"time"
)

// leastInflight picks the endpoint with the fewest invocations running.
// Ties go to the first after the previous pick, so equal endpoints take
// turns instead of the first taking every burst.
type leastInflight struct {
	eps  []*Endpoint
	next int
}

func (b *leastInflight) Update(eps []*Endpoint) { b.eps = eps }

func (b *leastInflight) Pick(string) *Endpoint {
	var best *Endpoint
	n := len(b.eps)
	for i := range n {
		e := b.eps[(b.next+i)%n]
		if e.Free() && (best == nil || e.inflight < best.inflight) {
			best = e
		}
	}
	if n > 0 {
		b.next = (b.next + 1) % n
	}
	return best
}

// roundRobin picks each endpoint in turn, skipping full ones.
type roundRobin struct {
	eps  []*Endpoint
	next int
}

func (b *roundRobin) Update(eps []*Endpoint) { b.eps = eps }

func (b *roundRobin) Pick(string) *Endpoint {
	n := len(b.eps)
	for i := range n {
		e := b.eps[(b.next+i)%n]
		if e.Free() {
			b.next = (b.next + i + 1) % n
			return e
		}
	}
	return nil
}

// p2c picks two endpoints at random and keeps the cheaper: latency
// average times (in-flight + 1). The random pair keeps a herd from
// following one figure; the cost makes a slow endpoint lose most duels
// and a busy one lose until its queue shrinks.
type p2c struct {
	eps   []*Endpoint
	free  []*Endpoint // scratch
	rnd   *rand.Rand
	now   func() time.Time
	decay time.Duration
}

func newP2C(opts Options) *p2c {
	return &p2c{rnd: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())), now: opts.Clock, decay: opts.Decay}
}

func (b *p2c) Update(eps []*Endpoint) { b.eps = eps }

func (b *p2c) Pick(string) *Endpoint {
	b.free = b.free[:0]
	for _, e := range b.eps {
		if e.Free() {
			b.free = append(b.free, e)
		}
	}
	switch len(b.free) {
	case 0:
		return nil
	case 1:
		return b.free[0]
	}
	i := b.rnd.IntN(len(b.free))
	j := b.rnd.IntN(len(b.free) - 1)
	if j >= i {
		j++
	}
	x, y := b.free[i], b.free[j]
	now := b.now()
	lx, ly := x.latencyAt(now, b.decay), y.latencyAt(now, b.decay)
	// An endpoint not yet measured is taken to be as fast as its peer,
	// so a new instance is neither shunned nor flooded.
	if lx == 0 {
		lx = ly
	}
	if ly == 0 {
		ly = lx
	}
	if lx == 0 {
		lx, ly = 1, 1
	}
	if lx*float64(x.inflight+1) <= ly*float64(y.inflight+1) {
		return x
	}
	return y
}
