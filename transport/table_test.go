package transport_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/spear-go/spear"
	"github.com/spear-go/spear/transport"
)

// fake returns a transport named name whose Dial reports name in its
// error, so a test can tell which registration answered.
func fake(name, tag string) transport.Transport {
	return transport.Transport{
		Name:   name,
		Listen: func(transport.ListenConfig) (transport.Listener, error) { return nil, errors.New(tag) },
		Dial: func(context.Context, string, transport.DialConfig) (transport.Conn, error) {
			return nil, errors.New(tag)
		},
	}
}

func TestTable(t *testing.T) {
	// This package links no transport: the table holds what tests add.
	if names := transport.Names(); len(names) != 0 {
		t.Fatalf("table starts with %v", names)
	}
	_, err := transport.Dial(context.Background(), "zz", "addr", transport.DialConfig{})
	if !errors.Is(err, spear.ErrUnsupportedTransport) || !strings.Contains(err.Error(), "has none") {
		t.Fatalf("dial an unknown transport: %v", err)
	}

	unregZ := transport.Register(fake("zz", "first"))
	unregA := transport.Register(fake("aa", "a"))
	defer unregA()
	if got := transport.Names(); !slices.Equal(got, []string{"aa", "zz"}) {
		t.Fatalf("Names() = %v", got)
	}
	if got := transport.Choices(); got != "aa or zz" {
		t.Fatalf("Choices() = %q", got)
	}
	if _, err := transport.Dial(context.Background(), "zz", "addr", transport.DialConfig{}); err == nil || err.Error() != "first" {
		t.Fatalf("Dial went to %v, want the registered transport", err)
	}

	// A later registration replaces an earlier one; the earlier one's
	// unregister then leaves it alone.
	unregZ2 := transport.Register(fake("zz", "second"))
	unregZ()
	if _, err := transport.Dial(context.Background(), "zz", "addr", transport.DialConfig{}); err == nil || err.Error() != "second" {
		t.Fatalf("after replacing: Dial went to %v", err)
	}
	unregZ2()
	if _, err := transport.Lookup("zz"); !errors.Is(err, spear.ErrUnsupportedTransport) ||
		!strings.Contains(err.Error(), `"zz" is not linked into this program, which has aa`) {
		t.Fatalf("after unregistering: %v", err)
	}
}

func TestRegisterRefusesIncompleteTransports(t *testing.T) {
	for name, tr := range map[string]transport.Transport{
		"no name":   {Listen: fake("x", "").Listen, Dial: fake("x", "").Dial},
		"no listen": {Name: "x", Dial: fake("x", "").Dial},
		"no dial":   {Name: "x", Listen: fake("x", "").Listen},
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("Register did not panic")
				}
			}()
			transport.Register(tr)
		})
	}
}
