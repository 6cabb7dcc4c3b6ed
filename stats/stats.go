// Package stats counts a channel's traffic: messages and bytes each way,
// errors by kind, request latency as percentiles from a log-linear
// histogram, and uptime. Counters are lock-free and safe for concurrent use.
package stats

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// ErrorKind classifies a counted error.
type ErrorKind uint8

// The error kinds.
const (
	KindSend      ErrorKind = iota // a frame could not be written
	KindReceive                    // the connection failed while reading
	KindTimeout                    // a request's deadline passed
	KindCanceled                   // a request's context was cancelled
	KindClosed                     // a request failed because the channel closed
	KindInvalid                    // the peer sent a malformed or unexpected frame
	KindAuth                       // a connection failed authentication
	KindRemote                     // the instance answered with an ERROR frame
	KindOverflow                   // a stream or the inbox overflowed
	KindHeartbeat                  // the instance missed its heartbeats
	numErrorKinds
)

var kindNames = [numErrorKinds]string{"send", "receive", "timeout", "canceled", "closed", "invalid", "auth", "remote", "overflow", "heartbeat"}

func (k ErrorKind) String() string {
	if k < numErrorKinds {
		return kindNames[k]
	}
	return "unknown"
}

// Counters accumulate one channel's statistics. The zero value is not
// ready; use New.
type Counters struct {
	start                 time.Time
	msgsOut, msgsIn       atomic.Uint64
	bytesOut, bytesIn     atomic.Uint64
	errors                [numErrorKinds]atomic.Uint64
	latency               atomic.Pointer[histogram] // allocated at the first sample
	connects, disconnects atomic.Uint64
	heartbeatRTT          atomic.Int64 // ns; the last heartbeat probe's round trip
}

// New returns counters whose uptime starts now.
func New() *Counters { return &Counters{start: time.Now()} }

// Sent counts one outgoing frame of n bytes.
func (c *Counters) Sent(n int) { c.msgsOut.Add(1); c.bytesOut.Add(uint64(n)) }

// Received counts one incoming frame of n bytes.
func (c *Counters) Received(n int) { c.msgsIn.Add(1); c.bytesIn.Add(uint64(n)) }

// Error counts one error of kind k.
func (c *Counters) Error(k ErrorKind) {
	if k < numErrorKinds {
		c.errors[k].Add(1)
	}
}

// Connected counts an instance connection being bound.
func (c *Counters) Connected() { c.connects.Add(1) }

// Disconnected counts an instance connection ending.
func (c *Counters) Disconnected() { c.disconnects.Add(1) }

// HeartbeatRTT records the round trip of a heartbeat probe that this side
// sent and the peer acknowledged.
func (c *Counters) HeartbeatRTT(d time.Duration) { c.heartbeatRTT.Store(int64(d)) }

// LastHeartbeatRTT returns the round trip HeartbeatRTT recorded last, 0
// before any: Snapshot's HeartbeatRTT, without the rest of a snapshot.
func (c *Counters) LastHeartbeatRTT() time.Duration { return time.Duration(c.heartbeatRTT.Load()) }

// Latency records one request's round-trip time.
func (c *Counters) Latency(d time.Duration) {
	h := c.latency.Load()
	if h == nil {
		c.latency.CompareAndSwap(nil, new(histogram))
		h = c.latency.Load()
	}
	h.record(d)
}

// Snapshot is a point-in-time copy of a channel's counters.
type Snapshot struct {
	MessagesSent     uint64            `json:"messages_sent"`
	MessagesReceived uint64            `json:"messages_received"`
	BytesSent        uint64            `json:"bytes_sent"`
	BytesReceived    uint64            `json:"bytes_received"`
	Errors           map[string]uint64 `json:"errors,omitempty"` // by ErrorKind name; kinds never seen are absent
	Latency          Latency           `json:"latency"`
	Uptime           time.Duration     `json:"uptime_ns"`
	Connects         uint64            `json:"connects"`
	Disconnects      uint64            `json:"disconnects"`
	// HeartbeatRTT is the round trip of the last acknowledged heartbeat
	// probe; zero until one was measured. Probes go out only on an idle
	// connection, so it may be as old as the last quiet spell.
	HeartbeatRTT time.Duration `json:"heartbeat_rtt_ns,omitempty"`
}

// Latency summarises request round trips. Percentiles come from the
// histogram and are accurate to within its bucket width (about 3%).
type Latency struct {
	Count uint64        `json:"count"`
	Mean  time.Duration `json:"mean_ns"`
	P50   time.Duration `json:"p50_ns"`
	P90   time.Duration `json:"p90_ns"`
	P99   time.Duration `json:"p99_ns"`
	Max   time.Duration `json:"max_ns"`
}

// Snapshot copies the counters.
func (c *Counters) Snapshot() Snapshot {
	s := Snapshot{
		MessagesSent: c.msgsOut.Load(), MessagesReceived: c.msgsIn.Load(),
		BytesSent: c.bytesOut.Load(), BytesReceived: c.bytesIn.Load(),
		Uptime:   time.Since(c.start),
		Connects: c.connects.Load(), Disconnects: c.disconnects.Load(),
		HeartbeatRTT: c.LastHeartbeatRTT(),
	}
	for k := range c.errors {
		if n := c.errors[k].Load(); n > 0 {
			if s.Errors == nil {
				s.Errors = map[string]uint64{}
			}
			s.Errors[ErrorKind(k).String()] = n
		}
	}
	if h := c.latency.Load(); h != nil {
		s.Latency = h.summary()
	}
	return s
}

// Histogram is the latency histogram re-bucketed at chosen upper bounds,
// the shape Prometheus histograms take.
type Histogram struct {
	Count uint64
	Sum   time.Duration
	// Cumulative[i] counts the samples at or under the i-th bound. A
	// sample counts under a bound when its bucket of the log-linear
	// histogram ends there or before, so a bound is accurate to the
	// bucket width (about 3%).
	Cumulative []uint64
}

// LatencyHistogram returns the request latencies counted under each of
// bounds, which must be sorted ascending.
func (c *Counters) LatencyHistogram(bounds []time.Duration) Histogram {
	out := Histogram{Cumulative: make([]uint64, len(bounds))}
	h := c.latency.Load()
	if h == nil {
		return out
	}
	b, seen := 0, uint64(0)
	for i := range h.counts {
		upper := bucketUpper(i)
		for b < len(bounds) && int64(bounds[b]) < upper {
			out.Cumulative[b] = seen
			b++
		}
		seen += uint64(h.counts[i].Load())
	}
	for ; b < len(bounds); b++ {
		out.Cumulative[b] = seen
	}
	// Count from the buckets, so that Count >= every cumulative count even
	// while samples land during the read.
	out.Count = seen
	out.Sum = time.Duration(h.sum.Load())
	return out
}

// The histogram has subBuckets linear buckets in each power of two of
// nanoseconds, so a bucket is at most 1/subBuckets (about 3%) of its value
// wide. Values below 2^minShift ns share the first group.
const (
	subBits    = 5
	subBuckets = 1 << subBits
	minShift   = 10 // 1 µs
	maxShift   = 40 // about 18 minutes; samples from 2^maxShift ns on land in the last bucket
	numBuckets = (maxShift - minShift + 1) * subBuckets
)

type histogram struct {
	counts [numBuckets]atomic.Uint32
	count  atomic.Uint64
	sum    atomic.Uint64 // ns
	max    atomic.Int64  // ns
}

func bucketOf(ns int64) int {
	if ns < 1<<minShift {
		return int(ns >> (minShift - subBits))
	}
	exp := bits.Len64(uint64(ns)) - 1 // ns in [2^exp, 2^(exp+1))
	if exp >= maxShift {
		// Its group would be past the end: clamp to the open last bucket.
		return numBuckets - 1
	}
	sub := int(ns>>(exp-subBits)) & (subBuckets - 1)
	return (exp-minShift+1)*subBuckets + sub
}

// bucketUpper returns the largest value that falls in bucket i. The last
// bucket is open-ended.
func bucketUpper(i int) int64 {
	if i == numBuckets-1 {
		return math.MaxInt64
	}
	group, sub := i/subBuckets, i%subBuckets
	if group == 0 {
		return int64(sub+1)<<(minShift-subBits) - 1
	}
	exp := group - 1 + minShift
	return int64(subBuckets+sub+1)<<(exp-subBits) - 1
}

func (h *histogram) record(d time.Duration) {
	ns := int64(d)
	if ns < 0 {
		ns = 0
	}
	h.counts[bucketOf(ns)].Add(1)
	h.count.Add(1)
	h.sum.Add(uint64(ns))
	for {
		m := h.max.Load()
		if ns <= m || h.max.CompareAndSwap(m, ns) {
			break
		}
	}
}

func (h *histogram) summary() Latency {
	var counts [numBuckets]uint32
	var total uint64
	for i := range counts {
		counts[i] = h.counts[i].Load()
		total += uint64(counts[i])
	}
	if total == 0 {
		return Latency{}
	}
	l := Latency{Count: total, Max: time.Duration(h.max.Load())}
	l.Mean = time.Duration(h.sum.Load() / max(h.count.Load(), 1))
	quantile := func(q float64) time.Duration {
		rank := uint64(math.Ceil(q * float64(total)))
		var seen uint64
		for i, n := range counts {
			seen += uint64(n)
			if seen >= rank {
				return min(time.Duration(bucketUpper(i)), l.Max)
			}
		}
		return l.Max
	}
	l.P50, l.P90, l.P99 = quantile(0.50), quantile(0.90), quantile(0.99)
	return l
}
