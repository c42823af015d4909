package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"
)

// runMatrix is the matrix subcommand.
func runMatrix(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("matrix", flag.ContinueOnError)
	fs.SetOutput(stderr)
	quick := fs.Bool("quick", false, "a short run: 500 messages over 2s per cell (explicit flags win)")
	messages := fs.Int("messages", 10000, "messages per cell, all senders together")
	senders := fs.Int("senders", 8, "concurrent senders per cell")
	duration := fs.Duration("cell-duration", 8*time.Second, "how long each cell's traffic is spread over")
	parallel := fs.Int("parallel", 3, "cells run at once (each has its own server, proxies and client)")
	asJSON := fs.Bool("json", false, "print JSON instead of the lines")
	only := fs.String("phases", "", "comma-separated phases to run (default all)")
	onlyFaults := fs.String("faults", "", "comma-separated faults to run (default all)")
	modes := fs.String("modes", "send,confirmed", "comma-separated modes: send, confirmed")
	if err := fs.Parse(args); err != nil {
		return err
	}
	quickDefaults(fs, *quick, map[string]func(){
		"messages":      func() { *messages = 500 },
		"cell-duration": func() { *duration = 2 * time.Second },
	})
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *messages < 1 || *senders < 1 || *senders > *messages || *parallel < 1 || *duration <= 0 {
		return errors.New("--messages, --senders, --parallel and --cell-duration must be positive, senders at most messages")
	}
	cells, err := selectCells(*only, *onlyFaults, *modes)
	if err != nil {
		return err
	}
	for i := range cells {
		cells[i].messages, cells[i].senders, cells[i].duration = *messages, *senders, *duration
	}

	start := time.Now()
	results := make([]cellResult, len(cells))
	done := make([]chan struct{}, len(cells))
	for i := range done {
		done[i] = make(chan struct{})
	}
	work := make(chan int)
	var wg sync.WaitGroup
	for range *parallel {
		wg.Go(func() {
			for i := range work {
				results[i] = runCell(ctx, cells[i])
				close(done[i])
			}
		})
	}
	go func() {
		defer close(work)
		for i := range cells {
			select {
			case work <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	// Lines come out in the matrix's order as the cells finish.
	failed := 0
	for i := range cells {
		select {
		case <-done[i]:
		case <-ctx.Done():
			wg.Wait()
			return ctx.Err()
		}
		r := results[i]
		if len(r.Failures) > 0 || r.Err != "" {
			failed++
		}
		if !*asJSON {
			fmt.Fprintln(stdout, r.line())
		} else {
			fmt.Fprintf(stderr, "%s\n", r.line())
		}
	}
	wg.Wait()
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(map[string]any{"cells": results, "failed": failed, "seconds": time.Since(start).Seconds()}); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(stdout, "%d cells, %d failed, %.0fs\n", len(cells), failed, time.Since(start).Seconds())
	}
	if failed > 0 {
		return errFailed
	}
	return nil
}

// selectCells lists the cells the filters leave, in the matrix's order.
func selectCells(phaseList, faultList, modeList string) ([]cellConfig, error) {
	split := func(s string) []string {
		var out []string
		for v := range strings.SplitSeq(s, ",") {
			if v = strings.TrimSpace(v); v != "" {
				out = append(out, v)
			}
		}
		return out
	}
	wantPhases, wantFaults, wantModes := split(phaseList), split(faultList), split(modeList)
	var names []string
	for _, ph := range phases() {
		names = append(names, ph.name)
	}
	for _, p := range wantPhases {
		if !slices.Contains(names, p) {
			return nil, fmt.Errorf("unknown phase %q (have %s)", p, strings.Join(names, ","))
		}
	}
	for _, f := range wantFaults {
		if _, ok := faultNamed(f); !ok {
			return nil, fmt.Errorf("unknown fault %q", f)
		}
	}
	var confirmed []bool
	for _, m := range wantModes {
		switch m {
		case "send":
			confirmed = append(confirmed, false)
		case "confirmed":
			confirmed = append(confirmed, true)
		default:
			return nil, fmt.Errorf("unknown mode %q (have send,confirmed)", m)
		}
	}
	var cells []cellConfig
	for _, ph := range phases() {
		if len(wantPhases) > 0 && !slices.Contains(wantPhases, ph.name) {
			continue
		}
		for _, f := range faults {
			if len(wantFaults) > 0 && !slices.Contains(wantFaults, f.name) {
				continue
			}
			for _, conf := range confirmed {
				cells = append(cells, cellConfig{phase: ph, fault: f, confirmed: conf})
			}
		}
	}
	if len(cells) == 0 {
		return nil, errors.New("no cell selected")
	}
	return cells, nil
}
