package spear_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/spear-go/spear"
)

func TestRuntimeTypeRoundTrip(t *testing.T) {
	for _, rt := range spear.RuntimeTypes() {
		got, err := spear.ParseRuntimeType(rt.String())
		if err != nil || got != rt {
			t.Errorf("ParseRuntimeType(%q) = %v, %v", rt, got, err)
		}
		b, err := rt.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var back spear.RuntimeType
		if err := back.UnmarshalText(b); err != nil || back != rt {
			t.Errorf("text round trip of %v gave %v, %v", rt, back, err)
		}
	}
	if got := []string{spear.Process.String(), spear.Kubernetes.String(), spear.Wasm.String()}; strings.Join(got, ",") != "process,kubernetes,wasm" {
		t.Errorf("names %v", got)
	}
	for _, bad := range []string{"", "Process", "docker", "wasm "} {
		if _, err := spear.ParseRuntimeType(bad); !errors.Is(err, spear.ErrUnsupportedRuntime) {
			t.Errorf("ParseRuntimeType(%q) err %v, want ErrUnsupportedRuntime", bad, err)
		}
	}
	if _, err := spear.RuntimeType(0).MarshalText(); !errors.Is(err, spear.ErrUnsupportedRuntime) {
		t.Errorf("zero RuntimeType marshalled: %v", err)
	}
}

func TestInstanceIDString(t *testing.T) {
	tests := []struct {
		id   spear.InstanceID
		want string
	}{
		{spear.InstanceID{Runtime: spear.Process, Name: "worker-001"}, "process:worker-001"},
		{spear.InstanceID{Runtime: spear.Kubernetes, Namespace: "team-a", Name: "fn.v2"}, "team-a:kubernetes:fn.v2"},
	}
	for _, tt := range tests {
		if got := tt.id.String(); got != tt.want {
			t.Errorf("%#v.String() = %q, want %q", tt.id, got, tt.want)
		}
		back, err := spear.ParseInstanceID(tt.want)
		if err != nil || back != tt.id {
			t.Errorf("ParseInstanceID(%q) = %#v, %v", tt.want, back, err)
		}
	}
}

func TestInstanceIDIsMapKey(t *testing.T) {
	a := spear.InstanceID{Runtime: spear.Process, Name: "a"}
	m := map[spear.InstanceID]int{a: 1, {Runtime: spear.Wasm, Name: "a"}: 2, {Runtime: spear.Process, Namespace: "n", Name: "a"}: 3}
	if len(m) != 3 || m[spear.InstanceID{Runtime: spear.Process, Name: "a"}] != 1 {
		t.Errorf("ids that differ in runtime or namespace collide: %v", m)
	}
}

func TestInstanceIDValidate(t *testing.T) {
	long := strings.Repeat("a", spear.MaxNameLen+1)
	bad := []struct {
		name string
		id   spear.InstanceID
	}{
		{"zero", spear.InstanceID{}},
		{"no runtime", spear.InstanceID{Name: "a"}},
		{"empty name", spear.InstanceID{Runtime: spear.Process}},
		{"too long", spear.InstanceID{Runtime: spear.Process, Name: long}},
		{"slash", spear.InstanceID{Runtime: spear.Process, Name: "../etc"}},
		{"colon", spear.InstanceID{Runtime: spear.Process, Name: "a:b"}},
		{"upper case", spear.InstanceID{Runtime: spear.Process, Name: "Worker"}},
		{"leading dash", spear.InstanceID{Runtime: spear.Process, Name: "-a"}},
		{"trailing dot", spear.InstanceID{Runtime: spear.Process, Name: "a."}},
		{"space", spear.InstanceID{Runtime: spear.Process, Name: "a b"}},
		{"nul", spear.InstanceID{Runtime: spear.Process, Name: "a\x00b"}},
		{"bad namespace", spear.InstanceID{Runtime: spear.Process, Namespace: "A_B", Name: "a"}},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.id.Validate(); !errors.Is(err, spear.ErrInvalidInstanceID) {
				t.Errorf("Validate() = %v, want ErrInvalidInstanceID", err)
			}
		})
	}
	ok := []spear.InstanceID{
		{Runtime: spear.Wasm, Name: "a"},
		{Runtime: spear.Process, Name: strings.Repeat("z", spear.MaxNameLen)},
		{Runtime: spear.Kubernetes, Namespace: "default", Name: "fn-1.2"},
	}
	for _, id := range ok {
		if err := id.Validate(); err != nil {
			t.Errorf("%v: %v", id, err)
		}
	}
}

func TestParseInstanceIDErrors(t *testing.T) {
	for _, s := range []string{"", "worker", "a:b:c:d", "docker:x", "process:", ":process:x", "process:UPPER"} {
		if _, err := spear.ParseInstanceID(s); !errors.Is(err, spear.ErrInvalidInstanceID) {
			t.Errorf("ParseInstanceID(%q) err %v, want ErrInvalidInstanceID", s, err)
		}
	}
	// The runtime error keeps its own category too.
	if _, err := spear.ParseInstanceID("docker:x"); !errors.Is(err, spear.ErrUnsupportedRuntime) {
		t.Errorf("unknown runtime: %v", err)
	}
}

func FuzzParseInstanceID(f *testing.F) {
	for _, s := range []string{"process:a", "ns:wasm:b-1", "kubernetes:x.y", "a:b", "::", "process:a\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := spear.ParseInstanceID(s)
		if err != nil {
			return
		}
		if id.Validate() != nil {
			t.Fatalf("%q parsed to an invalid id %#v", s, id)
		}
		if id.String() != s {
			t.Fatalf("%q parsed to %#v, which prints as %q", s, id, id.String())
		}
	})
}

// toyType is registered once per test binary, as a runtime package does.
var toyType = spear.RegisterRuntimeType("toy")

func TestRegisterRuntimeType(t *testing.T) {
	if !toyType.Valid() || toyType.String() != "toy" || toyType <= spear.Wasm {
		t.Fatalf("registered type = %d %q (valid %v)", toyType, toyType, toyType.Valid())
	}
	if got, err := spear.ParseRuntimeType("toy"); err != nil || got != toyType {
		t.Errorf(`ParseRuntimeType("toy") = %v, %v`, got, err)
	}
	if !slices.Contains(spear.RuntimeTypes(), toyType) || spear.RuntimeTypes()[0] != spear.Process {
		t.Errorf("RuntimeTypes() = %v", spear.RuntimeTypes())
	}
	id, err := spear.ParseInstanceID("tenant:toy:fn-1")
	if err != nil || id != (spear.InstanceID{Runtime: toyType, Namespace: "tenant", Name: "fn-1"}) {
		t.Errorf("ParseInstanceID = %#v, %v", id, err)
	}
	_, err = spear.ParseRuntimeType("docker")
	if err == nil || !strings.Contains(err.Error(), "want process, kubernetes, wasm") || !strings.Contains(err.Error(), "toy") {
		t.Errorf("unknown type: %v, want the registered names listed", err)
	}
	if spear.RuntimeType(len(spear.RuntimeTypes()) + 1).Valid() {
		t.Errorf("an unregistered value is valid")
	}
	for _, bad := range []string{"toy", "process", "", "Bad", "a:b"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("RegisterRuntimeType(%q) did not panic", bad)
				}
			}()
			spear.RegisterRuntimeType(bad)
		}()
	}
}

// registerConcurrently registers its types once per test binary, so that
// -count does not exhaust the 255 types.
var registerConcurrently sync.Once

// TestRuntimeTypesConcurrent reads the table while types are registered;
// the race detector checks it.
func TestRuntimeTypesConcurrent(t *testing.T) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		registerConcurrently.Do(func() {
			for i := range 20 {
				spear.RegisterRuntimeType(fmt.Sprintf("concurrent-%d", i))
			}
		})
	}()
	for {
		select {
		case <-done:
			return
		default:
			for _, rt := range spear.RuntimeTypes() {
				if !rt.Valid() || rt.String() == "" {
					t.Fatalf("type %d invalid while registering", rt)
				}
			}
		}
	}
}
