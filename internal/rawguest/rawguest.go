// Package rawguest assembles, instruction by instruction, the smallest
// wasm guest that connects to its instance's channel: a WASI command with
// no language runtime, which answers the handshake through the runtime's
// spear_v1.auth_request host function (docs/wasm.md, "Host functions").
// It is what bench's wasmstart.agent starts, measuring the agent's own
// cost of a wasm start, and what runtime/wasm tests the host function
// with. No WAT assembler or runtime-free toolchain is needed to build it.
package rawguest

// Connect is the guest. Its _start reads the AUTH_CHALLENGE frame from
// stdin (header, then the payload the header announces), has
// spear_v1.auth_request write the AUTH_REQUEST that answers it, writes
// that to stdout, and then reads stdin until EOF, discarding what it
// reads: it stays connected, but answers no request, not even the
// terminate signal (so Stop ends it after the instance's stop grace). It
// traps on any error, and on a challenge over 4,080 bytes. 1 page of
// memory, about 300 bytes of code.
var Connect = assemble(outBuf)

// BadOutput is Connect with a wrong use of the host function: the buffer
// it passes for the AUTH_REQUEST lies beyond its memory.
var BadOutput = assemble(1 << 20)

// The guest's memory: one 64 KiB page.
const (
	iov    = 0    // the one iovec of fd_read and fd_write: {buf, len}
	count  = 8    // where fd_read and fd_write store the bytes they moved
	inBuf  = 16   // frames read from stdin
	inCap  = 4096 //
	outBuf = 8192 // the AUTH_REQUEST frame
	outCap = 4096 //
	header = 16   // wire.HeaderSize
)

// The functions, by index: imports first.
const (
	fnFdRead      = 0 // wasi_snapshot_preview1.fd_read(fd, iovs, iovs_len, nread) -> errno
	fnFdWrite     = 1 // wasi_snapshot_preview1.fd_write(fd, iovs, iovs_len, nwritten) -> errno
	fnAuthRequest = 2 // spear_v1.auth_request(challenge, challenge_len, out, out_cap) -> len
	fnReadFull    = 3 // readFull(ptr, n): fd_read from stdin until n bytes are at ptr
	fnStart       = 4 // _start
)

// The types, by index.
const (
	typeHost     = 0 // (i32, i32, i32, i32) -> i32: all three imports
	typeReadFull = 1 // (i32, i32) -> ()
	typeStart    = 2 // () -> ()
)

// assemble returns the module, with out as the address the AUTH_REQUEST
// is to be written at.
func assemble(out int32) []byte {
	i32 := byte(0x7f)
	types := vec(
		append([]byte{0x60}, append(vec([]byte{i32}, []byte{i32}, []byte{i32}, []byte{i32}), vec([]byte{i32})...)...),
		append([]byte{0x60}, append(vec([]byte{i32}, []byte{i32}), vec()...)...),
		append([]byte{0x60}, append(vec(), vec()...)...),
	)
	imports := vec(
		importFunc("wasi_snapshot_preview1", "fd_read", typeHost),
		importFunc("wasi_snapshot_preview1", "fd_write", typeHost),
		importFunc("spear_v1", "auth_request", typeHost),
	)
	funcs := vec([]byte{typeReadFull}, []byte{typeStart})
	memory := vec([]byte{0x00, 0x01}) // min 1 page, no max
	exports := vec(
		append(name("memory"), 0x02, 0x00),
		append(name("_start"), 0x00, fnStart),
	)
	code := vec(body(1, readFull()), body(2, start(out)))

	m := []byte("\x00asm\x01\x00\x00\x00")
	m = append(m, section(1, types)...)
	m = append(m, section(2, imports)...)
	m = append(m, section(3, funcs)...)
	m = append(m, section(5, memory)...)
	m = append(m, section(7, exports)...)
	return append(m, section(10, code)...)
}

// readFull(ptr, n), local 2 the count of one read: fd_read from stdin
// until n bytes are at ptr; trap on an error or EOF.
func readFull() []byte {
	const ptr, n, got = 0, 1, 2
	var c asm
	c.block().loop()
	c.get(n).op(opI32Eqz).brIf(1)
	c.setIOV(func(c *asm) { c.get(ptr) }, func(c *asm) { c.get(n) })
	c.callIO(fnFdRead, 0).trapIfNonZero()
	c.i32(count).load(0).tee(got).op(opI32Eqz).trapIfNonZero()
	c.get(ptr).get(got).op(opI32Add).set(ptr)
	c.get(n).get(got).op(opI32Sub).set(n)
	c.br(0).end().end()
	return c.end().b
}

// start is _start, locals 0 the challenge's payload length and 1 the
// AUTH_REQUEST's length.
func start(out int32) []byte {
	const size, reqLen = 0, 1
	var c asm
	// The challenge: its header, then its payload, whose length is the
	// header's first four bytes, big-endian.
	c.i32(inBuf).i32(header).call(fnReadFull)
	for k, shift := range []int32{24, 16, 8, 0} {
		c.i32(0).load8u(uint32(inBuf + k))
		if shift != 0 {
			c.i32(shift).op(opI32Shl)
		}
		if k > 0 {
			c.op(opI32Or)
		}
	}
	c.tee(size).i32(inCap - header).op(opI32GtU).trapIfNonZero()
	c.i32(inBuf + header).get(size).call(fnReadFull)
	// The answer, written whole.
	c.i32(inBuf).get(size).i32(header).op(opI32Add).i32(out).i32(outCap).call(fnAuthRequest).set(reqLen)
	c.setIOV(func(c *asm) { c.i32(out) }, func(c *asm) { c.get(reqLen) })
	c.callIO(fnFdWrite, 1).trapIfNonZero()
	c.i32(count).load(0).get(reqLen).op(opI32Ne).trapIfNonZero()
	// Connected: read until EOF (or an error), then return, exiting 0.
	c.setIOV(func(c *asm) { c.i32(inBuf) }, func(c *asm) { c.i32(inCap) })
	c.block().loop()
	c.callIO(fnFdRead, 0).brIf(1)
	c.i32(count).load(0).op(opI32Eqz).brIf(1)
	c.br(0).end().end()
	return c.end().b
}

// Opcodes of the WebAssembly 1.0 binary format.
const (
	opUnreachable = 0x00
	opBlock       = 0x02
	opLoop        = 0x03
	opIf          = 0x04
	opEnd         = 0x0b
	opBr          = 0x0c
	opBrIf        = 0x0d
	opCall        = 0x10
	opLocalGet    = 0x20
	opLocalSet    = 0x21
	opLocalTee    = 0x22
	opI32Load     = 0x28
	opI32Load8U   = 0x2d
	opI32Store    = 0x36
	opI32Const    = 0x41
	opI32Eqz      = 0x45
	opI32Ne       = 0x47
	opI32GtU      = 0x4b
	opI32Add      = 0x6a
	opI32Sub      = 0x6b
	opI32Or       = 0x72
	opI32Shl      = 0x74
	blockEmpty    = 0x40
)

// asm appends instructions to a function body.
type asm struct{ b []byte }

func (c *asm) op(op byte) *asm         { c.b = append(c.b, op); return c }
func (c *asm) i32(v int32) *asm        { c.b = appendSLEB(append(c.b, opI32Const), v); return c }
func (c *asm) get(local uint32) *asm   { c.b = appendULEB(append(c.b, opLocalGet), local); return c }
func (c *asm) set(local uint32) *asm   { c.b = appendULEB(append(c.b, opLocalSet), local); return c }
func (c *asm) tee(local uint32) *asm   { c.b = appendULEB(append(c.b, opLocalTee), local); return c }
func (c *asm) call(fn uint32) *asm     { c.b = appendULEB(append(c.b, opCall), fn); return c }
func (c *asm) br(depth uint32) *asm    { c.b = appendULEB(append(c.b, opBr), depth); return c }
func (c *asm) brIf(depth uint32) *asm  { c.b = appendULEB(append(c.b, opBrIf), depth); return c }
func (c *asm) block() *asm             { c.b = append(c.b, opBlock, blockEmpty); return c }
func (c *asm) loop() *asm              { c.b = append(c.b, opLoop, blockEmpty); return c }
func (c *asm) end() *asm               { return c.op(opEnd) }
func (c *asm) load(offset uint32) *asm { return c.memarg(opI32Load, 2, offset) }

// load8u is i32.load8_u at offset.
func (c *asm) load8u(offset uint32) *asm { return c.memarg(opI32Load8U, 0, offset) }

// store is i32.store at offset.
func (c *asm) store(offset uint32) *asm { return c.memarg(opI32Store, 2, offset) }

func (c *asm) memarg(op byte, align, offset uint32) *asm {
	c.b = appendULEB(appendULEB(append(c.b, op), align), offset)
	return c
}

// trapIfNonZero traps when the i32 on the stack is not zero.
func (c *asm) trapIfNonZero() *asm {
	c.b = append(c.b, opIf, blockEmpty, opUnreachable, opEnd)
	return c
}

// setIOV stores the iovec {buf, len}, each pushed by its function.
func (c *asm) setIOV(buf, n func(*asm)) {
	c.i32(0)
	buf(c)
	c.store(iov)
	c.i32(0)
	n(c)
	c.store(iov + 4)
}

// callIO calls fd_read or fd_write on fd with the one iovec, the count
// stored at count; the errno is left on the stack.
func (c *asm) callIO(fn uint32, fd int32) *asm {
	return c.i32(fd).i32(iov).i32(1).i32(count).call(fn)
}

// body is a function body with locals i32 locals.
func body(locals uint32, code []byte) []byte {
	b := vec(append(appendULEB(nil, locals), 0x7f))
	b = append(b, code...)
	return append(appendULEB(nil, uint32(len(b))), b...)
}

func importFunc(module, field string, typ byte) []byte {
	return append(append(name(module), name(field)...), 0x00, typ)
}

func section(id byte, content []byte) []byte {
	return append(appendULEB([]byte{id}, uint32(len(content))), content...)
}

func vec(items ...[]byte) []byte {
	b := appendULEB(nil, uint32(len(items)))
	for _, it := range items {
		b = append(b, it...)
	}
	return b
}

func name(s string) []byte { return append(appendULEB(nil, uint32(len(s))), s...) }

func appendULEB(b []byte, v uint32) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

func appendSLEB(b []byte, v int32) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v == 0 && c&0x40 == 0 || v == -1 && c&0x40 != 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}
