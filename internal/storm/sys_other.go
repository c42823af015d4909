//go:build !unix

package main

import "os"

func raiseFileLimit() (uint64, error) { return 0, nil }

// Without SIGTERM a graceful stop is the end of the child's stdin, which
// the server child also obeys.
var (
	killSignal = os.Kill
	stopSignal os.Signal
)
