package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strconv"
	"strings"
	"time"
)

// An instance's structured log line becomes a record of the agent's log:
// the line's level, message and time, the instance's attributes (those of
// the logger), the stream, then the line's own attributes in their order.
// Re-logging it as one string would escape it a second time. A line is
// structured when it is a JSON object, or logfmt (key=value pairs, values
// quoted as Go quotes them) with a msg or level key. Anything else is
// plain and is logged as it is, as the message, at Info.

// logLine logs one line of an instance's output.
func logLine(log *slog.Logger, stream, line string) {
	ctx := context.Background()
	rec, ok := parseStructured(line)
	if !ok {
		if log.Enabled(ctx, slog.LevelInfo) {
			log.Info(line, "stream", stream)
		}
		return
	}
	if !log.Enabled(ctx, rec.level) {
		return
	}
	if rec.time.IsZero() {
		rec.time = time.Now()
	}
	r := slog.NewRecord(rec.time, rec.level, rec.msg, 0)
	r.AddAttrs(slog.String("stream", stream))
	r.AddAttrs(rec.attrs...)
	_ = log.Handler().Handle(ctx, r)
}

// structured is a parsed structured line.
type structured struct {
	time  time.Time
	level slog.Level
	msg   string
	attrs []slog.Attr
}

// parseStructured parses a JSON-object or logfmt line.
func parseStructured(line string) (structured, bool) {
	s := strings.TrimSpace(line)
	if strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}") {
		attrs, ok := parseJSONObject(s)
		if !ok {
			return structured{}, false
		}
		return fromAttrs(attrs), true
	}
	attrs, ok := parseLogfmt(s)
	if !ok {
		return structured{}, false
	}
	hasKey := false
	for _, a := range attrs {
		switch strings.ToLower(a.Key) {
		case "msg", "level":
			hasKey = true
		}
	}
	if !hasKey {
		return structured{}, false
	}
	return fromAttrs(attrs), true
}

// fromAttrs takes the time, level and message out of a line's attributes.
// Each is taken once, from its first key; a value of the wrong form stays
// an attribute, renamed "line.KEY" when KEY is one of the record's own
// (time, level, msg, source).
func fromAttrs(attrs []slog.Attr) structured {
	rec := structured{level: slog.LevelInfo}
	var gotTime, gotLevel, gotMsg bool
	kept := attrs[:0]
	for _, a := range attrs {
		v := a.Value.Resolve()
		switch k := strings.ToLower(a.Key); {
		case !gotTime && (k == "time" || k == "ts" || k == "timestamp") && v.Kind() == slog.KindString:
			if t, err := time.Parse(time.RFC3339Nano, v.String()); err == nil {
				rec.time, gotTime = t, true
				continue
			}
		case !gotLevel && (k == "level" || k == "lvl" || k == "severity") && v.Kind() == slog.KindString:
			if l, ok := parseLevel(v.String()); ok {
				rec.level, gotLevel = l, true
				continue
			}
		case !gotMsg && (k == "msg" || k == "message") && v.Kind() == slog.KindString:
			rec.msg, gotMsg = v.String(), true
			continue
		}
		switch a.Key {
		case slog.TimeKey, slog.LevelKey, slog.MessageKey, slog.SourceKey:
			// Not taken above: keep it without clashing with the record's own.
			a.Key = "line." + a.Key
		}
		kept = append(kept, a)
	}
	rec.attrs = kept
	return rec
}

// parseLevel reads slog's level names ("INFO", "WARN+2") and the common
// others (warning, fatal, trace; any case).
func parseLevel(s string) (slog.Level, bool) {
	switch strings.ToLower(s) {
	case "trace":
		return slog.LevelDebug - 4, true
	case "warning":
		return slog.LevelWarn, true
	case "err", "fatal", "panic", "critical", "crit":
		return slog.LevelError, true
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, false
	}
	return l, true
}

// maxDepth bounds the nesting of JSON values that become groups.
const maxDepth = 8

// parseJSONObject decodes a JSON object into attributes, keeping the
// order of its keys. Nested objects become groups, numbers int64 or
// float64 values, arrays and deeper nesting plain values.
func parseJSONObject(s string) ([]slog.Attr, bool) {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	attrs, ok := decodeObject(dec, 0)
	if !ok {
		return nil, false
	}
	if _, err := dec.Token(); err == nil { // anything after the object
		return nil, false
	}
	return attrs, true
}

// decodeObject decodes the object dec is at.
func decodeObject(dec *json.Decoder, depth int) ([]slog.Attr, bool) {
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, false
	}
	attrs := []slog.Attr{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, false
		}
		key, ok := t.(string)
		if !ok {
			return nil, false
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, false
		}
		v, ok := jsonValue(raw, depth)
		if !ok {
			return nil, false
		}
		attrs = append(attrs, slog.Attr{Key: key, Value: v})
	}
	if t, err := dec.Token(); err != nil || t != json.Delim('}') {
		return nil, false
	}
	return attrs, true
}

// jsonValue turns one JSON value into an attribute value.
func jsonValue(raw json.RawMessage, depth int) (slog.Value, bool) {
	b := bytes.TrimSpace(raw)
	if len(b) > 0 && b[0] == '{' && depth < maxDepth {
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		attrs, ok := decodeObject(dec, depth+1)
		if !ok {
			return slog.Value{}, false
		}
		return slog.GroupValue(attrs...), true
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return slog.Value{}, false
	}
	switch x := v.(type) {
	case string:
		return slog.StringValue(x), true
	case bool:
		return slog.BoolValue(x), true
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return slog.Int64Value(i), true
		}
		if f, err := x.Float64(); err == nil {
			return slog.Float64Value(f), true
		}
		return slog.StringValue(x.String()), true
	default: // null, arrays, objects nested too deep
		return slog.AnyValue(x), true
	}
}

// parseLogfmt splits a logfmt line into attributes: space-separated
// key=value pairs, a value either bare (no spaces, quotes or '=') or a
// Go-quoted string. Any other token makes the line not logfmt.
func parseLogfmt(s string) ([]slog.Attr, bool) {
	var attrs []slog.Attr
	for s != "" {
		eq := strings.IndexByte(s, '=')
		if eq <= 0 {
			return nil, false
		}
		key := s[:eq]
		if strings.ContainsAny(key, " \t\"") {
			return nil, false
		}
		s = s[eq+1:]
		var val string
		if strings.HasPrefix(s, `"`) {
			end := closingQuote(s)
			if end < 0 {
				return nil, false
			}
			v, err := strconv.Unquote(s[:end+1])
			if err != nil {
				return nil, false
			}
			val, s = v, s[end+1:]
		} else {
			end := strings.IndexAny(s, " \t")
			if end < 0 {
				end = len(s)
			}
			val, s = s[:end], s[end:]
			if strings.ContainsAny(val, `"=`) {
				return nil, false
			}
		}
		if s != "" && s[0] != ' ' && s[0] != '\t' {
			return nil, false
		}
		s = strings.TrimLeft(s, " \t")
		attrs = append(attrs, slog.String(key, val))
	}
	return attrs, len(attrs) > 0
}

// closingQuote returns the index of the quote that closes the string s
// starts with, or -1.
func closingQuote(s string) int {
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			return i
		}
	}
	return -1
}
