package process_test

import (
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/spear-go/spear"
)

// BenchmarkStartToReady measures one instance's whole life through the
// runtime: spawn, connect, authenticate, first request answered, stop
// (terminate signal, exit, reap). Compare it with BenchmarkBareSpawn, the
// same binary spawned and connecting back without any of the runtime.
func BenchmarkStartToReady(b *testing.B) {
	e := newEnv(b)
	spec := childSpec("echo")
	b.ReportAllocs()
	for b.Loop() {
		inst, err := spec.start(testCtx(b), e.rt, newID())
		if err != nil {
			b.Fatal(err)
		}
		echo(b, inst, "ready")
		if err := e.rt.Stop(testCtx(b), inst); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBareSpawn is the floor under BenchmarkStartToReady: the same
// test binary started with os/exec, connecting to a unix socket and
// writing one byte, then waited for.
func BenchmarkBareSpawn(b *testing.B) {
	path := filepath.Join(b.TempDir(), "bare.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	env := append(os.Environ(), childEnv+"=dial", spear.EnvAddress+"="+path)
	b.ReportAllocs()
	for b.Loop() {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = env
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		conn, err := ln.Accept()
		if err != nil {
			b.Fatal(err)
		}
		_, err = io.ReadFull(conn, make([]byte, 1))
		conn.Close()
		if err != nil {
			b.Fatal(err)
		}
		if err := cmd.Wait(); err != nil {
			b.Fatal(err)
		}
	}
}
