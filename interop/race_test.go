//go:build race

package interop

// raceEnabled builds the command with -race too, so that a race in the
// client under a third-party server fails the command's run.
const raceEnabled = true
