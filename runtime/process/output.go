package process

import (
	"io"

	"github.com/spear-go/spear/runtime"
)

// capture copies r, one of the child's output pipes, into out line by line
// (runtime.Output logs each line, structured ones as records of their
// own) until EOF or a read error; it closes done when it returns.
func capture(r io.Reader, stream string, out *runtime.Output, done chan<- struct{}) {
	defer close(done)
	w := out.Writer(stream)
	_, _ = io.Copy(w, r)
	w.Flush()
}
