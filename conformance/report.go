package conformance

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteTable writes the report as a table: one row per check, one column
// per transport; then the detail of every failure and skip, and a closing
// count ("N passed, N failed, N skipped").
func (r *Report) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "conformance of %s\n\n", r.Target)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "CHECK\t%s\n", strings.ToUpper(strings.Join(r.Transports, "\t")))
	cells := map[[2]string]Result{}
	var order []string
	for _, res := range r.Results {
		if _, seen := cells[[2]string{res.Check, r.Transports[0]}]; !seen && res.Transport == r.Transports[0] {
			order = append(order, res.Check)
		}
		cells[[2]string{res.Check, res.Transport}] = res
	}
	for _, check := range order {
		row := []string{check}
		for _, t := range r.Transports {
			res, ok := cells[[2]string{check, t}]
			switch {
			case !ok:
				row = append(row, "-")
			case res.Status == Pass:
				row = append(row, fmt.Sprintf("pass %s", res.Duration.Round(time.Millisecond)))
			default:
				row = append(row, strings.ToUpper(string(res.Status)))
			}
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var notes []string
	for _, res := range r.Results {
		if res.Status != Pass {
			notes = append(notes, fmt.Sprintf("%s %s on %s: %s", strings.ToUpper(string(res.Status)), res.Check, res.Transport, res.Detail))
		}
	}
	if len(notes) > 0 {
		fmt.Fprintf(w, "\n%s\n", strings.Join(notes, "\n"))
	}
	_, err := fmt.Fprintf(w, "\n%d passed, %d failed, %d skipped\n", r.Passed, r.Failed, r.Skipped)
	return err
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}
