package cli

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/spear-go/spear/client"
)

// invokeResult is what invoke prints with -o json or yaml: the output as
// text when it is UTF-8, else in base64.
type invokeResult struct {
	Instance     string `json:"instance"`
	Output       string `json:"output,omitempty"`
	OutputBase64 []byte `json:"output_base64,omitempty"`
}

func newInvokeCmd() *cobra.Command {
	var (
		d       *daemonFlags
		method  string
		timeout time.Duration
		file    string
		stream  bool
		meta    map[string]string
		showID  bool
	)
	cmd := &cobra.Command{
		Use:   "invoke FUNCTION [DATA]",
		Short: "Invoke a function and print its result",
		Long: `Invoke a function and print its result. The payload is DATA, or the
contents of -f FILE ("-f -" reads stdin), or stdin when neither is given and
stdin is not a terminal; otherwise it is empty.

The result is written as it is (-o raw), or with the answering instance as
JSON or YAML. The exit status is 4 when the function, or the daemon, failed
the invocation, and 3 when no daemon answered.`,
		Example: `  spearlet invoke echo hello
  spearlet invoke echo --method upper -f notes.txt
  echo hi | spearlet invoke wasm-echo
  spearlet invoke echo --method stream --stream "one two three"
  spearlet invoke echo --method sleep -t 5 1s`,
		Args: cobra.RangeArgs(1, 2),
	}
	out := addOutput(cmd, "raw", "json", "yaml")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if stream && out.format != "raw" {
			return usagef(cmd, "--stream prints the output as it comes; it cannot be -o %s", out.format)
		}
		payload, err := readPayload(cmd, args[1:], file)
		if err != nil {
			return err
		}
		opts := client.InvokeOptions{Method: method, Timeout: timeout, Metadata: meta}
		c := d.client()
		w := cmd.OutOrStdout()
		if stream {
			s, err := c.InvokeStream(cmd.Context(), args[0], payload, opts)
			if err != nil {
				return invocationFailed(err)
			}
			defer s.Close()
			if showID {
				fmt.Fprintln(cmd.ErrOrStderr(), "instance:", s.Instance)
			}
			// Copy with a small buffer and no buffering on our side, so
			// chunks show as they arrive.
			_, err = io.CopyBuffer(w, s, make([]byte, 32<<10))
			return invocationFailed(err)
		}
		res, err := c.Invoke(cmd.Context(), args[0], payload, opts)
		if err != nil {
			return invocationFailed(err)
		}
		if showID {
			fmt.Fprintln(cmd.ErrOrStderr(), "instance:", res.Instance)
		}
		r := invokeResult{Instance: res.Instance, Output: string(res.Payload)}
		if !utf8.Valid(res.Payload) {
			r.Output, r.OutputBase64 = "", res.Payload
		}
		return out.print(w, r, func(w io.Writer) error {
			_, err := w.Write(res.Payload)
			if err == nil && isTerminal(os.Stdout) && len(res.Payload) > 0 && res.Payload[len(res.Payload)-1] != '\n' {
				_, err = fmt.Fprintln(w)
			}
			return err
		})
	}
	fl := cmd.Flags()
	fl.StringVarP(&method, "method", "m", "", "method to run (default the function's default)")
	fl.VarP(durationFlag{&timeout}, "timeout", "t", "invocation timeout, waiting for an instance included, such as 5s or 5 (seconds) (default the daemon's)")
	fl.StringVarP(&file, "file", "f", "", `read the payload from FILE ("-": stdin)`)
	fl.BoolVarP(&stream, "stream", "s", false, "print output chunks as they arrive")
	fl.StringToStringVar(&meta, "meta", nil, "metadata key=value pairs")
	fl.BoolVar(&showID, "show-instance", false, "print the answering instance's id on stderr")
	d = clientCommand(cmd)
	cmd.ValidArgsFunction = d.functionNames
	return cmd
}

// invocationFailed marks an error the daemon answered with as the
// invocation's failure (exit status 4). A refusal of the caller itself
// (no or a wrong token, a foreign Host) is not one: nothing was invoked.
func invocationFailed(err error) error {
	if ce, ok := errors.AsType[*client.Error](err); ok && ce.StatusCode != http.StatusUnauthorized && ce.StatusCode != http.StatusForbidden {
		return &invocationError{err: err}
	}
	return err
}

// readPayload picks the payload from the argument, the file, or stdin.
func readPayload(cmd *cobra.Command, data []string, file string) ([]byte, error) {
	switch {
	case len(data) > 0 && file != "":
		return nil, usagef(cmd, "give DATA or -f FILE, not both")
	case len(data) > 0:
		return []byte(data[0]), nil
	case file == "-":
		return io.ReadAll(cmd.InOrStdin())
	case file != "":
		return os.ReadFile(file)
	}
	if in, ok := cmd.InOrStdin().(*os.File); ok && isTerminal(in) {
		return nil, nil
	}
	return io.ReadAll(cmd.InOrStdin())
}
