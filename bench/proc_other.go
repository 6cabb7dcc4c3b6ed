//go:build !linux

package bench

import "errors"

var errNotLinux = errors.New("bench: the memory comparison reads /proc and runs on Linux only")

func raiseFileLimit(int) error { return errNotLinux }

func residentBytes() (uint64, error) { return 0, errNotLinux }
func processRSS(int) (uint64, error) { return 0, errNotLinux }
func fileLimit() (uint64, error)     { return 0, errNotLinux }
