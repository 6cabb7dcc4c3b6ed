package spear_test

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/spear-go/spear"
)

func TestCategoryErrors(t *testing.T) {
	tests := []struct {
		err  error
		is   []error
		isnt []error
	}{
		{spear.ErrHeartbeatTimeout, []error{spear.ErrTimeout, spear.ErrConnectionFailed}, []error{spear.ErrChannelClosed}},
		{spear.ErrPeerGone, []error{spear.ErrConnectionFailed}, []error{spear.ErrTimeout}},
		{spear.ErrReplaced, []error{spear.ErrConnectionFailed}, []error{spear.ErrAuthFailed}},
		{spear.ErrInvalidConfig, []error{spear.ErrConfig}, nil},
		{&spear.RemoteError{Code: spear.CodeDeadlineExceeded}, []error{spear.ErrTimeout}, []error{spear.ErrAuthFailed}},
		{&spear.RemoteError{Code: spear.CodeTooLarge}, []error{spear.ErrInvalidMessage}, nil},
		{&spear.RemoteError{Code: spear.CodeInternal}, nil, []error{spear.ErrTimeout, spear.ErrInvalidMessage}},
	}
	for _, tt := range tests {
		wrapped := fmt.Errorf("context: %w", tt.err)
		for _, target := range tt.is {
			if !errors.Is(wrapped, target) {
				t.Errorf("%v does not match %v", tt.err, target)
			}
		}
		for _, target := range tt.isnt {
			if errors.Is(wrapped, target) {
				t.Errorf("%v matches %v", tt.err, target)
			}
		}
	}
}

func TestInstanceErr(t *testing.T) {
	id := spear.InstanceID{Runtime: spear.Process, Name: "w1"}
	if spear.InstanceErr(id, "x", nil) != nil {
		t.Fatal("nil error wrapped")
	}
	err := spear.InstanceErr(id, "request", spear.ErrTimeout)
	var ie *spear.InstanceError
	if !errors.As(err, &ie) || ie.ID != id || ie.Op != "request" || !errors.Is(err, spear.ErrTimeout) {
		t.Fatalf("got %#v", err)
	}
	if !strings.Contains(err.Error(), "process:w1") {
		t.Errorf("%q does not name the instance", err)
	}
	if again := spear.InstanceErr(id, "outer", err); again != err {
		t.Errorf("wrapping twice for the same instance gave %v", again)
	}
	other := spear.InstanceID{Runtime: spear.Wasm, Name: "w2"}
	if e := spear.InstanceErr(other, "x", err); e == err {
		t.Error("an error about another instance was not wrapped")
	}
}

func TestCodeOf(t *testing.T) {
	tests := []struct {
		err  error
		want spear.Code
	}{
		{&spear.RemoteError{Code: spear.CodeNotFound}, spear.CodeNotFound},
		{fmt.Errorf("x: %w", spear.ErrHeartbeatTimeout), spear.CodeDeadlineExceeded},
		{spear.ErrAuthFailed, spear.CodeAuthFailed},
		{spear.ErrInvalidMessage, spear.CodeInvalidMessage},
		{spear.ErrNotConnected, spear.CodeUnavailable},
		{errors.New("boom"), spear.CodeInternal},
	}
	for _, tt := range tests {
		if got := spear.CodeOf(tt.err); got != tt.want {
			t.Errorf("CodeOf(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
	if spear.Code(99).String() != "code(99)" || spear.CodeTooLarge.String() != "too_large" {
		t.Error("Code names")
	}
}

func TestSecretNeverPrints(t *testing.T) {
	s := spear.Secret("hunter2-very-secret")
	var b strings.Builder
	log := slog.New(slog.NewTextHandler(&b, nil))
	log.Info("x", "secret", s)
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%v %s %#v", s, s, s), b.String()} {
		if strings.Contains(out, "hunter2") {
			t.Errorf("secret leaked: %q", out)
		}
	}
}
