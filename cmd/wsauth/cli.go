package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"
)

// Exit codes, which scripts rely on.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
	exitAuth    = 3
)

// stdio is what a command may touch of the process, so that commands can be
// run in-process by the tests.
type stdio struct {
	in     io.Reader
	out    io.Writer
	err    io.Writer
	getenv func(string) string
	// isTTY reports whether out is a terminal.
	isTTY bool
}

func osStdio() stdio {
	return stdio{in: os.Stdin, out: os.Stdout, err: os.Stderr, getenv: os.Getenv, isTTY: isTerminal(os.Stdout)}
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// command is one subcommand. newFlags builds its flag set with every flag
// registered, so that help can be printed without running it.
type command struct {
	name    string
	summary string
	usage   string // after "wsauth NAME"
	help    string // paragraphs shown before the flags
	groups  []flagGroup
	flags   func() (*flag.FlagSet, any)
	run     func(ctx context.Context, cfg any, args []string, s stdio) int
}

// flagGroup titles a run of flags in the help, in the order given.
type flagGroup struct {
	title string
	names []string
}

func commands() []*command {
	return []*command{connectCommand(), serveCommand(), tokenCommand(), demoCommand(), versionCommand()}
}

func lookup(name string) *command {
	for _, c := range commands() {
		if c.name == name {
			return c
		}
	}
	return nil
}

// run dispatches to a subcommand and returns the exit code.
func run(ctx context.Context, args []string, s stdio) int {
	if len(args) == 0 {
		printTopHelp(s.err)
		return exitUsage
	}
	switch name := args[0]; name {
	case "help", "-h", "-help", "--help":
		if len(args) < 2 || name != "help" || args[1] == "help" {
			printTopHelp(s.out)
			return exitOK
		}
		c := lookup(args[1])
		if c == nil {
			fmt.Fprintf(s.err, "wsauth: no command %q\n\n", args[1])
			printTopHelp(s.err)
			return exitUsage
		}
		printHelp(s.out, c)
		return exitOK
	}
	c := lookup(args[0])
	if c == nil {
		fmt.Fprintf(s.err, "wsauth: no command %q\n\n", args[0])
		printTopHelp(s.err)
		return exitUsage
	}
	fs, cfg := c.flags()
	pos, err := parseInterspersed(fs, args[1:])
	if errors.Is(err, flag.ErrHelp) {
		printHelp(s.out, c)
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(s.err, "wsauth %s: %v\nRun 'wsauth help %s' for usage.\n", c.name, err, c.name)
		return exitUsage
	}
	return c.run(ctx, cfg, pos, s)
}

// usageError is a mistake on the command line: exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// fail prints err for command name and returns its exit code: 2 for a
// usage error, 1 otherwise.
func fail(s stdio, name string, err error) int {
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(s.err, "wsauth %s: %v\nRun 'wsauth help %s' for usage.\n", name, err, name)
		return exitUsage
	}
	fmt.Fprintf(s.err, "wsauth %s: %v\n", name, err)
	return exitFailure
}

// parseInterspersed parses flags that may come before or after positional
// arguments ("wsauth connect URL --auth ticket" works as well as the other
// order); "--" ends the flags.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

func printTopHelp(w io.Writer) {
	fmt.Fprint(w, `wsauth: authenticated WebSockets from the command line

Usage:
  wsauth COMMAND [flags] [arguments]

Commands:
`)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `  help      show a command's flags: wsauth help COMMAND (or wsauth COMMAND -h)

Exit codes: 0 clean close, 1 any other failure, 2 usage error,
3 gave up on authentication (the server kept refusing the credentials).
Flags may be written -flag or --flag, before or after the arguments.
`)
}

// printHelp prints a command's usage, its help text and every flag with its
// default, in the command's groups.
func printHelp(w io.Writer, c *command) {
	fmt.Fprintf(w, "Usage: wsauth %s %s\n\n%s\n", c.name, c.usage, strings.TrimSpace(c.help))
	fs, _ := c.flags()
	for _, g := range c.groups {
		fmt.Fprintf(w, "\n%s:\n", g.title)
		for _, name := range g.names {
			f := fs.Lookup(name)
			if f == nil {
				panic("wsauth: help names an unknown flag " + name)
			}
			printFlag(w, f)
		}
	}
}

func printFlag(w io.Writer, f *flag.Flag) {
	typ, usage := flag.UnquoteUsage(f)
	if _, isBool := f.Value.(interface{ IsBoolFlag() bool }); isBool {
		typ = ""
	}
	head := "  --" + f.Name
	if typ != "" {
		head += " " + typ
	}
	def := f.DefValue
	if dt, ok := f.Value.(interface{ defaultText() string }); ok {
		def = dt.defaultText()
	}
	if def == "" {
		def = "none"
	}
	fmt.Fprintf(w, "%s\n      %s (default: %s)\n", head, strings.ReplaceAll(usage, "\n", "\n      "), def)
}

// listFlag is a repeatable string flag. Values given on the command line
// replace the default rather than adding to it.
type listFlag struct {
	vals []string
	def  []string
	set  bool
}

func newListFlag(def ...string) *listFlag {
	return &listFlag{vals: append([]string(nil), def...), def: def}
}

func (l *listFlag) String() string {
	if l == nil {
		return ""
	}
	return strings.Join(l.def, ", ")
}

func (l *listFlag) Set(v string) error {
	if !l.set {
		l.vals, l.set = nil, true
	}
	l.vals = append(l.vals, v)
	return nil
}

// textFlag is a string flag whose default, in the help, is a sentence
// rather than a value.
type textFlag struct {
	val  string
	text string
}

func (t *textFlag) String() string {
	if t == nil {
		return ""
	}
	return t.val
}
func (t *textFlag) Set(v string) error  { t.val = v; return nil }
func (t *textFlag) defaultText() string { return t.text }

func versionCommand() *command {
	return &command{
		name:    "version",
		summary: "print the version of wsauth and of Go",
		usage:   "",
		help:    "Print the module version this binary was built from and the Go version.",
		flags:   func() (*flag.FlagSet, any) { return flag.NewFlagSet("version", flag.ContinueOnError), nil },
		run: func(_ context.Context, _ any, args []string, s stdio) int {
			if len(args) > 0 {
				return fail(s, "version", usagef("takes no arguments"))
			}
			v, gov := "(unknown)", "(unknown)"
			if bi, ok := debug.ReadBuildInfo(); ok {
				v, gov = bi.Main.Version, bi.GoVersion
			}
			fmt.Fprintf(s.out, "wsauth %s %s\n", v, gov)
			return exitOK
		},
	}
}
