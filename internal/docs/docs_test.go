package docs_test

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/scanner"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "copy every snippet region into its Markdown block")

// pendingLinks are files other documents link to that are being written
// elsewhere; a link to one of them is not an error while it is missing.
var pendingLinks = []string{}

// moduleRoot is the directory of the module's go.mod.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		t.Fatalf("no go.mod at %s: %v", dir, err)
	}
	return dir
}

// region is the code between "// snippet: NAME" and "// end snippet".
type region struct {
	name  string
	file  string // relative to the module root
	line  int    // of the first line of code
	end   int    // of the last line of code
	lines []string
	used  bool
}

func (r *region) text() string { return strings.Join(r.lines, "\n") }

var (
	startMarker = regexp.MustCompile(`^\s*// snippet: (\S+)\s*$`)
	endMarker   = regexp.MustCompile(`^\s*// end snippet\s*$`)
)

// goFiles returns the Go files of the module, relative to root: nested
// modules (interop) and testdata are not part of it.
func goFiles(root string) ([]string, error) {
	var files []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			name := d.Name()
			if rel != "." && (strings.HasPrefix(name, ".") || name == "testdata") {
				return filepath.SkipDir
			}
			if rel != "." {
				if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil {
					return filepath.SkipDir
				}
			}
			return nil
		}
		if strings.HasSuffix(path, ".go") {
			files = append(files, rel)
		}
		return nil
	})
	return files, err
}

// collectRegions reads every snippet region of the module.
func collectRegions(root string, rep *report) (map[string]*region, error) {
	regions := map[string]*region{}
	files, err := goFiles(root)
	if err != nil {
		return nil, err
	}
	for _, rel := range files {
		data, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil {
			return nil, err
		}
		comments := commentLines(data)
		var cur *region
		for i, line := range strings.Split(string(data), "\n") {
			n := i + 1
			if !comments[n] {
				// A marker inside a string literal is text, not a marker.
				if cur != nil {
					cur.lines = append(cur.lines, line)
				}
				continue
			}
			switch {
			case startMarker.MatchString(line):
				if cur != nil {
					rep.errorf("%s:%d: snippet %q starts inside snippet %q", rel, n, startMarker.FindStringSubmatch(line)[1], cur.name)
				}
				name := startMarker.FindStringSubmatch(line)[1]
				if old, dup := regions[name]; dup {
					rep.errorf("%s:%d: snippet %q is also defined at %s:%d", rel, n, name, old.file, old.line)
				}
				cur = &region{name: name, file: rel, line: n + 1}
				regions[name] = cur
			case endMarker.MatchString(line):
				if cur == nil {
					rep.errorf("%s:%d: end snippet without a start", rel, n)
					continue
				}
				cur.end = n - 1
				cur.lines = dedent(cur.lines)
				if len(cur.lines) == 0 {
					rep.errorf("%s:%d: snippet %q is empty", rel, n, cur.name)
				}
				cur = nil
			case cur != nil:
				cur.lines = append(cur.lines, line)
			}
		}
		if cur != nil {
			rep.errorf("%s:%d: snippet %q has no end", rel, cur.line, cur.name)
		}
	}
	return regions, nil
}

// commentLines are the lines of a Go file on which a // comment starts.
func commentLines(src []byte) map[int]bool {
	fset := token.NewFileSet()
	file := fset.AddFile("", fset.Base(), len(src))
	var sc scanner.Scanner
	sc.Init(file, src, nil, scanner.ScanComments)
	lines := map[int]bool{}
	for {
		pos, tok, lit := sc.Scan()
		if tok == token.EOF {
			return lines
		}
		if tok == token.COMMENT && strings.HasPrefix(lit, "//") {
			lines[fset.Position(pos).Line] = true
		}
	}
}

// dedent removes the indentation all non-blank lines share.
func dedent(lines []string) []string {
	prefix := ""
	first := true
	for _, l := range lines {
		if strings.TrimSpace(l) == "" {
			continue
		}
		ind := l[:len(l)-len(strings.TrimLeft(l, " \t"))]
		if first {
			prefix, first = ind, false
			continue
		}
		for !strings.HasPrefix(ind, prefix) {
			prefix = prefix[:len(prefix)-1]
		}
	}
	var out []string
	for _, l := range lines {
		if strings.TrimSpace(l) == "" {
			l = ""
		}
		out = append(out, strings.TrimPrefix(l, prefix))
	}
	// Blank lines around the code belong to the file, not the snippet.
	for len(out) > 0 && out[0] == "" {
		out = out[1:]
	}
	for len(out) > 0 && out[len(out)-1] == "" {
		out = out[:len(out)-1]
	}
	return out
}

// block is a fenced code block of a Markdown file.
type block struct {
	doc    string // relative to the module root
	line   int    // of the opening fence
	lang   string
	marker string // the HTML comment right before it, "" if none
	mline  int
	first  int // index of the first content line in the file's lines
	lines  []string
}

var markerComment = regexp.MustCompile(`^<!--\s*(snippet|decl):\s*(.*?)\s*-->$`)

// markdownFiles are the documents whose Go blocks are checked.
func markdownFiles(root string) ([]string, error) {
	var docs []string
	for _, pattern := range []string{"*.md", "docs/*.md", "examples/*.md"} {
		m, err := filepath.Glob(filepath.Join(root, pattern))
		if err != nil {
			return nil, err
		}
		for _, p := range m {
			rel, _ := filepath.Rel(root, p)
			docs = append(docs, rel)
		}
	}
	sort.Strings(docs)
	return docs, nil
}

// parseBlocks returns the fenced blocks of a document, with the marker
// comment that precedes each (only blank lines may come between).
func parseBlocks(doc string, lines []string) ([]block, error) {
	var blocks []block
	for i := 0; i < len(lines); i++ {
		trimmed := strings.TrimSpace(lines[i])
		if !strings.HasPrefix(trimmed, "```") {
			continue
		}
		indent := lines[i][:len(lines[i])-len(strings.TrimLeft(lines[i], " "))]
		b := block{doc: doc, line: i + 1, lang: strings.TrimSpace(strings.TrimPrefix(trimmed, "```")), first: i + 1}
		for j := i - 1; j >= 0; j-- {
			prev := strings.TrimSpace(lines[j])
			if prev == "" {
				continue
			}
			if markerComment.MatchString(prev) {
				b.marker, b.mline = prev, j+1
			}
			break
		}
		j := i + 1
		for ; j < len(lines); j++ {
			if strings.TrimSpace(lines[j]) == "```" {
				break
			}
			b.lines = append(b.lines, strings.TrimPrefix(lines[j], indent))
		}
		if j == len(lines) {
			return nil, fmt.Errorf("%s:%d: code block never closed", doc, i+1)
		}
		blocks = append(blocks, b)
		i = j
	}
	return blocks, nil
}

// report collects what a check found wrong, and what it changed.
type report struct {
	problems, notes []string
}

func (r *report) errorf(format string, args ...any) {
	r.problems = append(r.problems, fmt.Sprintf(format, args...))
}

func TestDocsMatchTheirSources(t *testing.T) {
	rep, err := checkDocs(moduleRoot(t), *update)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range rep.notes {
		t.Log(n)
	}
	for _, p := range rep.problems {
		t.Error(p)
	}
}

// checkDocs checks every Go block of the documents under root against its
// source; with fix, it copies the sources into the blocks instead of
// reporting the difference.
func checkDocs(root string, fix bool) (*report, error) {
	rep := &report{}
	regions, err := collectRegions(root, rep)
	if err != nil {
		return nil, err
	}
	reach := newReachability(root)
	for _, r := range regions {
		if err := reach.runs(r); err != nil {
			rep.errorf("%s:%d: snippet %q does not run under a test: %v", r.file, r.line, r.name, err)
		}
	}
	docs, err := markdownFiles(root)
	if err != nil {
		return nil, err
	}
	blocks := 0
	for _, doc := range docs {
		data, err := os.ReadFile(filepath.Join(root, doc))
		if err != nil {
			return nil, err
		}
		bs, err := parseBlocks(doc, strings.Split(string(data), "\n"))
		if err != nil {
			rep.errorf("%v", err)
			continue
		}
		changed := false
		for _, b := range bs {
			if b.lang != "go" {
				if b.marker != "" {
					rep.errorf("%s:%d: a %s marker before a %q block: only Go blocks are checked", doc, b.mline, b.marker, b.lang)
				}
				continue
			}
			blocks++
			m := markerComment.FindStringSubmatch(b.marker)
			if m == nil {
				rep.errorf("%s:%d: a Go block without a <!-- snippet: NAME --> or <!-- decl: DIR NAME --> marker", doc, b.line)
				continue
			}
			var want, source string
			switch m[1] {
			case "snippet":
				r, ok := regions[m[2]]
				if !ok {
					rep.errorf("%s:%d: no Go file marks snippet %q", doc, b.mline, m[2])
					continue
				}
				r.used = true
				want, source = r.text(), fmt.Sprintf("%s:%d", r.file, r.line)
			case "decl":
				fields := strings.Fields(m[2])
				if len(fields) < 2 {
					rep.errorf("%s:%d: decl needs a directory and at least one name", doc, b.mline)
					continue
				}
				text, err := declarations(root, fields[0], fields[1:])
				if err != nil {
					rep.errorf("%s:%d: %v", doc, b.mline, err)
					continue
				}
				want, source = text, fields[0]
			}
			got := strings.Join(b.lines, "\n")
			if got == want {
				continue
			}
			if fix {
				changed = true
				rep.notes = append(rep.notes, fmt.Sprintf("%s:%d: updated from %s", doc, b.line, source))
				continue
			}
			rep.errorf("%s:%d: the block differs from %s (%s):\n%s", doc, b.line, source, m[0], firstDifference(got, want))
		}
		if changed {
			if err := rewrite(root, doc, regions); err != nil {
				return nil, err
			}
		}
	}
	for _, r := range regions {
		if !r.used {
			rep.errorf("%s:%d: snippet %q is used by no document", r.file, r.line, r.name)
		}
	}
	if blocks == 0 {
		rep.errorf("found no Go blocks at all")
	}
	return rep, nil
}

// rewrite copies every snippet and decl into its block of doc.
func rewrite(root, doc string, regions map[string]*region) error {
	path := filepath.Join(root, doc)
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	lines := strings.Split(string(data), "\n")
	bs, err := parseBlocks(doc, lines)
	if err != nil {
		return err
	}
	// From the last block to the first, so that earlier offsets hold.
	for i := len(bs) - 1; i >= 0; i-- {
		b := bs[i]
		m := markerComment.FindStringSubmatch(b.marker)
		if b.lang != "go" || m == nil {
			continue
		}
		var want string
		switch m[1] {
		case "snippet":
			r, ok := regions[m[2]]
			if !ok {
				continue
			}
			want = r.text()
		case "decl":
			f := strings.Fields(m[2])
			if len(f) < 2 {
				continue
			}
			if want, err = declarations(root, f[0], f[1:]); err != nil {
				return err
			}
		}
		lines = slices.Concat(lines[:b.first], strings.Split(want, "\n"), lines[b.first+len(b.lines):])
	}
	return os.WriteFile(path, []byte(strings.Join(lines, "\n")), 0o644)
}

// firstDifference shows where two texts part.
func firstDifference(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	line := func(ls []string, i int) string {
		if i < len(ls) {
			return fmt.Sprintf("%q", ls[i])
		}
		return "(the end)"
	}
	for i := 0; i < max(len(g), len(w)); i++ {
		if i >= len(g) || i >= len(w) || g[i] != w[i] {
			return fmt.Sprintf("  line %d of the block\n  doc:    %s\n  source: %s\n(go test ./internal/docs -run TestDocs -update copies the sources into the documents)",
				i+1, line(g, i), line(w, i))
		}
	}
	return "(they are equal)"
}

// declarations returns the source text of the named declarations of the
// package in dir (test files included), doc comment and all, separated by
// blank lines. A name is a type, a function, or Type.Method.
func declarations(root, dir string, names []string) (string, error) {
	key := filepath.Join(root, dir)
	found, ok := declCache[key]
	if !ok {
		var err error
		if found, err = declsOf(root, dir); err != nil {
			return "", err
		}
		declCache[key] = found
	}
	var out []string
	for _, n := range names {
		s, ok := found[n]
		if !ok {
			return "", fmt.Errorf("no declaration %s in %s", n, dir)
		}
		out = append(out, s)
	}
	return strings.Join(out, "\n\n"), nil
}

// declCache keeps what declsOf read, by directory, for one run: the tests
// of this package do not run in parallel.
var declCache = map[string]map[string]string{}

// declsOf returns the text of every type and function declaration of the
// package in dir, by name.
func declsOf(root, dir string) (map[string]string, error) {
	fset := token.NewFileSet()
	pkgDir := filepath.Join(root, filepath.FromSlash(dir))
	entries, err := os.ReadDir(pkgDir)
	if err != nil {
		return nil, err
	}
	found := map[string]string{}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".go") {
			continue
		}
		path := filepath.Join(pkgDir, e.Name())
		src, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		f, err := parser.ParseFile(fset, path, src, parser.ParseComments)
		if err != nil {
			return nil, err
		}
		text := func(from, to token.Pos) string {
			return string(src[fset.Position(from).Offset:fset.Position(to).Offset])
		}
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				name := d.Name.Name
				if d.Recv != nil && len(d.Recv.List) == 1 {
					name = receiverName(d.Recv.List[0].Type) + "." + name
				}
				found[name] = text(withDoc(d.Doc, d.Pos()), d.End())
			case *ast.GenDecl:
				for _, s := range d.Specs {
					ts, ok := s.(*ast.TypeSpec)
					if !ok {
						continue
					}
					if d.Lparen.IsValid() {
						found[ts.Name.Name] = "type " + text(ts.Pos(), ts.End())
					} else {
						found[ts.Name.Name] = text(withDoc(d.Doc, d.Pos()), d.End())
					}
				}
			}
		}
	}
	return found, nil
}

// withDoc is where a declaration starts: its doc comment, if it has one.
func withDoc(doc *ast.CommentGroup, pos token.Pos) token.Pos {
	if doc != nil {
		return doc.Pos()
	}
	return pos
}

func receiverName(e ast.Expr) string {
	switch e := e.(type) {
	case *ast.StarExpr:
		return receiverName(e.X)
	case *ast.Ident:
		return e.Name
	case *ast.IndexExpr:
		return receiverName(e.X)
	}
	return "?"
}

// reachability knows, per directory, which functions run under a test:
// Test functions, Examples with an Output comment, and every function
// they name, transitively, by identifier.
type reachability struct {
	root string
	dirs map[string]*dirFuncs
}

type dirFuncs struct {
	fset  *token.FileSet
	files map[string]*ast.File // by base name
	// reached are the names of the functions (and methods, by their
	// method name) that run under a test.
	reached map[string]bool
}

func newReachability(root string) *reachability {
	return &reachability{root: root, dirs: map[string]*dirFuncs{}}
}

func (r *reachability) dir(rel string) (*dirFuncs, error) {
	if d, ok := r.dirs[rel]; ok {
		return d, nil
	}
	d := &dirFuncs{fset: token.NewFileSet(), files: map[string]*ast.File{}, reached: map[string]bool{}}
	entries, err := os.ReadDir(filepath.Join(r.root, rel))
	if err != nil {
		return nil, err
	}
	funcs := map[string][]*ast.FuncDecl{}
	var roots []*ast.FuncDecl
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".go") {
			continue
		}
		f, err := parser.ParseFile(d.fset, filepath.Join(r.root, rel, e.Name()), nil, parser.ParseComments)
		if err != nil {
			return nil, err
		}
		d.files[e.Name()] = f
		for _, decl := range f.Decls {
			fd, ok := decl.(*ast.FuncDecl)
			if !ok || fd.Body == nil {
				continue
			}
			funcs[fd.Name.Name] = append(funcs[fd.Name.Name], fd)
			if strings.HasSuffix(e.Name(), "_test.go") && fd.Recv == nil && isRoot(f, fd) {
				roots = append(roots, fd)
			}
		}
	}
	queue := roots
	for _, fd := range roots {
		d.reached[fd.Name.Name] = true
	}
	for len(queue) > 0 {
		fd := queue[0]
		queue = queue[1:]
		ast.Inspect(fd.Body, func(n ast.Node) bool {
			id, ok := n.(*ast.Ident)
			if !ok || d.reached[id.Name] {
				return true
			}
			if callees, ok := funcs[id.Name]; ok {
				d.reached[id.Name] = true
				queue = append(queue, callees...)
			}
			return true
		})
	}
	r.dirs[rel] = d
	return d, nil
}

// isRoot reports a function go test runs: TestXxx(t *testing.T), or an
// Example with an Output comment.
func isRoot(f *ast.File, fd *ast.FuncDecl) bool {
	name := fd.Name.Name
	if strings.HasPrefix(name, "Test") && name != "TestMain" {
		return true
	}
	if !strings.HasPrefix(name, "Example") {
		return false
	}
	for _, cg := range f.Comments {
		if cg.Pos() < fd.Body.Lbrace || cg.End() > fd.Body.Rbrace {
			continue
		}
		for _, c := range cg.List {
			text := strings.TrimSpace(strings.TrimPrefix(c.Text, "//"))
			if strings.HasPrefix(text, "Output:") || strings.HasPrefix(text, "Unordered output:") {
				return true
			}
		}
	}
	return false
}

// runs reports why the region does not run under a test, nil when it does:
// it lies in a function that runs, or it holds whole functions that all
// run.
func (r *reachability) runs(reg *region) error {
	d, err := r.dir(filepath.Dir(reg.file))
	if err != nil {
		return err
	}
	f := d.files[filepath.Base(reg.file)]
	var inside *ast.FuncDecl
	var whole []*ast.FuncDecl
	for _, decl := range f.Decls {
		from, to := d.fset.Position(decl.Pos()).Line, d.fset.Position(decl.End()).Line
		fd, isFunc := decl.(*ast.FuncDecl)
		switch {
		case isFunc && from < reg.line && to > reg.end:
			inside = fd
		case isFunc && from >= reg.line && to <= reg.end:
			whole = append(whole, fd)
		}
	}
	switch {
	case inside != nil:
		if !d.reached[inside.Name.Name] {
			return fmt.Errorf("its function %s is neither a test nor called by one", inside.Name.Name)
		}
	case len(whole) > 0:
		for _, fd := range whole {
			if !d.reached[fd.Name.Name] {
				return fmt.Errorf("function %s is neither a test nor called by one", fd.Name.Name)
			}
		}
	default:
		return fmt.Errorf("it holds no function and lies in none")
	}
	return nil
}

// linkTarget finds Markdown links: [text](target).
var linkTarget = regexp.MustCompile(`\]\(([^)\s]+)\)`)

func TestDocsLinksResolve(t *testing.T) {
	root := moduleRoot(t)
	docs, err := markdownFiles(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range docs {
		data, err := os.ReadFile(filepath.Join(root, doc))
		if err != nil {
			t.Fatal(err)
		}
		inCode := false
		sc := bufio.NewScanner(bytes.NewReader(data))
		for n := 1; sc.Scan(); n++ {
			line := sc.Text()
			if strings.HasPrefix(strings.TrimSpace(line), "```") {
				inCode = !inCode
				continue
			}
			if inCode {
				continue
			}
			for _, m := range linkTarget.FindAllStringSubmatch(line, -1) {
				target := m[1]
				if strings.Contains(target, "://") || strings.HasPrefix(target, "#") || strings.HasPrefix(target, "mailto:") {
					continue
				}
				target, _, _ = strings.Cut(target, "#")
				path := filepath.Join(root, filepath.Dir(doc), filepath.FromSlash(target))
				rel, _ := filepath.Rel(root, path)
				if _, err := os.Stat(path); err != nil && !slices.Contains(pendingLinks, filepath.ToSlash(rel)) {
					t.Errorf("%s:%d: link to %s: no such file", doc, n, target)
				}
			}
		}
	}
}
