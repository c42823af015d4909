package main

import (
	"context"
	"errors"
	"io"
)

func runFlood(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("not yet")
}
func runSoak(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return errors.New("not yet")
}
