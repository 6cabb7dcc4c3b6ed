package process

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/spear-go/spear/runtime"
)

// Limits bound what one instance may use. Zero fields mean no limit. With
// cgroup v2 they hold for the instance's whole process tree (memory.max,
// cpu.max, pids.max); without it, memory and pids fall back to per-process
// rlimits and cpu is not enforced (the runtime says so when it starts).
type Limits struct {
	// Memory caps the instance's memory: bytes, or with a suffix such as
	// "256Mi". An instance over it is killed, and its stop reason says
	// "out of memory". Fallback: RLIMIT_DATA of each process.
	Memory runtime.Bytes `json:"memory,omitempty"`
	// CPU caps the instance's CPU time as a number of CPUs: "0.5", "2",
	// or in thousandths, "250m". No fallback.
	CPU CPUs `json:"cpu,omitempty"`
	// PIDs caps the instance's processes and threads. Fallback:
	// RLIMIT_NPROC, which counts every process of the instance's user and
	// does not bind root, so it helps only with a user of its own.
	PIDs int `json:"pids,omitempty"`
}

// IsZero reports whether l sets no limit.
func (l Limits) IsZero() bool { return l == Limits{} }

// validate reports a negative pids limit as a *runtime.FieldError
// (negative amounts of memory and CPU do not parse).
func (l Limits) validate() []error {
	var errs []error
	if l.PIDs < 0 {
		errs = append(errs, runtime.BadField("limits.pids", "negative"))
	}
	return errs
}

// CPUs is an amount of CPU time per unit of time, in thousandths of a CPU.
// In a configuration it is a number of CPUs ("0.5", "2", 1.5) or a number
// of thousandths with the suffix m ("250m"), as Kubernetes writes them.
type CPUs int64

// ParseCPUs parses a number of CPUs: "1.5", "2" or "250m".
func ParseCPUs(s string) (CPUs, error) {
	if m, ok := strings.CutSuffix(s, "m"); ok {
		n, err := strconv.ParseInt(m, 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("%q is not a number of CPUs such as 0.5 or 500m", s)
		}
		return CPUs(n), nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || f > math.MaxInt64/1000 || math.IsNaN(f) {
		return 0, fmt.Errorf("%q is not a number of CPUs such as 0.5 or 500m", s)
	}
	return CPUs(math.Round(f * 1000)), nil
}

// String writes c as thousandths ("250m").
func (c CPUs) String() string { return strconv.FormatInt(int64(c), 10) + "m" }

// MarshalJSON writes c as String does.
func (c CPUs) MarshalJSON() ([]byte, error) { return strconv.AppendQuote(nil, c.String()), nil }

// UnmarshalJSON reads a number or a string as ParseCPUs does.
func (c *CPUs) UnmarshalJSON(b []byte) error {
	s := string(b)
	if u, err := strconv.Unquote(s); err == nil {
		s = u
	}
	v, err := ParseCPUs(s)
	if err != nil {
		return err
	}
	*c = v
	return nil
}
