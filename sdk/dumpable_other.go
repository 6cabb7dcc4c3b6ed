//go:build !linux

package sdk

// protectSecret does nothing here: only Linux has PR_SET_DUMPABLE.
func protectSecret() error { return nil }
