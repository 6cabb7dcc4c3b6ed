package runtime_test

import (
	"encoding/json"
	"testing"

	"github.com/spear-go/spear/runtime"
)

func TestBytes(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want runtime.Bytes
		text string
	}{
		{`65536`, 64 << 10, `"64Ki"`},
		{`"64Mi"`, 64 << 20, `"64Mi"`},
		{`"1G"`, 1e9, `"1G"`},
		{`"1500k"`, 1.5e6, `"1500k"`},
		{`"0"`, 0, `"0"`},
		{`"1000"`, 1000, `"1k"`},
		{`"1001"`, 1001, `"1001"`},
		{`"15Ei"`, 15 << 60, `"15Ei"`},
	} {
		var b runtime.Bytes
		if err := json.Unmarshal([]byte(tt.in), &b); err != nil || b != tt.want {
			t.Errorf("unmarshal %s = %d, %v; want %d", tt.in, b, err, tt.want)
			continue
		}
		out, err := json.Marshal(b)
		if err != nil || string(out) != tt.text {
			t.Errorf("marshal %d = %s, %v; want %s", b, out, err, tt.text)
		}
	}
	for _, bad := range []string{`"64MB"`, `"1.5Gi"`, `-1`, `"-1"`, `"+1"`, `"Mi"`, `""`, `"16Ei"`, `1e3`, `true`, `"99999999999999999999"`} {
		var b runtime.Bytes
		if err := json.Unmarshal([]byte(bad), &b); err == nil {
			t.Errorf("unmarshal %s = %d, want an error", bad, b)
		}
	}
}

// FuzzParseBytes checks that whatever ParseBytes accepts, String writes
// back as the same amount.
func FuzzParseBytes(f *testing.F) {
	for _, s := range []string{"0", "64Mi", "1G", "1500k", "18446744073709551615", "16Ei", "007Ki"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := runtime.ParseBytes(s)
		if err != nil {
			return
		}
		back, err := runtime.ParseBytes(b.String())
		if err != nil || back != b {
			t.Fatalf("ParseBytes(%q) = %d, written %q, read back %d, %v", s, b, b.String(), back, err)
		}
	})
}
