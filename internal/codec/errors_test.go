package codec

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/spear-go/spear"
)

var time0 = time.Unix(1, 0)

func TestHandlerError(t *testing.T) {
	expired, cancel := context.WithDeadline(context.Background(), time0)
	defer cancel()
	tests := []struct {
		ctx      context.Context
		err      error
		code     spear.Code
		wantText string
	}{
		{context.Background(), fmt.Errorf("wrapped: %w", &spear.RemoteError{Code: spear.CodeNotFound, Message: "no such method"}), spear.CodeNotFound, "no such method"},
		{context.Background(), fmt.Errorf("slow: %w", context.DeadlineExceeded), spear.CodeDeadlineExceeded, "slow: context deadline exceeded"},
		{expired, errors.New("gave up"), spear.CodeDeadlineExceeded, "gave up"},
		{context.Background(), context.Canceled, spear.CodeCanceled, "context canceled"},
		{context.Background(), errors.New("boom"), spear.CodeInternal, "boom"},
	}
	for _, tt := range tests {
		code, msg := HandlerError(tt.ctx, tt.err)
		if code != tt.code || msg != tt.wantText {
			t.Errorf("HandlerError(%v) = %v %q, want %v %q", tt.err, code, msg, tt.code, tt.wantText)
		}
	}
}
