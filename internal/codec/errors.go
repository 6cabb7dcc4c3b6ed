package codec

import (
	"context"
	"errors"

	"github.com/spear-go/spear"
)

// HandlerError returns the code and message of the ERROR frame that
// answers a request whose handler failed with err, ctx being the request's
// context: a *spear.RemoteError keeps its code and its own message (the
// code travels separately); a passed deadline is DEADLINE_EXCEEDED, a
// cancellation CANCELED, anything else INTERNAL with the error's text.
func HandlerError(ctx context.Context, err error) (spear.Code, string) {
	var re *spear.RemoteError
	switch {
	case errors.As(err, &re):
		return re.Code, re.Message
	case errors.Is(err, context.DeadlineExceeded), errors.Is(ctx.Err(), context.DeadlineExceeded):
		return spear.CodeDeadlineExceeded, err.Error()
	case errors.Is(err, context.Canceled):
		return spear.CodeCanceled, err.Error()
	}
	return spear.CodeInternal, err.Error()
}
