package balancer

import (
	"cmp"
	"math"
	"slices"
	"strconv"
)

// ring is consistent hashing with bounded loads (Mirrokni, Thorup and
// Zadimoghaddam, 2016): each endpoint has Replicas points on a 64-bit
// ring; a key goes to the first endpoint clockwise from its own point
// whose load is under the bound ceil(LoadFactor × (total load + 1) / n).
// When an endpoint joins or leaves, only the keys on its arcs move (about
// 1/n of them); when a key's endpoint is at the bound, the key spills to
// the next one on the ring, so no endpoint takes more than LoadFactor
// times the mean. Invocations without a key are balanced by least
// in-flight.
type ring struct {
	opts   Options
	eps    []*Endpoint
	points []point // sorted by hash
	byKey  leastInflight
	seen   map[*Endpoint]bool // scratch for Pick
}

type point struct {
	hash uint64
	ep   *Endpoint
}

func newRing(opts Options) *ring {
	if opts.LoadFactor <= 1 {
		opts.LoadFactor = DefaultLoadFactor
	}
	if opts.Replicas <= 0 {
		opts.Replicas = DefaultReplicas
	}
	return &ring{opts: opts, seen: map[*Endpoint]bool{}}
}

func (r *ring) Update(eps []*Endpoint) {
	r.eps = eps
	r.byKey.Update(eps)
	r.points = r.points[:0]
	for _, e := range eps {
		for i := range r.opts.Replicas {
			r.points = append(r.points, point{hashString(e.Name + "#" + strconv.Itoa(i)), e})
		}
	}
	slices.SortFunc(r.points, func(a, b point) int { return cmp.Compare(a.hash, b.hash) })
}

func (r *ring) Pick(key string) *Endpoint {
	if key == "" || len(r.points) == 0 {
		return r.byKey.Pick("")
	}
	total := 0
	for _, e := range r.eps {
		total += e.inflight
	}
	bound := int(math.Ceil(r.opts.LoadFactor * float64(total+1) / float64(len(r.eps))))
	start := r.locate(hashString(key))
	clear(r.seen)
	for i := range len(r.points) {
		e := r.points[(start+i)%len(r.points)].ep
		if r.seen[e] {
			continue
		}
		r.seen[e] = true
		if e.Free() && e.inflight < bound {
			return e
		}
		if len(r.seen) == len(r.eps) {
			break
		}
	}
	// Every endpoint is at the bound or full: the least loaded with a
	// free slot, if any.
	return r.byKey.Pick("")
}

// locate returns the index of the first point at or after h (len(points)
// past the last, which wraps to the first).
func (r *ring) locate(h uint64) int {
	i, _ := slices.BinarySearchFunc(r.points, h, func(p point, h uint64) int { return cmp.Compare(p.hash, h) })
	return i
}

// hashString is 64-bit FNV-1a followed by a murmur3 finaliser, which
// spreads the similar strings of ring points ("name#1", "name#2") over
// the whole ring. It is stable across processes and versions.
func hashString(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}
