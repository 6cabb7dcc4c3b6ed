package conformance

import (
	"testing"

	"github.com/spear-go/spear/internal/codec"
	"github.com/spear-go/spear/wire"
)

// The payload-limit checks build frames of exactly the limit where one
// exists, and never over it, in both execute layouts.
func TestSizesAtTheLimit(t *testing.T) {
	for _, limit := range []uint32{1024, 16387, 16388, 1 << 20, 16 << 20} {
		for _, split := range []bool{false, true} {
			n, size := answerSize(limit, split)
			encoded := func(n int) int {
				var f wire.Frame
				codec.PutExecuteResponse(&f, nil, make([]byte, n), nil, split)
				return f.Len()
			}
			if got := encoded(n); got != size || size > int(limit) {
				t.Errorf("limit %d, split %v: answer of %d bytes encodes to %d, reported %d", limit, split, n, got, size)
			}
			if next := encoded(n + 1); next <= int(limit) {
				t.Errorf("limit %d, split %v: an answer of %d bytes (%d encoded) would fit too", limit, split, n+1, next)
			}
		}
		req, payload := requestAtLimit(limit)
		if len(req) > int(limit) || len(req) < int(limit)-1 || len(payload) == 0 {
			t.Errorf("limit %d: request of %d bytes (payload %d)", limit, len(req), len(payload))
		}
	}
	// Where a size can be hit exactly, it is.
	if _, size := answerSize(16<<20, false); size != 16<<20 {
		t.Errorf("the default limit is not hit exactly: %d", size)
	}
}
