package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/clover-sched/clover/internal/zksession"
)

// retryInterval is how soon a failed ZooKeeper call is retried while the session still looks connected;
// otherwise the next Connected state triggers the retry.
const retryInterval = 200 * time.Millisecond

// heldError says that the node is an ephemeral node of another session.
type heldError struct {
	path  string
	owner int64
}

func (e *heldError) Error() string {
	return fmt.Sprintf("registry: %s is held by session 0x%x", e.path, e.owner)
}

// Registration keeps one member's node in ZooKeeper until Close.
type Registration struct {
	sess   *zksession.Session
	kind   string
	path   string
	logger *slog.Logger

	// mu guards the fields below and serializes every write to the node (keep's and Update's).
	mu      sync.Mutex
	member  Member
	data    []byte
	version int32 // node version after our last write; -1 when the node must be rewritten
	held    int64 // owner of a foreign node last logged, to log it once
	closed  bool

	cancel context.CancelFunc
	done   chan struct{} // closed when keep returns
}

// Register creates the ephemeral node <root>/<kind>/<m.ID> holding m and keeps it until Close: after a
// session expiry it creates the node again in the new session, and it restores the node if someone
// deletes it. If the node is held by another session (typically this member's previous process, whose
// session has not expired yet), Register waits until it goes or ctx ends.
func Register(ctx context.Context, sess *zksession.Session, kind string, m Member, logger *slog.Logger) (*Registration, error) {
	if err := validName("kind", kind); err != nil {
		return nil, fmt.Errorf("registry: register: %w", err)
	}
	m, data, err := prepare(kind, m)
	if err != nil {
		return nil, err
	}
	r := &Registration{
		sess:    sess,
		kind:    kind,
		path:    sess.Path(kind, m.ID),
		logger:  logger.With("component", "registry", "kind", kind, "id", m.ID),
		member:  m,
		data:    data,
		version: -1,
		done:    make(chan struct{}),
	}
	sub := sess.Subscribe() // before the first write, so that keep misses no session change after it
	for {
		r.mu.Lock()
		w, err := r.reconcile(ctx)
		r.mu.Unlock()
		if err == nil {
			break
		}
		var held *heldError
		switch {
		case errors.As(err, &held):
			select {
			case <-w:
				continue
			case <-ctx.Done():
				err = ctx.Err()
			}
		case zksession.IsConnectionError(err):
			if err = sess.Backoff(ctx); err == nil {
				continue
			}
		case errors.Is(err, zksession.ErrNotMine):
			// A client before any server: the servers make the tree (and its ACLs).
			r.logger.Info("waiting for a server to create the registry", "err", err)
			select {
			case <-time.After(500 * time.Millisecond):
				continue
			case <-ctx.Done():
				err = ctx.Err()
			}
		}
		sess.Unsubscribe(sub)
		return nil, fmt.Errorf("registry: register %s: %w", r.path, err)
	}
	ctx, r.cancel = context.WithCancel(context.Background())
	go r.keep(ctx, sub)
	return r, nil
}

// prepare fills in and checks m for kind and encodes it.
func prepare(kind string, m Member) (Member, []byte, error) {
	if m.Kind == "" {
		m.Kind = kind
	}
	if m.Kind != kind {
		return Member{}, nil, fmt.Errorf("registry: member %s is of kind %q, not %q", m.ID, m.Kind, kind)
	}
	if err := m.Validate(); err != nil {
		return Member{}, nil, err
	}
	data, err := json.Marshal(m)
	if err != nil {
		return Member{}, nil, fmt.Errorf("registry: encode member %s: %w", m.ID, err)
	}
	return m, data, nil
}

// Member is the member as last registered or updated.
func (r *Registration) Member() Member {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.member.clone()
}

// Update replaces the member's data (its ID stays). If the write fails for want of a connection, the new
// data is kept and written once the session is back, and the error says so.
func (r *Registration) Update(ctx context.Context, m Member) error {
	m, data, err := prepare(r.kind, m)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return fmt.Errorf("registry: update %s: registration closed", r.path)
	}
	if m.ID != r.member.ID {
		return fmt.Errorf("registry: update %s: id %q cannot change", r.path, m.ID)
	}
	r.member, r.data, r.version = m, data, -1
	if _, err := r.reconcile(ctx); err != nil {
		return fmt.Errorf("registry: update %s (written later if the session comes back): %w", r.path, err)
	}
	return nil
}

// Close stops keeping the node and deletes it if the current session holds it. The node goes with the
// session anyway, so an error here (no connection) only delays its removal.
func (r *Registration) Close(ctx context.Context) error {
	r.cancel()
	select {
	case <-r.done:
	case <-ctx.Done():
		return fmt.Errorf("registry: close %s: %w", r.path, ctx.Err())
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	r.closed = true
	select {
	case <-r.sess.Done():
		return nil // the node went with the session
	default:
	}
	conn := r.sess.Conn()
	ok, stat, err := conn.Exists(r.path)
	if err == nil && ok && stat.EphemeralOwner == r.sess.ID() {
		err = conn.Delete(r.path, stat.Version)
	}
	if errors.Is(err, zk.ErrNoAuth) {
		// Clients may create their node but not delete it (deleting is a right on the parent, which would let
		// one client delete another's): the node goes when the session is closed.
		r.logger.Info("deregistered: the node goes with the session")
		return nil
	}
	if err != nil && !errors.Is(err, zk.ErrNoNode) {
		return fmt.Errorf("registry: close %s: %w", r.path, err)
	}
	r.logger.Info("deregistered")
	return nil
}

// reconcile makes the node exist in the current session with our data, and returns a watch on it; with a
// heldError the watch fires when the other session's node changes or goes. r.mu must be held.
func (r *Registration) reconcile(ctx context.Context) (<-chan zk.Event, error) {
	conn := r.sess.Conn()
	for range 3 { // the node may come or go between two calls: look again
		ok, stat, w, err := conn.ExistsW(r.path)
		if err != nil {
			return nil, fmt.Errorf("registry: stat %s: %w", r.path, err)
		}
		if !ok {
			_, err := conn.Create(r.path, r.data, zk.FlagEphemeral, r.sess.ACL(r.path))
			switch {
			case err == nil:
				r.version, r.held = 0, 0
				r.logger.Info("registered", "session", fmt.Sprintf("0x%x", r.sess.ID()))
				return w, nil // w fires for our own create: keep then checks once more
			case errors.Is(err, zk.ErrNoNode):
				if err := r.sess.EnsurePath(ctx, path.Dir(r.path)); err != nil {
					return nil, err
				}
			case !errors.Is(err, zk.ErrNodeExists):
				return nil, fmt.Errorf("registry: create %s: %w", r.path, err)
			}
			continue
		}
		if stat.EphemeralOwner != r.sess.ID() {
			if r.held != stat.EphemeralOwner {
				r.held = stat.EphemeralOwner
				r.logger.Warn("node held by another session; waiting for it to go", "path", r.path, "owner", fmt.Sprintf("0x%x", stat.EphemeralOwner))
			}
			return w, &heldError{path: r.path, owner: stat.EphemeralOwner}
		}
		if stat.Version == r.version {
			return w, nil
		}
		stat, err = conn.Set(r.path, r.data, stat.Version)
		switch {
		case err == nil:
			r.version = stat.Version
			return w, nil
		case errors.Is(err, zk.ErrBadVersion), errors.Is(err, zk.ErrNoNode):
			continue
		default:
			return nil, fmt.Errorf("registry: write %s: %w", r.path, err)
		}
	}
	return nil, fmt.Errorf("registry: %s keeps changing under us", r.path)
}

// keep runs on its own goroutine from Register to Close, and is the only reader of sub and of the node's
// watch. Whenever either says the node may be gone or stale (a new session after an expiry, a resumed
// session, the node deleted or rewritten), it calls reconcile under mu, which it shares with Update.
// Failed calls are retried on the next Connected state, or after retryInterval if the session still looks
// connected.
func (r *Registration) keep(ctx context.Context, sub <-chan zksession.State) {
	defer close(r.done)
	defer r.sess.Unsubscribe(sub)
	var w <-chan zk.Event
	var retry <-chan time.Time
	check := true
	for {
		if check {
			check = false
			r.mu.Lock()
			nw, err := r.reconcile(ctx)
			r.mu.Unlock()
			w = nw
			var held *heldError
			switch {
			case err == nil, errors.As(err, &held): // held: w fires when the other node goes
			case zksession.IsConnectionError(err):
				if r.sess.State().Kind == zksession.Connected {
					retry = time.After(retryInterval)
				}
			default:
				r.logger.Warn("keeping registration", "err", err)
				retry = time.After(retryInterval)
			}
		}
		select {
		case <-ctx.Done():
			return
		case st, ok := <-sub:
			if !ok {
				return
			}
			check = st.Kind == zksession.Connected
		case <-w:
			check = true
		case <-retry:
			check = true
		}
	}
}
