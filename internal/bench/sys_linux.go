package main

import "syscall"

// childAttr makes the kernel kill a child whose parent died without
// cleaning up (a crash, SIGKILL); the child's watch on its stdin covers
// the rest.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
