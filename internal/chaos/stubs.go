package main

import (
	"context"
	"errors"
	"io"
)

// errNotBuilt is what the subcommands not written yet return.
var errNotBuilt = errors.New("not built yet: see docs/faults.md")

func runFlood(context.Context, []string, io.Writer, io.Writer) error { return errNotBuilt }

func runSoak(context.Context, []string, io.Writer, io.Writer) error { return errNotBuilt }
