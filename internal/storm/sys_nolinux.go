//go:build !linux

package main

import "syscall"

// childAttr: without Pdeathsig, a child notices its parent's death by the
// end of its stdin.
func childAttr() *syscall.SysProcAttr { return nil }
