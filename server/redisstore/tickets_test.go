package redisstore

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wsauth/wsauth/server"
)

func TestTicketStore(t *testing.T) {
	d := newDeployment(t)
	ts := d.store(t).TicketStore()
	ctx := ctxT(t)
	data := server.TicketData{
		Subject:     "alice",
		TokenExpiry: time.Now().Add(time.Hour).Round(0),
		IssuedAt:    time.Now().Round(0),
		SessionTTL:  time.Minute,
	}
	require.NoError(t, ts.Put(ctx, "t1", data, 30*time.Second))
	got, err := ts.Consume(ctx, "t1")
	require.NoError(t, err)
	require.Equal(t, data.Subject, got.Subject)
	require.True(t, data.TokenExpiry.Equal(got.TokenExpiry))
	require.True(t, data.IssuedAt.Equal(got.IssuedAt))
	require.Equal(t, data.SessionTTL, got.SessionTTL)

	_, err = ts.Consume(ctx, "t1")
	require.ErrorIs(t, err, server.ErrTicketInvalid, "single use")
	_, err = ts.Consume(ctx, "never issued")
	require.ErrorIs(t, err, server.ErrTicketInvalid)

	require.NoError(t, ts.Put(ctx, "t2", data, 0))
	require.NoError(t, ts.Put(ctx, "t3", data, -time.Second))
	for _, tk := range []string{"t2", "t3"} {
		_, err = ts.Consume(ctx, tk)
		require.ErrorIs(t, err, server.ErrTicketInvalid, "a ticket stored with ttl <= 0 is already expired")
	}
}

// TestTicketKeys: a ticket is a key named by its hash, expired by Redis; neither the key
// nor the value holds the ticket.
func TestTicketKeys(t *testing.T) {
	d := newDeployment(t)
	ts := d.store(t).TicketStore()
	ctx := ctxT(t)
	const ticket = "a-bearer-secret-ticket"
	require.NoError(t, ts.Put(ctx, ticket, server.TicketData{Subject: "alice"}, 30*time.Second))
	keys := d.keys(t)
	require.Equal(t, []string{"wsauth:ticket:" + server.SecretHash(ticket)}, keys)
	c := d.rs.Client(t)
	val, err := c.Get(ctx, keys[0]).Result()
	require.NoError(t, err)
	require.NotContains(t, val, ticket)
	ttl, err := c.PTTL(ctx, keys[0]).Result()
	require.NoError(t, err)
	require.Greater(t, ttl, 25*time.Second, "Redis expires the ticket")
	require.LessOrEqual(t, ttl, 30*time.Second)
}

// TestTicketConsumeRace: 200 redemptions of one ticket at once, through two stores on two
// clients, as two instances would: exactly one gets it.
func TestTicketConsumeRace(t *testing.T) {
	d := newDeployment(t)
	a, b := d.store(t).TicketStore(), d.store(t).TicketStore()
	ctx := ctxT(t)
	require.NoError(t, a.Put(ctx, "one", server.TicketData{Subject: "alice"}, 30*time.Second))
	var wins, refusals atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 200 {
		ts := a
		if i%2 == 1 {
			ts = b
		}
		wg.Go(func() {
			<-start
			_, err := ts.Consume(ctx, "one")
			switch {
			case err == nil:
				wins.Add(1)
			case errors.Is(err, server.ErrTicketInvalid):
				refusals.Add(1)
			default:
				t.Errorf("consume: %v", err)
			}
		})
	}
	close(start)
	wg.Wait()
	t.Logf("200 concurrent Consume calls over 2 stores: %d success, %d refused", wins.Load(), refusals.Load())
	require.EqualValues(t, 1, wins.Load())
	require.EqualValues(t, 199, refusals.Load())
}
