package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/clover-sched/clover/internal/zksession"
)

// Cache is a watched view of the members of one kind.
type Cache struct {
	sess   *zksession.Session
	kind   string
	dir    string
	logger *slog.Logger

	// mu guards members and bad: Run writes them, readers take snapshots.
	mu      sync.RWMutex
	members map[string]entry
	bad     map[string]string // id -> the error last logged for its data, so each is logged once

	synced   chan struct{}
	syncOnce sync.Once
	changes  chan struct{} // buffer 1: one pending notification stands for any number of changes
}

type entry struct {
	m   Member
	raw []byte
}

// NewCache prepares a view of <root>/<kind>; Run fills it.
func NewCache(sess *zksession.Session, kind string, logger *slog.Logger) *Cache {
	return &Cache{
		sess:    sess,
		kind:    kind,
		dir:     sess.Path(kind),
		logger:  logger.With("component", "registry", "kind", kind),
		members: make(map[string]entry),
		bad:     make(map[string]string),
		synced:  make(chan struct{}),
		changes: make(chan struct{}, 1),
	}
}

// Synced is closed after the first full listing: from then on Members is complete (as of some moment).
func (c *Cache) Synced() <-chan struct{} { return c.synced }

// Changes receives a value after the view changed; notifications coalesce, so after one arrives read
// Members. The cache never waits for a reader.
func (c *Cache) Changes() <-chan struct{} { return c.changes }

// Members is a snapshot of the members with valid data, sorted by ID.
func (c *Cache) Members() []Member {
	c.mu.RLock()
	out := make([]Member, 0, len(c.members))
	for _, e := range c.members {
		out = append(out, e.m.clone())
	}
	c.mu.RUnlock()
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Member returns the member with id, if it is in the view.
func (c *Cache) Member(id string) (Member, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	e, ok := c.members[id]
	return e.m.clone(), ok
}

// runState is owned by Run's goroutine.
type runState struct {
	watched map[string]bool // ids with a data watch outstanding
	childW  <-chan zk.Event // the children watch, nil when none is set
	events  chan dataEvent  // data watches, forwarded
	wg      sync.WaitGroup  // forwarders
}

type dataEvent struct {
	id string
	ev zk.Event
}

// Run keeps the view current until ctx ends or the Session closes; call it once.
//
// Concurrency: Run's goroutine alone talks to ZooKeeper and changes the view (under mu, so that readers
// get consistent snapshots). It waits on the children watch, on the session's state changes and on the
// data watches. Because the set of data watches changes, each one gets a small forwarding goroutine that
// passes its single event to Run (or gives up when Run ends; Run waits for them before returning). Any
// children event, a new or resumed session, or a failure leads to a new listing, which forgets members
// that are gone and reads (and watches) each child without an outstanding data watch. After an expiry
// every watch fires EventNotWatching, so everything is read again in the new session.
func (c *Cache) Run(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	st := &runState{watched: make(map[string]bool), events: make(chan dataEvent)}
	defer st.wg.Wait()
	defer cancel()
	sub := c.sess.Subscribe()
	defer c.sess.Unsubscribe(sub)

	relist := true
	var retry <-chan time.Time
	fail := func(err error) {
		if !zksession.IsConnectionError(err) {
			c.logger.Warn("watching members", "err", err)
		}
		if c.sess.State().Kind == zksession.Connected { // else the next Connected state retries
			retry = time.After(retryInterval)
		}
	}
	for {
		if relist {
			relist = false
			if err := c.list(ctx, st); err != nil {
				fail(err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case s, ok := <-sub:
			if !ok {
				return
			}
			relist = s.Kind == zksession.Connected
		case <-st.childW:
			st.childW = nil
			relist = true
		case de := <-st.events:
			// Whatever happened (changed, deleted, no longer watched), read the node again: it may
			// also have been deleted and created anew since.
			delete(st.watched, de.id)
			if err := c.fetch(ctx, de.id, st); err != nil {
				fail(err)
			}
		case <-retry:
			retry = nil
			relist = true
		}
	}
}

// list reads the children, sets the children watch, drops members that are gone and reads the others.
func (c *Cache) list(ctx context.Context, st *runState) error {
	conn := c.sess.Conn()
	children, _, w, err := conn.ChildrenW(c.dir)
	if errors.Is(err, zk.ErrNoNode) { // nobody registered yet: create the parent so that it can be watched
		err = c.sess.EnsurePath(ctx, c.dir)
		if errors.Is(err, zksession.ErrNotMine) { // a server makes it: wait for that
			var ok bool
			var ew <-chan zk.Event
			ok, _, ew, err = conn.ExistsW(c.dir)
			switch {
			case err != nil:
				return fmt.Errorf("registry: watch %s: %w", c.dir, err)
			case !ok:
				st.childW = ew
				c.forgetAllBut(nil)
				return nil
			}
			// Made meanwhile: list it.
		}
		if err != nil {
			return err
		}
		children, _, w, err = conn.ChildrenW(c.dir)
	}
	if err != nil {
		return fmt.Errorf("registry: list %s: %w", c.dir, err)
	}
	st.childW = w
	c.forgetAllBut(children)
	var first error
	for _, id := range children {
		if st.watched[id] {
			continue
		}
		if err := c.fetch(ctx, id, st); err != nil && first == nil {
			first = err
		}
	}
	if first == nil {
		c.syncOnce.Do(func() { close(c.synced) })
	}
	return first
}

// fetch reads and watches one child and updates the view with it.
func (c *Cache) fetch(ctx context.Context, id string, st *runState) error {
	p := c.dir + "/" + id
	data, _, w, err := c.sess.Conn().GetW(p)
	if errors.Is(err, zk.ErrNoNode) {
		c.forget(id)
		return nil
	}
	if err != nil {
		return fmt.Errorf("registry: read %s: %w", p, err)
	}
	st.watched[id] = true
	st.wg.Add(1)
	go func() {
		defer st.wg.Done()
		select {
		case ev := <-w:
			select {
			case st.events <- dataEvent{id, ev}:
			case <-ctx.Done():
			}
		case <-ctx.Done():
		}
	}()
	c.apply(id, data)
	return nil
}

// apply puts a child's data into the view, or leaves the child out if the data is not a valid member.
func (c *Cache) apply(id string, data []byte) {
	m, err := decode(c.kind, id, data)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		if c.bad[id] != err.Error() {
			c.bad[id] = err.Error()
			c.logger.Warn("skipping member with invalid data", "path", c.dir+"/"+id, "err", err)
		}
		if _, ok := c.members[id]; ok {
			delete(c.members, id)
			c.notify()
		}
		return
	}
	delete(c.bad, id)
	if old, ok := c.members[id]; ok && bytes.Equal(old.raw, data) {
		return
	}
	c.members[id] = entry{m: m, raw: data}
	c.notify()
}

func (c *Cache) forget(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.bad, id)
	if _, ok := c.members[id]; ok {
		delete(c.members, id)
		c.notify()
	}
}

func (c *Cache) forgetAllBut(children []string) {
	present := make(map[string]bool, len(children))
	for _, id := range children {
		present[id] = true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for id := range c.bad {
		if !present[id] {
			delete(c.bad, id)
		}
	}
	for id := range c.members {
		if !present[id] {
			delete(c.members, id)
			c.notify()
		}
	}
}

// notify signals a change without blocking; c.mu is held.
func (c *Cache) notify() {
	select {
	case c.changes <- struct{}{}:
	default:
	}
}
