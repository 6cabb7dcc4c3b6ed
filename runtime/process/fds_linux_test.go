package process_test

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/spear-go/spear/channel"
)

// openFiles lists what the process's descriptors refer to, one per line.
func openFiles() ([]byte, error) {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	for _, e := range ents {
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil {
			fmt.Fprintf(&b, "%s %s\n", e.Name(), target)
		}
	}
	return []byte(b.String()), nil
}

// A descriptor the agent inherited without close-on-exec (from a careless
// parent, a shell's redirection, a supervisor) does not reach instances:
// they get their standard streams and what the runtime hands them.
func TestChildGetsNoInheritedDescriptors(t *testing.T) {
	var p [2]int
	if err := unix.Pipe2(p[:], 0); err != nil { // no O_CLOEXEC, as if inherited
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(p[0]); unix.Close(p[1]) })
	target, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", p[1]))
	if err != nil {
		t.Fatal(err)
	}

	e := newEnv(t)
	inst := e.start(t, childSpec("echo"))
	out, err := channel.Execute(testCtx(t), inst.Channel(), channel.Invocation{Method: "fds"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), target) {
		t.Errorf("the agent's descriptor %s (%s) reached the instance; its descriptors:\n%s", target, fmt.Sprint(p), out)
	}
}
