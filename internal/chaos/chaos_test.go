package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestMatrixQuick runs a slice of the quick matrix in process: every fault
// at the steady and handshake phases, both modes, with small counts so
// that it stays within a minute under -race on a busy machine.
func TestMatrixQuick(t *testing.T) {
	var out, errb bytes.Buffer
	err := run(context.Background(), []string{"matrix", "--quick", "--messages", "120", "--senders", "4",
		"--cell-duration", "1s", "--parallel", "8", "--phases", "steady,handshake"}, &out, &errb)
	t.Log(out.String())
	require.NoError(t, err, errb.String())
	require.Contains(t, out.String(), "32 cells, 0 failed")
}

func TestLedgerFindsLossAndDuplicates(t *testing.T) {
	// The classification must be able to fail: a message sent with nil
	// and never read is lost; one read twice is duplicated.
	l := newLedger()
	l.sent(0, 0, nil)
	l.sent(0, 1, nil)
	h := l.senders[0]
	h.delivered = []int32{2, 0}
	tl := l.tally()
	require.Equal(t, 1, tl.Lost)
	require.Equal(t, 1, tl.Duplicated)
	require.Len(t, tl.failures(), 2)
	require.True(t, strings.Contains(strings.Join(tl.failures(), ","), "lost silently"))
}

func TestUnknownSubcommand(t *testing.T) {
	var out, errb bytes.Buffer
	require.Error(t, run(context.Background(), []string{"nope"}, &out, &errb))
	require.ErrorIs(t, run(context.Background(), []string{"flood"}, &out, &errb), errNotBuilt)
}
