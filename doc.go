// Package spear holds the vocabulary every layer of Spear for Go shares:
// the identity of a runtime instance ([InstanceID], [RuntimeType]) and the
// error categories ([ErrTimeout], [ErrAuthFailed], ...) that callers test
// with [errors.Is].
//
// The layers themselves live in sub-packages, from the bottom up:
//
//   - wire: the frame format of docs/protocol.md;
//   - transport/...: unix, tcp, grpc and memory transports that move frames;
//   - channel: instance-bound channels, the handshake, heartbeats and the factory;
//   - sdk: what an instance links to connect back to the agent.
package spear
