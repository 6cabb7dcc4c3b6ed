package bench

import (
	"errors"
	"slices"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
)

// side runs n operations of one contender and returns when all are done.
type side func(n int) error

// pair is ours and the baseline, set up the same way, plus what tears
// both down.
type pair struct {
	ours, base side
	close      func()
}

// result holds medians over the rounds: nanoseconds per operation of
// each side, and the ratio ours/base.
type result struct {
	ours, base, ratio float64
}

// measure times both sides of p in rounds. Each side first gets a batch
// size that runs for about batch; then every round runs one batch of each,
// alternating which goes first, so that both see the same machine load.
// The ratio is the median of the rounds' ratios, which is steadier than
// the ratio of the medians when the load drifts between rounds.
func measure(p *pair, rounds int, batch time.Duration, minOps int) (result, error) {
	nOurs, err := calibrate(p.ours, batch, minOps)
	if err != nil {
		return result{}, err
	}
	nBase, err := calibrate(p.base, batch, minOps)
	if err != nil {
		return result{}, err
	}
	ours := make([]float64, rounds)
	base := make([]float64, rounds)
	ratios := make([]float64, rounds)
	for r := range rounds {
		first, second := &ours[r], &base[r]
		s1, s2, n1, n2 := p.ours, p.base, nOurs, nBase
		if r%2 == 1 {
			first, second = second, first
			s1, s2, n1, n2 = s2, s1, n2, n1
		}
		if *first, err = perOp(s1, n1); err != nil {
			return result{}, err
		}
		if *second, err = perOp(s2, n2); err != nil {
			return result{}, err
		}
		ratios[r] = ours[r] / base[r]
	}
	return result{ours: median(ours), base: median(base), ratio: median(ratios)}, nil
}

// calibrate returns how many operations of s take about batch. The runs
// it makes double as the warm-up.
func calibrate(s side, batch time.Duration, minOps int) (int, error) {
	n := minOps
	for {
		d, err := timed(s, n)
		if err != nil {
			return 0, err
		}
		if d >= batch/8 || n >= 1<<26 {
			return max(int(float64(n)*float64(batch)/float64(max(d, 1))), minOps), nil
		}
		n *= 4
	}
}

// perOp runs n operations and returns nanoseconds per operation.
func perOp(s side, n int) (float64, error) {
	d, err := timed(s, n)
	return float64(d) / float64(n), err
}

// timed runs n operations of s. It does not collect the heap first: a
// forced collection before every batch shrinks the heap goal and makes the
// runtime hand freed pages back to the OS, which then fault in again; that
// punishes large payloads far beyond what a running agent sees.
func timed(s side, n int) (time.Duration, error) {
	start := time.Now()
	err := s(n)
	return time.Since(start), err
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// serial makes a side that calls op n times in a row.
func serial(op func() error) side {
	return func(n int) error {
		for range n {
			if err := op(); err != nil {
				return err
			}
		}
		return nil
	}
}

// parallel makes a side that shares n calls of op among callers
// goroutines.
func parallel(callers int, op func() error) side {
	return func(n int) error {
		var next atomic.Int64
		var g errgroup.Group
		for range callers {
			g.Go(func() error {
				for next.Add(1) <= int64(n) {
					if err := op(); err != nil {
						return err
					}
				}
				return nil
			})
		}
		return g.Wait()
	}
}

// errShortEcho reports an echo that came back with the wrong size.
var errShortEcho = errors.New("bench: echo came back with the wrong size")

// payload returns n bytes of filler.
func payload(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}
