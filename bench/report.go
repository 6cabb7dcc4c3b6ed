package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	goruntime "runtime"
	"strconv"
	"strings"
)

// Figure is one figure of a run: a line "KIND NAME=VALUE" of the report.
type Figure struct {
	Kind  string  `json:"kind"`
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	// Unit is "µs" for times, "" otherwise.
	Unit string `json:"unit,omitempty"`
	// Text is the value of a figure that is not a number (a skip's
	// reason); Value is then 0.
	Text string `json:"text,omitempty"`
}

// Machine records what a run ran on, so that runs can be compared.
type Machine struct {
	NProc int    `json:"nproc"`
	CPU   string `json:"cpu"`
	Go    string `json:"go"`
	OS    string `json:"os"`
	// Load is the 1-minute load average when the run started and ended.
	LoadStart float64 `json:"load_start"`
	LoadEnd   float64 `json:"load_end"`
}

// Report is a whole run, as -json writes it.
type Report struct {
	Machine Machine  `json:"machine"`
	Figures []Figure `json:"figures"`
}

// machine describes the machine this process runs on.
func machine() Machine {
	m := Machine{NProc: goruntime.NumCPU(), Go: goruntime.Version(), OS: goruntime.GOOS + "/" + goruntime.GOARCH, LoadStart: loadAverage()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
}

// loadAverage returns the 1-minute load average, or 0 where it is unknown.
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f, _ := strconv.ParseFloat(strings.Fields(string(b) + " 0")[0], 64)
	return f
}

// printer writes report lines, "KIND NAME=VALUE", and keeps every figure
// for the JSON report; it keeps the first write error.
type printer struct {
	w       io.Writer
	err     error
	figures []Figure
}

func (p *printer) line(kind, name, format string, v ...any) {
	text := fmt.Sprintf(format, v...)
	f := Figure{Kind: kind, Name: name}
	num := strings.TrimSuffix(text, "µs")
	if num != text {
		f.Unit = "µs"
	}
	if x, err := strconv.ParseFloat(num, 64); err == nil && kind != "skip" && kind != "machine" {
		f.Value = x
	} else {
		f.Text = text
	}
	p.figures = append(p.figures, f)
	if p.err == nil {
		_, p.err = fmt.Fprintf(p.w, "%s %s=%s\n", kind, name, text)
	}
}

// machineLines prints the machine record.
func (p *printer) machineLines(m Machine) {
	p.line("machine", "nproc", "%d", m.NProc)
	p.line("machine", "cpu", "%s", m.CPU)
	p.line("machine", "go", "%s", m.Go)
	p.line("machine", "load", "%.2f", m.LoadStart)
}

// higherIsWorse says, per kind, which way a figure regresses; kinds not
// listed are not judged.
var higherIsWorse = map[string]bool{"ratio": true, "time": true, "mem": true, "us": true, "ops": false}

// RegressionThreshold is the change Compare flags: 10 %.
const RegressionThreshold = 0.10

// Compare prints, for every numeric figure the two reports share, the old
// and new values and the change, flagging changes for the worse over
// RegressionThreshold. It returns how many it flagged.
func Compare(w io.Writer, old, cur Report) (int, error) {
	prev := map[string]Figure{}
	for _, f := range old.Figures {
		prev[f.Kind+" "+f.Name] = f
	}
	var lines []string
	flagged := 0
	for _, f := range cur.Figures {
		worse, judged := higherIsWorse[f.Kind]
		o, ok := prev[f.Kind+" "+f.Name]
		if !judged || !ok || f.Text != "" || o.Text != "" || o.Value == 0 {
			continue
		}
		change := (f.Value - o.Value) / o.Value
		mark := ""
		if (worse && change > RegressionThreshold) || (!worse && change < -RegressionThreshold) {
			mark = "  REGRESSION"
			flagged++
		}
		lines = append(lines, fmt.Sprintf("%-6s %-24s %12.2f -> %12.2f %+7.1f%%%s", f.Kind, f.Name, o.Value, f.Value, 100*change, mark))
	}
	fmt.Fprintf(w, "old: %s, load %.2f; new: %s, load %.2f\n", describe(old.Machine), old.Machine.LoadStart, describe(cur.Machine), cur.Machine.LoadStart)
	for _, l := range lines {
		if _, err := fmt.Fprintln(w, l); err != nil {
			return flagged, err
		}
	}
	_, err := fmt.Fprintf(w, "%d of %d figures over %.0f %% worse\n", flagged, len(lines), 100*RegressionThreshold)
	return flagged, err
}

func describe(m Machine) string { return fmt.Sprintf("%d× %s, %s", m.NProc, m.CPU, m.Go) }

// ReadReport reads a report that -json wrote.
func ReadReport(path string) (Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Report{}, err
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return Report{}, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}
