package wasm

import (
	"context"
	"fmt"
	"slices"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/spear-go/spear/internal/auth"
	"github.com/spear-go/spear/wire"
)

// The host module a guest may import besides WASI (docs/wasm.md, "Host
// functions"). It exists for guests without a language runtime, which
// have no HMAC-SHA256 of their own: the runtime answers the handshake's
// challenge for them, so their secret never enters their memory.
const (
	hostModule      = "spear_v1"
	hostAuthRequest = "auth_request"
)

// hostFunctions are the functions of hostModule, by name, with their
// signatures, which compileNow checks a module's imports against.
var hostFunctions = map[string]struct{ params, results []api.ValueType }{
	hostAuthRequest: {
		params:  []api.ValueType{api.ValueTypeI32, api.ValueTypeI32, api.ValueTypeI32, api.ValueTypeI32},
		results: []api.ValueType{api.ValueTypeI32},
	},
}

// instantiateHost adds hostModule to engine.
func instantiateHost(ctx context.Context, engine wazero.Runtime) error {
	sig := hostFunctions[hostAuthRequest]
	_, err := engine.NewHostModuleBuilder(hostModule).
		NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(authRequest), sig.params, sig.results).
		WithParameterNames("challenge", "challenge_len", "out", "out_cap").
		WithResultNames("len").
		Export(hostAuthRequest).
		Instantiate(ctx)
	return err
}

// checkHostImport reports why a module's import of hostModule's function
// name with the given signature cannot be linked, or nil.
func checkHostImport(name string, params, results []api.ValueType) error {
	sig, ok := hostFunctions[name]
	switch {
	case !ok:
		return fmt.Errorf("the module imports %s.%s, which does not exist", hostModule, name)
	case !slices.Equal(params, sig.params) || !slices.Equal(results, sig.results):
		return fmt.Errorf("the module imports %s.%s with the wrong signature: it is (i32, i32, i32, i32) -> i32", hostModule, name)
	}
	return nil
}

// incarnationKey keys the incarnation in the context its module runs
// with, which is how a host function knows whose call it serves.
type incarnationKey struct{}

// hostCallError is the panic value of a host function the guest called
// wrongly. wazero turns it into a trap, which fails the incarnation as any
// trap does: Start reports it (an error matching
// spear.ErrConnectionFailed) when it happens before the handshake.
type hostCallError struct {
	Function string // "spear_v1.auth_request"
	Reason   string
}

func (e *hostCallError) Error() string { return e.Function + ": " + e.Reason }

// authRequest is spear_v1.auth_request(challenge, challenge_len, out,
// out_cap) -> len: it reads the AUTH_CHALLENGE frame (header and payload,
// as read from stdin) at challenge, and writes at out the whole
// AUTH_REQUEST frame that answers it for this instance, returning its
// length. The request announces no features and connection slot 0. A
// range outside the guest's memory, a frame that is not a challenge, or
// too small an out_cap traps with a *hostCallError.
func authRequest(ctx context.Context, mod api.Module, stack []uint64) {
	fail := func(format string, args ...any) {
		panic(&hostCallError{Function: hostModule + "." + hostAuthRequest, Reason: fmt.Sprintf(format, args...)})
	}
	run, ok := ctx.Value(incarnationKey{}).(*incarnation)
	if !ok {
		fail("called outside a spear instance")
	}
	in, inLen := api.DecodeU32(stack[0]), api.DecodeU32(stack[1])
	out, outCap := api.DecodeU32(stack[2]), api.DecodeU32(stack[3])
	mem := mod.Memory()
	if mem == nil {
		fail("the module has no memory")
	}
	view, ok := mem.Read(in, inLen)
	if !ok {
		fail("challenge [%d, +%d) is outside the guest's memory of %d bytes", in, inLen, mem.Size())
	}
	f, err := wire.Decode(slices.Clone(view), inLen) // bounded by the range itself
	if err != nil {
		fail("the challenge is not one whole frame: %v", err)
	}
	cr := run.inst.ch.Credentials()
	a, err := auth.AnswerChallenge(f, cr.ID, cr.Secret, auth.Slot{})
	if err != nil {
		fail("%v", err)
	}
	frame := wire.AppendFrame(nil, &a.Request)
	if uint64(len(frame)) > uint64(outCap) {
		fail("out_cap is %d bytes; the AUTH_REQUEST frame takes %d", outCap, len(frame))
	}
	if !mem.Write(out, frame) {
		fail("out [%d, +%d) is outside the guest's memory of %d bytes", out, len(frame), mem.Size())
	}
	stack[0] = api.EncodeU32(uint32(len(frame)))
}
