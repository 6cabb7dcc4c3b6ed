package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestOutputKeepsTheLatestLines(t *testing.T) {
	o := NewOutput(nil, 3)
	if got := o.Last(5); len(got) != 0 {
		t.Fatalf("Last of an empty output = %q", got)
	}
	for i := range 5 {
		o.Line("stdout", fmt.Sprint(i))
	}
	for n, want := range map[int]string{0: "", 1: "4", 2: "3 4", 3: "2 3 4", 10: "2 3 4", -1: ""} {
		if got := strings.Join(o.Last(n), " "); got != want {
			t.Errorf("Last(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestLineWriterSplitsAndTruncates(t *testing.T) {
	o := NewOutput(nil, 10)
	w := o.Writer("stderr")
	long := strings.Repeat("x", MaxLineBytes+100)
	for _, chunk := range []string{"one\r\ntw", "o\n", long[:MaxLineBytes/2], long[MaxLineBytes/2:] + "\nthree", "\n", "tail"} {
		if n, err := w.Write([]byte(chunk)); n != len(chunk) || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	w.Flush()
	want := []string{"one", "two", long[:MaxLineBytes] + TruncatedMark, "three", "tail"}
	got := o.Last(10)
	if len(got) != len(want) {
		t.Fatalf("lines %d, want %d: %.60q", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("line %d = %.40q (%d bytes), want %.40q (%d bytes)", i, got[i], len(got[i]), want[i], len(want[i]))
		}
	}
}

func TestFollowTailThenLiveThenEnd(t *testing.T) {
	o := NewOutput(nil, 100)
	o.Line("stdout", "old")
	o.Line("stdout", "recent")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got := make(chan string, 16)
	done := make(chan error, 1)
	go func() {
		done <- o.Follow(ctx, 1, func(l string) error { got <- l; return nil })
	}()
	if l := <-got; l != "recent" {
		t.Fatalf("first line %q, want the tail of 1, %q", l, "recent")
	}
	o.Line("stdout", "live 1")
	if l := <-got; l != "live 1" {
		t.Fatalf("live line %q", l)
	}
	o.Line("stdout", "live 2")
	o.Close()
	o.Line("stdout", "after close") // logged, not kept
	if l := <-got; l != "live 2" {
		t.Fatalf("last line %q", l)
	}
	if err := <-done; err != nil {
		t.Fatalf("Follow after Close = %v, want nil", err)
	}
	if len(got) != 0 {
		t.Fatalf("a line after Close reached the follower: %q", <-got)
	}
}

func TestFollowEndsWithContextOrCallback(t *testing.T) {
	o := NewOutput(nil, 10)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- o.Follow(ctx, 0, func(string) error { return nil }) }()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Follow after cancel = %v", err)
	}
	stop := errors.New("enough")
	o.Line("stdout", "x")
	if err := o.Follow(context.Background(), 5, func(string) error { return stop }); err != stop {
		t.Fatalf("Follow with a failing callback = %v, want its error", err)
	}
}

func TestFollowerThatFallsBehindIsTold(t *testing.T) {
	o := NewOutput(nil, 2)
	o.Line("stdout", "a")
	var got []string
	first := true
	err := o.Follow(context.Background(), 1, func(l string) error {
		got = append(got, l)
		if first {
			first = false
			for _, x := range []string{"b", "c", "d", "e"} { // b and c fall out of the ring
				o.Line("stdout", x)
			}
			o.Close()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := "a|[2 lines skipped: the follower fell behind]|d|e"
	if strings.Join(got, "|") != want {
		t.Fatalf("lines %q, want %q", strings.Join(got, "|"), want)
	}
}

// logged runs one line through an Output whose logger writes JSON, and
// returns the record.
func logged(t *testing.T, line string) map[string]any {
	t.Helper()
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug - 4})).With("instance", "process:f-1")
	NewOutput(log, 1).Line("stderr", line)
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("record %q: %v", buf.String(), err)
	}
	return rec
}

func TestStructuredLinesBecomeRecords(t *testing.T) {
	rec := logged(t, `{"time":"2025-01-02T03:04:05.5Z","level":"WARN","msg":"disk low","free_mb":12,"ratio":0.5,"ok":false,"req":{"id":"r1","try":2},"tags":["a"]}`)
	want := map[string]any{
		"time": "2025-01-02T03:04:05.5Z", "level": "WARN", "msg": "disk low", "instance": "process:f-1", "stream": "stderr",
		"free_mb": 12.0, "ratio": 0.5, "ok": false, "req": map[string]any{"id": "r1", "try": 2.0}, "tags": []any{"a"},
	}
	if fmt.Sprint(rec) != fmt.Sprint(want) {
		t.Fatalf("JSON line logged as\n%v\nwant\n%v", rec, want)
	}

	rec = logged(t, `time=2025-01-02T03:04:05Z level=DEBUG msg="cache miss" key="a b\"c" n=3`)
	want = map[string]any{
		"time": "2025-01-02T03:04:05Z", "level": "DEBUG", "msg": "cache miss", "instance": "process:f-1", "stream": "stderr",
		"key": `a b"c`, "n": "3",
	}
	if fmt.Sprint(rec) != fmt.Sprint(want) {
		t.Fatalf("logfmt line logged as\n%v\nwant\n%v", rec, want)
	}
}

func TestPlainLinesStayPlain(t *testing.T) {
	for _, line := range []string{
		"hello world",
		`{"not": "closed"`,
		`{"a":1} trailing`,
		"a=b c=d", // logfmt without msg or level
		`msg="unterminated`,
		"level=info and then words",
		"  ",
		`{"a":1}{"b":2}`,
	} {
		rec := logged(t, line)
		if rec["msg"] != line || rec["level"] != "INFO" || rec["stream"] != "stderr" || len(rec) != 5 {
			t.Errorf("plain line %q logged as %v", line, rec)
		}
	}
}

func TestLevelsAndFiltering(t *testing.T) {
	for in, want := range map[string]string{"warning": "WARN", "fatal": "ERROR", "error": "ERROR", "INFO+2": "INFO+2", "trace": "DEBUG-4"} {
		if rec := logged(t, `{"level":"`+in+`","msg":"m"}`); rec["level"] != want {
			t.Errorf("level %q logged as %v, want %s", in, rec["level"], want)
		}
	}
	// An unknown level stays an attribute; the record is at Info.
	if rec := logged(t, `{"level":"loud","msg":"m"}`); rec["level"] != "INFO" || rec["line.level"] != "loud" {
		t.Errorf("unknown level: %v", rec)
	}
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil)) // Info and up
	NewOutput(log, 1).Line("stderr", `{"level":"debug","msg":"quiet"}`)
	if buf.Len() != 0 {
		t.Fatalf("a debug line passed an Info logger: %s", buf.String())
	}
}

func FuzzParseStructured(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `level=info msg="x y"`, `{"a":{"b":{"c":[1,2]}}}`, `k="\u00e9\"" msg=1`, "plain", `{"msg":"x","level":"WARN+3"}`} {
		f.Add(s)
	}
	log := slog.New(slog.NewJSONHandler(&bytes.Buffer{}, nil))
	f.Fuzz(func(t *testing.T, line string) {
		rec, ok := parseStructured(line)
		if ok && strings.TrimSpace(line) == "" {
			t.Fatalf("blank line %q parsed as structured", line)
		}
		_ = rec
		logLine(log, "stderr", line) // must not panic
	})
}
