// Package docs keeps the Go code blocks of README.md, SECURITY.md,
// docs/*.md and examples/*.md true: every such block is a copy of code
// that compiles in this module and runs under a test, and the test in this
// directory fails when a block and its source drift apart.
//
// In the Markdown, a Go block is preceded by one of two markers:
//
//	<!-- snippet: NAME -->
//	<!-- decl: DIR NAME... -->
//
// "snippet" names a region of a Go file of the module, marked with
//
//	// snippet: NAME
//	…
//	// end snippet
//
// The block must equal the region's lines with their common indentation
// removed. The region must run under a test: it lies in a Test function,
// in an Example with an Output comment, or in a function one of those
// calls (directly or through others in the same directory).
//
// "decl" names declarations (a type, a function, Type.Method) of the
// package in DIR (test files included), relative to the module root; the
// block must equal their source text, doc comments included, joined by
// blank lines. It is for blocks that show a signature, an interface, or
// the methods of a type an Example runs.
//
// A Go block without a marker, a marker without a block, a region no
// document uses and a relative link to a missing file all fail the test.
// To add a block: write the code in a file here (or in an Example of the
// package it documents), mark the region, put the marker and an empty
// ```go block in the document, and run
//
//	go test ./internal/docs -run TestDocs -update
//
// which copies every region into its block. Without -update the test only
// compares.
package docs
