//go:build !race

package wire

// poisonBuffer does nothing outside race-detector builds; see
// poison_race.go.
func poisonBuffer([]byte) {}
