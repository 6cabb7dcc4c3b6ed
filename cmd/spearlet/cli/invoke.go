package cli

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/spear-go/spear/client"
)

func newInvokeCmd(g *globals) *cobra.Command {
	var (
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
stdin is not a terminal; otherwise it is empty.`,
		Example: `  spearlet invoke echo hello
  spearlet invoke echo --method upper -f notes.txt
  echo hi | spearlet invoke wasm-echo
  spearlet invoke echo --method stream --stream "one two three"`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			payload, err := readPayload(cmd, args[1:], file)
			if err != nil {
				return err
			}
			opts := client.InvokeOptions{Method: method, Timeout: timeout, Metadata: meta}
			c := g.client()
			out := cmd.OutOrStdout()
			if stream {
				s, err := c.InvokeStream(cmd.Context(), args[0], payload, opts)
				if err != nil {
					return err
				}
				defer s.Close()
				if showID {
					fmt.Fprintln(cmd.ErrOrStderr(), "instance:", s.Instance)
				}
				// Copy with a small buffer and no buffering on our side, so
				// chunks show as they arrive.
				_, err = io.CopyBuffer(out, s, make([]byte, 32<<10))
				return err
			}
			res, err := c.Invoke(cmd.Context(), args[0], payload, opts)
			if err != nil {
				return err
			}
			if showID {
				fmt.Fprintln(cmd.ErrOrStderr(), "instance:", res.Instance)
			}
			_, err = out.Write(res.Payload)
			if err == nil && isTerminal(os.Stdout) && len(res.Payload) > 0 && res.Payload[len(res.Payload)-1] != '\n' {
				_, err = fmt.Fprintln(out)
			}
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&method, "method", "m", "", "method to run (default the function's default)")
	fl.DurationVarP(&timeout, "timeout", "t", 0, "invocation timeout, waiting for an instance included (default the daemon's)")
	fl.StringVarP(&file, "file", "f", "", `read the payload from FILE ("-": stdin)`)
	fl.BoolVarP(&stream, "stream", "s", false, "print output chunks as they arrive")
	fl.StringToStringVar(&meta, "meta", nil, "metadata key=value pairs")
	fl.BoolVar(&showID, "show-instance", false, "print the answering instance's id on stderr")
	return cmd
}

// readPayload picks the payload from the argument, the file, or stdin.
func readPayload(cmd *cobra.Command, data []string, file string) ([]byte, error) {
	switch {
	case len(data) > 0 && file != "":
		return nil, fmt.Errorf("give DATA or -f FILE, not both")
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
