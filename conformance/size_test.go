package conformance

import (
	"testing"

	"github.com/spear-go/spear/internal/codec"
)

// The payload-limit checks build frames of exactly the limit where one
// exists, and never over it.
func TestSizesAtTheLimit(t *testing.T) {
	for _, limit := range []uint32{1024, 16387, 16388, 1 << 20, 16 << 20} {
		n, size := answerSize(limit)
		if got := len(codec.AppendExecuteResponse(nil, make([]byte, n), nil)); got != size || size > int(limit) {
			t.Errorf("limit %d: answer of %d bytes encodes to %d, reported %d", limit, n, got, size)
		}
		if next := len(codec.AppendExecuteResponse(nil, make([]byte, n+1), nil)); next <= int(limit) {
			t.Errorf("limit %d: an answer of %d bytes (%d encoded) would fit too", limit, n+1, next)
		}
		req, payload := requestAtLimit(limit)
		if len(req) > int(limit) || len(req) < int(limit)-1 || len(payload) == 0 {
			t.Errorf("limit %d: request of %d bytes (payload %d)", limit, len(req), len(payload))
		}
	}
	// Where a size can be hit exactly, it is.
	if _, size := answerSize(16 << 20); size != 16<<20 {
		t.Errorf("the default limit is not hit exactly: %d", size)
	}
}
