package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wsauth/wsauth/server"
)

// maxPending bounds the events a Cluster keeps while Redis is down; past it the oldest are
// dropped, with an error in the log.
const maxPending = 1024

// resyncInterval is how long a Cluster waits before it tries again to sync after a failure.
const resyncInterval = time.Second

// wireEvent is a server.ClusterEvent on the pub/sub channel, with the instance it comes
// from. It holds no secret: a session is named by its hash.
type wireEvent struct {
	Origin  string                  `json:"o,omitempty"`
	Kind    server.ClusterEventKind `json:"k"`
	Subject string                  `json:"s,omitempty"`
	Session string                  `json:"h,omitempty"`
}

// send records a revocation in the revocation list and publishes the event, in one
// transaction, so that an instance syncing at the same moment sees the list with the
// revocation or receives the event (or both), never neither.
func (st *Store) send(ctx context.Context, ev wireEvent) error {
	msg, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	ctx, cancel := st.op(ctx)
	defer cancel()
	_, err = st.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		switch ev.Kind {
		case server.ClusterRevoke:
			p.SAdd(ctx, st.key("revoked"), ev.Subject)
		case server.ClusterUnrevoke:
			p.SRem(ctx, st.key("revoked"), ev.Subject)
		}
		p.Publish(ctx, st.key("events"), msg)
		return nil
	})
	if err != nil {
		return unavailable("publish "+string(ev.Kind), err)
	}
	return nil
}

// Cluster is a server.Cluster on Redis pub/sub, for one server instance. Revocations are
// also kept in a Redis set, prefix+"revoked", which an instance reads whenever its
// subscription is (re)established and hands to the server as a server.ClusterSync: so an
// instance that starts later, or was cut off from Redis, catches up on what it missed.
// Publishes that fail while Redis is down are kept (up to 1024, in order) and sent when it
// is back; the revocation applies on the instance that made it meanwhile.
type Cluster struct {
	st     *Store
	origin string

	// pubMu orders publishes: kept ones go before newer ones.
	pubMu   sync.Mutex
	pending []wireEvent

	mu         sync.Mutex
	subscribed bool
	// onSync, for tests, is called after each sync has been applied.
	onSync func()
}

// NewCluster returns a Cluster for one server instance.
func (st *Store) NewCluster() *Cluster {
	return &Cluster{st: st, origin: randomTag()}
}

// Publish sends ev to every other instance; see server.Cluster. When Redis cannot be
// reached it keeps ev to send later and returns an error wrapping
// server.ErrStoreUnavailable.
func (c *Cluster) Publish(ctx context.Context, ev server.ClusterEvent) error {
	w := wireEvent{Origin: c.origin, Kind: ev.Kind, Subject: ev.Subject, Session: ev.Session}
	c.pubMu.Lock()
	defer c.pubMu.Unlock()
	if err := c.flushLocked(ctx); err != nil {
		c.keepLocked(w)
		return err
	}
	if err := c.st.send(ctx, w); err != nil {
		c.keepLocked(w)
		return err
	}
	return nil
}

// flushLocked sends the kept events, oldest first, stopping at the first failure.
func (c *Cluster) flushLocked(ctx context.Context) error {
	for len(c.pending) > 0 {
		if err := c.st.send(ctx, c.pending[0]); err != nil {
			return err
		}
		c.pending = c.pending[1:]
	}
	c.pending = nil
	return nil
}

func (c *Cluster) keepLocked(w wireEvent) {
	if len(c.pending) >= maxPending {
		c.st.log.Error("redisstore: too many events kept while Redis is down; dropping the oldest",
			"kind", string(c.pending[0].Kind), "subject", c.pending[0].Subject)
		c.pending = c.pending[1:]
	}
	c.pending = append(c.pending, w)
}

// Subscribe delivers the events of the other instances to apply; see server.Cluster. It
// first syncs (the kept publishes, then the revocation list) if Redis answers; Redis being
// down is no error: the subscription is established, and synced, once it is back.
func (c *Cluster) Subscribe(apply func(server.ClusterEvent)) (func(), error) {
	c.mu.Lock()
	if c.subscribed {
		c.mu.Unlock()
		return nil, errors.New("redisstore: Cluster.Subscribe called twice: each server needs its own Cluster")
	}
	c.subscribed = true
	c.mu.Unlock()

	if err := c.sync(apply); err != nil {
		c.st.log.Warn("redisstore: cluster not synced at start; it will be once Redis answers", "error", err)
	}
	ps := c.st.rdb.Subscribe(context.Background(), c.st.key("events"))
	msgs := ps.ChannelWithSubscriptions()
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.receive(msgs, quit, apply)
	}()
	return func() {
		close(quit)
		_ = ps.Close()
		<-done
	}, nil
}

// receive applies events until msgs is closed, which Close of the PubSub does. After quit
// it only drains msgs, so that go-redis's goroutine is not left blocked on a send.
func (c *Cluster) receive(msgs <-chan any, quit <-chan struct{}, apply func(server.ClusterEvent)) {
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	resync := func() {
		if err := c.sync(apply); err != nil {
			c.st.log.Warn("redisstore: cluster sync failed; retrying", "error", err)
			retry.Reset(resyncInterval)
		}
	}
	for {
		select {
		case m, ok := <-msgs:
			if !ok {
				return
			}
			select {
			case <-quit:
				continue
			default:
			}
			switch m := m.(type) {
			case *redis.Subscription:
				// Sent at the first subscription and after every reconnection: events
				// may have been missed in between.
				if m.Kind == "subscribe" {
					c.st.log.Info("redisstore: cluster subscribed")
					resync()
				}
			case *redis.Message:
				c.deliver(m.Payload, apply)
			}
		case <-retry.C:
			select {
			case <-quit:
			default:
				resync()
			}
		}
	}
}

// deliver decodes one message and applies it, unless it is this instance's own.
func (c *Cluster) deliver(payload string, apply func(server.ClusterEvent)) {
	var w wireEvent
	if err := json.Unmarshal([]byte(payload), &w); err != nil {
		c.st.log.Warn("redisstore: malformed cluster message ignored")
		return
	}
	if w.Origin == c.origin {
		return
	}
	switch w.Kind {
	case server.ClusterRevoke, server.ClusterUnrevoke, server.ClusterEndSession:
		apply(server.ClusterEvent{Kind: w.Kind, Subject: w.Subject, Session: w.Session})
	default:
		c.st.log.Warn("redisstore: unknown cluster message ignored", "kind", string(w.Kind))
	}
}

// sync sends the kept events, then hands the revocation list to apply. It holds pubMu
// throughout, so that no publish of this instance falls between the read of the list and
// its application: the server publishes before it applies, and a list without a revocation
// it is publishing would otherwise replace the revocation.
func (c *Cluster) sync(apply func(server.ClusterEvent)) error {
	ctx := context.Background()
	c.pubMu.Lock()
	defer c.pubMu.Unlock()
	if err := c.flushLocked(ctx); err != nil {
		return err
	}
	revoked, err := c.st.Revoked(ctx)
	if err != nil {
		return err
	}
	apply(server.ClusterEvent{Kind: server.ClusterSync, Revoked: revoked})
	c.mu.Lock()
	onSync := c.onSync
	c.mu.Unlock()
	if onSync != nil {
		onSync()
	}
	return nil
}
