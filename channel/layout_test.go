package channel_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/spear-go/spear/channel"
	"github.com/spear-go/spear/internal/auth"
	"github.com/spear-go/spear/internal/session"
	"github.com/spear-go/spear/proto/spearpb"
	"github.com/spear-go/spear/wire"
)

// The agent writes an invocation in the layout its instance announced: an
// instance that did not announce "split" (every one before it) gets the
// payload inside one ExecuteRequest message and answers the same way; one
// that did gets the envelope with the payload beside it. Both answers
// reach the caller, along with the request's metadata in the envelope.
func TestExecuteLayoutFollowsFeatures(t *testing.T) {
	for _, split := range []bool{false, true} {
		name := "old"
		var features []string
		if split {
			name, features = "split", []string{wire.FeatureSplit}
		}
		t.Run(name, func(t *testing.T) {
			f := newFactory(t, channel.Options{})
			ch := newChannel(t, f, channel.Unix, channel.Config{})
			cr := ch.Credentials()
			conn := dial(t, cr)
			if _, err := auth.Connect(testCtx(t), conn, cr.ID, cr.Secret, features...); err != nil {
				t.Fatal(err)
			}
			seen := make(chan string, 1)
			s := session.Start(conn, session.Config{
				Handler: session.HandlerFunc(func(_ context.Context, req wire.Frame, r *session.Responder) {
					got, body := req.Flags&wire.FlagSplit != 0, []byte(nil)
					var env spearpb.ExecuteRequest
					envelope := req.Payload
					if got {
						// 4 bytes of envelope length, the envelope, the payload.
						n := int(binary.BigEndian.Uint32(req.Payload))
						envelope, body = req.Payload[4:4+n], req.Payload[4+n:]
					}
					if err := proto.Unmarshal(envelope, &env); err != nil {
						seen <- "undecodable request: " + err.Error()
						return
					}
					if !got {
						body = env.GetPayload()
					} else if len(env.GetPayload()) != 0 {
						seen <- "a split request with the payload in its envelope too"
						return
					}
					switch {
					case got != split:
						seen <- fmt.Sprintf("request layout split=%v, want %v", got, split)
					case !bytes.Equal(body, []byte("payload")) || env.GetMetadata()["traceparent"] != "00-t-s-01":
						seen <- "request " + string(body) + " metadata " + env.GetMetadata()["traceparent"]
					default:
						seen <- ""
					}
					answer := append([]byte("answer:"), body...)
					var resp []byte
					if got { // the answer in the request's layout
						e, _ := proto.Marshal(&spearpb.ExecuteResponse{})
						resp = append(binary.BigEndian.AppendUint32(nil, uint32(len(e))), e...)
						resp = append(resp, answer...)
					} else {
						resp, _ = proto.Marshal(&spearpb.ExecuteResponse{Payload: answer})
					}
					var fl wire.Flags
					if got {
						fl = wire.FlagSplit
					}
					_ = r.Send(&wire.Frame{Type: wire.TypeExecuteResponse, Flags: fl, Payload: resp})
				}),
			})
			t.Cleanup(func() { s.Close(nil); s.Wait() })
			waitConnected(t, ch)
			out, err := channel.Execute(testCtx(t), ch, channel.Invocation{
				Payload: []byte("payload"), Metadata: map[string]string{"traceparent": "00-t-s-01"}})
			if err != nil {
				t.Fatal(err)
			}
			if msg := <-seen; msg != "" {
				t.Fatal(msg)
			}
			if string(out) != "answer:payload" {
				t.Fatalf("answer %q", out)
			}
		})
	}
}
