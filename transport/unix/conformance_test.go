package unix_test

import (
	"testing"

	"github.com/spear-go/spear/transport/transporttest"
)

func TestConformance(t *testing.T) { transporttest.Run(t, "unix") }
