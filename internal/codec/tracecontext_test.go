package codec

import (
	"encoding/hex"
	"os"
	"strings"
	"testing"
)

// TestTraceContextVector checks the metadata example of docs/protocol.md
// ("Metadata and trace context") against the encoder and the decoder, and
// that the document still shows it.
func TestTraceContextVector(t *testing.T) {
	const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	const want = "22460a0b7472616365706172656e74123730302d34626639326633353737623334646136" +
		"613363653932396430653065343733362d303066303637616130626139303262372d3031"
	b := AppendExecuteRequest(nil, &ExecuteRequest{Metadata: map[string]string{"traceparent": traceparent}})
	if got := hex.EncodeToString(b); got != want {
		t.Fatalf("encoded %s\nwant    %s", got, want)
	}
	r, err := DecodeExecuteRequest(b)
	if err != nil || len(r.Metadata) != 1 || r.Metadata["traceparent"] != traceparent {
		t.Fatalf("decoded %+v, %v", r, err)
	}
	doc, err := os.ReadFile("../../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(strings.Fields(string(doc)), ""), want) {
		t.Error("docs/protocol.md no longer shows the trace context example")
	}
}
