//go:build unix

package main

import (
	"errors"
	"syscall"
	"time"
)

// raiseFileLimit lifts RLIMIT_NOFILE to want, or as far as the process may:
// the soft limit up to the hard one, and the hard one too when the process
// has the privilege (CAP_SYS_RESOURCE). It returns the limits in force.
func raiseFileLimit(want uint64) (soft, hard uint64, err error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, 0, err
	}
	if want > rl.Max {
		up := syscall.Rlimit{Cur: want, Max: want}
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &up) == nil {
			return want, want, nil
		}
		// Unprivileged: the hard limit is as far as it goes.
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		err = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
	}
	if gerr := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); gerr != nil {
		return 0, 0, errors.Join(err, gerr)
	}
	return rl.Cur, rl.Max, err
}

// fileLimit returns RLIMIT_NOFILE without changing it.
func fileLimit() (soft, hard uint64) {
	var rl syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl) != nil {
		return 0, 0
	}
	return rl.Cur, rl.Max
}

// cpuTime is the user plus system CPU time the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
