package docs_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// writeTree writes files (path → content) under a new directory.
func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for path, content := range files {
		full := filepath.Join(root, filepath.FromSlash(path))
		require.NoError(t, os.MkdirAll(filepath.Dir(full), 0o755))
		require.NoError(t, os.WriteFile(full, []byte(content), 0o644))
	}
	return root
}

// TestCheckerCatchesDrift runs the check on a module made up for it, with
// one of each mistake, and then lets it fix what it can.
func TestCheckerCatchesDrift(t *testing.T) {
	root := writeTree(t, map[string]string{
		"go.mod": "module example.com/m\n\ngo 1.26\n",
		"m_test.go": `package m

import "testing"

func TestA(t *testing.T) { _ = helper() }

func helper() int {
	// snippet: good
	x := 1
	// end snippet
	// snippet: drifted
	y := 2
	// end snippet
	// snippet: unused
	z := 3
	// end snippet
	return x + y + z
}

func orphan() int {
	// snippet: notrun
	w := 4
	// end snippet
	return w
}

// Shown is a type a decl block shows.
type Shown interface {
	Do() error
}
`,
		"README.md": "# m\n\n" +
			"<!-- snippet: good -->\n```go\nx := 1\n```\n\n" +
			"<!-- snippet: drifted -->\n```go\ny := 20\n```\n\n" +
			"<!-- snippet: notrun -->\n```go\nw := 4\n```\n\n" +
			"<!-- snippet: missing -->\n```go\nv := 5\n```\n\n" +
			"<!-- decl: . Shown -->\n```go\ntype Shown interface {\n\tDo()\n}\n```\n\n" +
			"```go\nunmarked := true\n```\n\n" +
			"```sh\ngo test ./...\n```\n",
	})
	rep, err := checkDocs(root, false)
	require.NoError(t, err)
	all := strings.Join(rep.problems, "\n")
	for _, want := range []string{
		`README.md:9: the block differs from m_test.go:12 (<!-- snippet: drifted -->)`,
		`doc:    "y := 20"`,
		`m_test.go:22: snippet "notrun" does not run under a test: its function orphan is neither a test nor called by one`,
		`README.md:18: no Go file marks snippet "missing"`,
		`README.md:24: the block differs from . (<!-- decl: . Shown -->)`,
		`README.md:30: a Go block without a <!-- snippet: NAME --> or <!-- decl: DIR NAME --> marker`,
		`m_test.go:15: snippet "unused" is used by no document`,
	} {
		require.Contains(t, all, want)
	}
	require.Len(t, rep.problems, 6, all)

	// Fixing copies the sources into the blocks; what is not a copy
	// (a missing source, an unmarked block, code no test runs) stays wrong.
	rep, err = checkDocs(root, true)
	require.NoError(t, err)
	require.Len(t, rep.notes, 2)
	rep, err = checkDocs(root, false)
	require.NoError(t, err)
	require.Len(t, rep.problems, 4, strings.Join(rep.problems, "\n"))
	fixed, err := os.ReadFile(filepath.Join(root, "README.md"))
	require.NoError(t, err)
	require.Contains(t, string(fixed), "<!-- snippet: drifted -->\n```go\ny := 2\n```")
	require.Contains(t, string(fixed), "// Shown is a type a decl block shows.\ntype Shown interface {\n\tDo() error\n}")
}

// TestReadmeFirstScreen keeps the README's first code block to the two
// commands a newcomer runs: the demo and the tests.
func TestReadmeFirstScreen(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(moduleRoot(t), "README.md"))
	require.NoError(t, err)
	bs, err := parseBlocks("README.md", strings.Split(string(data), "\n"))
	require.NoError(t, err)
	require.NotEmpty(t, bs)
	first := bs[0]
	require.Equal(t, "sh", first.lang)
	require.Less(t, first.line, 25, "on the first screen")
	var commands []string
	for _, l := range first.lines {
		cmd, _, _ := strings.Cut(l, "#")
		commands = append(commands, strings.TrimSpace(cmd))
	}
	require.Equal(t, []string{"go run ./examples/demo", "go test -race ./..."}, commands)
}

// TestReadmeLayoutExists checks that every path the README's layout table
// names is there.
func TestReadmeLayoutExists(t *testing.T) {
	root := moduleRoot(t)
	data, err := os.ReadFile(filepath.Join(root, "README.md"))
	require.NoError(t, err)
	_, layout, ok := strings.Cut(string(data), "\n## Layout\n")
	require.True(t, ok, "a Layout section")
	layout, _, _ = strings.Cut(layout, "\n## ")
	code := regexp.MustCompile("`([^`]+)`")
	n := 0
	for _, line := range strings.Split(layout, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 3 || strings.HasPrefix(strings.TrimSpace(cells[1]), "-") || strings.TrimSpace(cells[1]) == "path" {
			continue
		}
		for _, m := range code.FindAllStringSubmatch(cells[1], -1) {
			_, err := os.Stat(filepath.Join(root, filepath.FromSlash(m[1])))
			require.NoError(t, err, "the layout names %s", m[1])
			n++
		}
	}
	require.Greater(t, n, 20)
}
