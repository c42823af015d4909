package main

import "syscall"

// childAttr makes the kernel kill a server child whose parent died without
// cleaning up; the child's watch on its stdin covers the rest.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
