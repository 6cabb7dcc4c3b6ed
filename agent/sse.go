package agent

import (
	"context"
	"net/http"
	"strings"
	"time"
)

// sseKeepalive is how often an idle event stream gets a comment, so that
// proxies keep it open and a client that left is noticed.
const sseKeepalive = 15 * time.Second

// sse writes a text/event-stream response (the HTML standard's
// server-sent events): the log follower and the dashboard's live view.
// It is for one goroutine.
type sse struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

// startSSE sends the stream's headers.
func startSSE(w http.ResponseWriter) *sse {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Accel-Buffering", "no") // tell nginx-like proxies not to buffer
	w.WriteHeader(http.StatusOK)
	s := &sse{w: w, rc: http.NewResponseController(w)}
	// A stream outlives any write timeout the server may set for requests.
	_ = s.rc.SetWriteDeadline(time.Time{})
	_ = s.rc.Flush()
	return s
}

// event sends one event named name ("" for the default, "message") whose
// data is data. Line breaks in data become separate data lines, which the
// client joins with "\n"; a lone "\r", which the format would take for a
// line break, is sent as "\n".
func (s *sse) event(name, data string) error {
	var b strings.Builder
	if name != "" {
		b.WriteString("event: " + name + "\n")
	}
	data = strings.ReplaceAll(strings.ReplaceAll(data, "\r\n", "\n"), "\r", "\n")
	for line := range strings.SplitSeq(data, "\n") {
		b.WriteString("data: " + line + "\n")
	}
	b.WriteString("\n")
	if _, err := s.w.Write([]byte(b.String())); err != nil {
		return err
	}
	return s.rc.Flush()
}

// comment sends a comment line, which clients ignore.
func (s *sse) comment(text string) error {
	if _, err := s.w.Write([]byte(": " + text + "\n\n")); err != nil {
		return err
	}
	return s.rc.Flush()
}

// streamLines runs follow, which calls its argument for each line until it
// returns, and sends each line as an event, with keepalives while it is
// quiet. It returns follow's error, or nil when the client left. The lines
// are handed over a channel so that keepalives need no lock.
func (s *sse) streamLines(ctx context.Context, follow func(ctx context.Context, fn func(string) error) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	lines := make(chan string, 64)
	done := make(chan error, 1)
	go func() {
		done <- follow(ctx, func(l string) error {
			select {
			case lines <- l:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	tick := time.NewTicker(sseKeepalive)
	defer tick.Stop()
	for {
		select {
		case l := <-lines:
			if err := s.event("", l); err != nil {
				cancel()
				<-done
				return nil // the client left
			}
		case err := <-done:
			// follow has returned: every line it sent is queued.
			for len(lines) > 0 {
				if s.event("", <-lines) != nil {
					return nil
				}
			}
			return err
		case <-tick.C:
			if s.comment("keepalive") != nil {
				cancel()
				<-done
				return nil
			}
		}
	}
}
