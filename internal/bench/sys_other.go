//go:build !unix

package main

import (
	"errors"
	"time"
)

var errUnsupported = errors.New("not supported on this system")

func raiseFileLimit(uint64) (soft, hard uint64, err error) { return 0, 0, errUnsupported }

func fileLimit() (soft, hard uint64) { return 0, 0 }

func cpuTime() time.Duration { return 0 }
