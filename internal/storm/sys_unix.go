//go:build unix

package main

import (
	"os"
	"syscall"
)

// raiseFileLimit lifts the soft RLIMIT_NOFILE to the hard one, which is
// as far as an unprivileged process may go, and returns the soft limit in
// force. Both sides of the storm hold a socket per client.
func raiseFileLimit() (uint64, error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, err
	}
	var err error
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		err = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
	}
	if gerr := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); gerr != nil {
		return 0, gerr
	}
	return rl.Cur, err
}

// killSignal and stopSignal are how a server is restarted: abruptly, the
// way a crash or an OOM kill ends it, or gracefully, as an orchestrator
// asks `wsauth serve` to stop.
var (
	killSignal os.Signal = syscall.SIGKILL
	stopSignal os.Signal = syscall.SIGTERM
)
