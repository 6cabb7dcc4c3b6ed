package buildinfo

import (
	"runtime"
	"testing"
)

func TestRead(t *testing.T) {
	got := Read("")
	if got.Version == "" || got.Revision == "" || got.GoVersion != runtime.Version() {
		t.Fatalf("Read(\"\") = %+v, want every field set and the running Go version", got)
	}
	if v := Read("v9.8.7").Version; v != "v9.8.7" {
		t.Fatalf("Read(v9.8.7).Version = %q, want the given version to win", v)
	}
}
