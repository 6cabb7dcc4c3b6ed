package echoworker

import (
	"bytes"
	"testing"
)

func TestChunks(t *testing.T) {
	for _, tt := range []struct {
		in   string
		n    int
		want int
	}{{"", 4, 0}, {"ab", 4, 2}, {"one two three four", 4, 4}, {"abcdefghij", 3, 3}} {
		got := chunks([]byte(tt.in), tt.n)
		if len(got) != tt.want || !bytes.Equal(bytes.Join(got, nil), []byte(tt.in)) {
			t.Errorf("chunks(%q, %d) = %q, want %d pieces joining to the input", tt.in, tt.n, got, tt.want)
		}
		for _, c := range got {
			if len(c) == 0 {
				t.Errorf("chunks(%q) has an empty piece", tt.in)
			}
		}
	}
}
