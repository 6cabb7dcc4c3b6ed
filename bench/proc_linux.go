package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"syscall"
)

// raiseFileLimit raises the soft limit on open files to the hard limit,
// and fails if that still allows fewer than need.
func raiseFileLimit(need int) error {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return fmt.Errorf("get open-file limit: %w", err)
	}
	if l.Max < uint64(need) {
		// Raising the hard limit takes privilege; without it, the error
		// below says what to do.
		raised := syscall.Rlimit{Cur: uint64(need), Max: uint64(need)}
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised) == nil {
			l = raised
		}
	}
	if l.Cur < l.Max {
		l.Cur = l.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
			return fmt.Errorf("raise open-file limit: %w", err)
		}
	}
	if l.Cur < uint64(need) {
		return fmt.Errorf("need %d open files but the hard limit is %d: raise it (ulimit -Hn) or use fewer idle channels", need, l.Cur)
	}
	return nil
}

// residentBytes returns the process's resident set size (VmRSS).
func residentBytes() (uint64, error) {
	kb, err := processRSS(os.Getpid())
	return kb * 1024, err
}

// processRSS returns a process's resident set in KiB (VmRSS).
func processRSS(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if rest, ok := bytes.CutPrefix(sc.Bytes(), []byte("VmRSS:")); ok {
			return strconv.ParseUint(string(bytes.TrimSuffix(bytes.TrimSpace(rest), []byte(" kB"))), 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// fileLimit returns the soft limit on open files.
func fileLimit() (uint64, error) {
	var l syscall.Rlimit
	err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l)
	return l.Cur, err
}
