package agent

import (
	"context"
	"errors"
	"net/http"

	"google.golang.org/grpc/codes"

	"github.com/spear-go/spear"
)

// Error categories of the agent. Errors from Agent methods match one of
// these, a spear category, or a *spear.RemoteError (the instance's own
// failure), with errors.Is and errors.As.
var (
	// ErrUnknownFunction: no function has the name.
	ErrUnknownFunction = errors.New("agent: unknown function")
	// ErrUnknownInstance: no instance has the id.
	ErrUnknownInstance = errors.New("agent: unknown instance")
	// ErrBadRequest: a request's arguments are malformed.
	ErrBadRequest = errors.New("agent: bad request")
	// ErrUnsupportedMediaType: a request body's Content-Type is missing
	// or not one the endpoint takes.
	ErrUnsupportedMediaType = errors.New("agent: unsupported media type")
	// ErrPayloadTooLarge: an invocation's payload is over max_payload.
	ErrPayloadTooLarge = errors.New("agent: payload too large")
	// ErrPoolFull: the function already runs max_instances instances.
	ErrPoolFull = errors.New("agent: function at max_instances")
	// ErrNoInstance: no instance could take the invocation before its
	// deadline, or none could be started.
	ErrNoInstance = errors.New("agent: no instance available")
	// ErrQueueFull: max_queue invocations already wait for an instance of
	// the function (a *QueueFullError says when to retry).
	ErrQueueFull = errors.New("agent: invocation queue full")
	// ErrShuttingDown: the agent is shutting down and takes no new work.
	ErrShuttingDown = errors.New("agent: shutting down")
)

// class is how an error appears on the wire.
type class struct {
	http int
	grpc codes.Code
	code string // the "code" of the HTTP error body
}

// classify maps err to its wire class. The order matters: an agent
// category wins over the causes it wraps.
func classify(err error) class {
	var re *spear.RemoteError
	switch {
	case errors.Is(err, ErrUnknownFunction), errors.Is(err, ErrUnknownInstance):
		return class{http.StatusNotFound, codes.NotFound, "not_found"}
	case errors.Is(err, ErrBadRequest), errors.Is(err, spear.ErrInvalidInstanceID):
		return class{http.StatusBadRequest, codes.InvalidArgument, "invalid_argument"}
	case errors.Is(err, ErrUnsupportedMediaType):
		return class{http.StatusUnsupportedMediaType, codes.InvalidArgument, "unsupported_media_type"}
	case errors.Is(err, ErrPayloadTooLarge):
		return class{http.StatusRequestEntityTooLarge, codes.ResourceExhausted, "payload_too_large"}
	case errors.Is(err, ErrPoolFull):
		return class{http.StatusConflict, codes.ResourceExhausted, "pool_full"}
	case errors.Is(err, ErrQueueFull):
		return class{http.StatusTooManyRequests, codes.ResourceExhausted, "queue_full"}
	case errors.Is(err, ErrShuttingDown):
		return class{http.StatusServiceUnavailable, codes.Unavailable, "shutting_down"}
	case errors.Is(err, ErrNoInstance):
		return class{http.StatusServiceUnavailable, codes.Unavailable, "no_instance"}
	case errors.As(err, &re):
		return remoteClass(re.Code)
	case errors.Is(err, spear.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return class{http.StatusGatewayTimeout, codes.DeadlineExceeded, "deadline_exceeded"}
	case errors.Is(err, context.Canceled):
		return class{statusClientClosed, codes.Canceled, "canceled"}
	case errors.Is(err, spear.ErrConnectionFailed), errors.Is(err, spear.ErrChannelClosed),
		errors.Is(err, spear.ErrNotConnected), errors.Is(err, spear.ErrInvalidMessage):
		return class{http.StatusBadGateway, codes.Unavailable, "instance_failed"}
	case errors.Is(err, spear.ErrInvalidConfig):
		return class{http.StatusBadRequest, codes.InvalidArgument, "invalid_config"}
	case errors.Is(err, spear.ErrConfig), errors.Is(err, spear.ErrUnsupportedRuntime):
		return class{http.StatusBadRequest, codes.FailedPrecondition, "failed_precondition"}
	}
	return class{http.StatusInternalServerError, codes.Internal, "internal"}
}

// statusClientClosed is nginx's status for a client that went away; only
// logs and metrics ever see it.
const statusClientClosed = 499

// remoteClass maps an instance's wire error code.
func remoteClass(c spear.Code) class {
	name := "function_" + c.String()
	switch c {
	case spear.CodeNotFound:
		return class{http.StatusNotFound, codes.NotFound, name}
	case spear.CodeDeadlineExceeded:
		// The instance saw the deadline that travelled with the request:
		// the same event as the agent seeing it first.
		return class{http.StatusGatewayTimeout, codes.DeadlineExceeded, "deadline_exceeded"}
	case spear.CodeCanceled:
		return class{statusClientClosed, codes.Canceled, "canceled"}
	case spear.CodeTooLarge:
		return class{http.StatusRequestEntityTooLarge, codes.ResourceExhausted, name}
	case spear.CodeResourceExhausted:
		return class{http.StatusTooManyRequests, codes.ResourceExhausted, name}
	case spear.CodeUnavailable:
		return class{http.StatusServiceUnavailable, codes.Unavailable, name}
	case spear.CodeInvalidMessage, spear.CodeUnsupportedVersion, spear.CodeAuthFailed:
		return class{http.StatusBadGateway, codes.Internal, name}
	}
	return class{http.StatusInternalServerError, codes.Internal, name}
}

// HTTPStatus returns the HTTP status that reports err.
func HTTPStatus(err error) int { return classify(err).http }

// GRPCCode returns the gRPC code that reports err.
func GRPCCode(err error) codes.Code { return classify(err).grpc }

// ErrorCode returns the short machine-readable name of err's category, as
// in the "code" of the HTTP API's error body ("not_found", "no_instance",
// "function_internal", ...).
func ErrorCode(err error) string { return classify(err).code }
