//go:build race

package wire

// poisonBuffer overwrites a released buffer in race-detector builds (the
// tests), so that a use after Release reads garbage and fails loudly
// instead of reading the next frame's bytes by chance.
func poisonBuffer(b []byte) {
	for i := range b {
		b[i] = 0xdd
	}
}
