package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wsauth/wsauth/server"
)

// TicketStore is a server.TicketStore in Redis: a ticket minted by one instance can be
// redeemed on any, once. Each ticket is one key, prefix+"ticket:"+SecretHash(ticket),
// holding the ticket's data as JSON, expired by Redis itself (PX); Consume is GETDEL, which
// Redis runs atomically, so of any number of concurrent redemptions on any number of
// instances exactly one gets the data.
type TicketStore struct {
	st *Store
}

// TicketStore returns the Store's ticket store.
func (st *Store) TicketStore() *TicketStore {
	return &TicketStore{st: st}
}

// Put stores the ticket for ttl; see server.TicketStore. A ttl under a millisecond, the
// resolution of Redis expiry, stores nothing: the ticket is already expired.
func (ts *TicketStore) Put(ctx context.Context, ticket string, d server.TicketData, ttl time.Duration) error {
	if ttl < time.Millisecond {
		return nil
	}
	val, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("redisstore: encoding ticket data: %w", err)
	}
	ctx, cancel := ts.st.op(ctx)
	defer cancel()
	if err := ts.st.rdb.Set(ctx, ts.st.secretKey("ticket", ticket), val, ttl).Err(); err != nil {
		return unavailable("put ticket", err)
	}
	return nil
}

// Consume removes the ticket and returns its data; see server.TicketStore. It returns
// server.ErrTicketInvalid for a ticket that is unknown, used or expired, and an error
// wrapping server.ErrStoreUnavailable when Redis cannot be asked. A ticket is never
// accepted twice; one whose GETDEL ran but whose answer was lost is used up unredeemed.
func (ts *TicketStore) Consume(ctx context.Context, ticket string) (server.TicketData, error) {
	ctx, cancel := ts.st.op(ctx)
	defer cancel()
	val, err := ts.st.rdb.GetDel(ctx, ts.st.secretKey("ticket", ticket)).Bytes()
	switch {
	case errors.Is(err, redis.Nil):
		return server.TicketData{}, server.ErrTicketInvalid
	case err != nil:
		return server.TicketData{}, unavailable("consume ticket", err)
	}
	var d server.TicketData
	if err := json.Unmarshal(val, &d); err != nil {
		return server.TicketData{}, fmt.Errorf("redisstore: decoding ticket data: %w", err)
	}
	return d, nil
}
