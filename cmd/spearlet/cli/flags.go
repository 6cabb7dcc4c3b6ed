package cli

import (
	"time"

	"github.com/spear-go/spear/agent"
)

// durationFlag is a duration flag that also takes a bare number of
// seconds ("-t 5"), as the configuration does (agent.ParseDuration); its
// error says how to write one.
type durationFlag struct{ d *time.Duration }

func (f durationFlag) String() string {
	if f.d == nil || *f.d == 0 {
		return "0s"
	}
	return f.d.String()
}

// Set parses s.
func (f durationFlag) Set(s string) error {
	d, err := agent.ParseDuration(s)
	if err != nil {
		return err
	}
	*f.d = d
	return nil
}

// Type names the flag's value in the usage.
func (f durationFlag) Type() string { return "duration" }
