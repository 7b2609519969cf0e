package zksession

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-zookeeper/zk"
)

// ErrClosed is returned by blocking calls once the Session is closed.
var ErrClosed = errors.New("zksession: session closed")

// Kind is what happened to the session.
type Kind int

const (
	// Connected: the client holds session SessionID (a new id means the previous session expired).
	Connected Kind = iota + 1
	// Disconnected: the connection is down; the session may still be alive on the server, or not.
	Disconnected
	// Expired: the server expired session SessionID; its ephemeral nodes and watches are gone.
	Expired
)

func (k Kind) String() string {
	switch k {
	case Connected:
		return "connected"
	case Disconnected:
		return "disconnected"
	case Expired:
		return "expired"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// State is one session state change.
type State struct {
	Kind      Kind
	SessionID int64 // the session connected to, or the one that expired; 0 when disconnected
}

// subscriberBuffer is how many state changes a slow subscriber may fall behind before the oldest is dropped.
const subscriberBuffer = 16

// retryDelay is the pause before an operation that failed on the connection is tried again.
const retryDelay = 50 * time.Millisecond

// Option changes how Connect dials.
type Option func(*options)

type options struct {
	dialer zk.Dialer
	access Access
}

// Access is who a session is in ZooKeeper and which ACL the nodes it creates get.
type Access struct {
	// Digests are "user:password" identities added to the session (the digest scheme).
	Digests []string
	// ACL is the ACL of a node this session creates at path; nil for a path it must not create (it waits
	// for another process to). A nil ACL func leaves every node open to anyone (insecure mode).
	ACL func(path string) []zk.ACL
}

// WithAccess authenticates the session and sets the ACLs of the nodes it creates.
func WithAccess(a Access) Option {
	return func(o *options) { o.access = a }
}

// ErrNotMine is returned when this session is not the one to create a node: its parent is made by
// another role (clients wait for a server to make the tree).
var ErrNotMine = errors.New("zksession: node is made by another role")

// WithDialer makes the connection dial through d (tests use it to cut the network; see zksessiontest).
func WithDialer(d zk.Dialer) Option {
	return func(o *options) { o.dialer = d }
}

// Session is a ZooKeeper connection and the session it holds.
//
// Concurrency: go-zookeeper reports session changes by calling onEvent from its own connection goroutine.
// We use that callback and not the library's event channel because the channel holds only six events and
// the library drops new ones when it is full: a burst of reconnects could lose an Expired. onEvent never
// blocks (apart from waiting once, during Connect, until s.conn is set): under s.mu it records the state,
// wakes WaitConnected callers by closing s.changed, and hands the state to each subscriber with a
// non-blocking send, dropping that subscriber's oldest queued state when its buffer is full. The newest
// state is therefore always delivered, so a slow subscriber sees fewer transitions but always the latest.
// A separate goroutine (ping) confirms the session every timeout/4 for Healthy. Close stops the connection,
// waits until the library's goroutine has exited (its event channel closes), and then closes every
// subscriber channel, so no callback can race with the close.
type Session struct {
	conn    *zk.Conn
	access  Access
	events  <-chan zk.Event
	root    string
	timeout time.Duration
	logger  *slog.Logger

	ready chan struct{} // closed once conn is set; onEvent waits for it
	done  chan struct{} // closed by Close
	once  sync.Once
	wg    sync.WaitGroup // ping

	epoch  time.Time    // origin of the monotonic readings below
	lastOK atomic.Int64 // monotonic ns since epoch at which a confirmed ping was sent

	mu      sync.Mutex
	state   State
	lastID  int64         // last session id held, reported with Expired
	changed chan struct{} // closed and replaced on every state change
	subs    map[<-chan State]chan State
	closed  bool

	// Session losses, not counting our own Close: what a loaded machine costs (see Losses).
	expired, disconnected atomic.Int64
}

// Losses reports how many times the session expired and how many times the connection was lost while a
// session was held, since Connect. An expiry costs what was built on the session (ephemeral nodes: a
// client's registration, a server's leadership); a disconnection that resumes in time costs nothing.
func (s *Session) Losses() (expired, disconnected int64) {
	return s.expired.Load(), s.disconnected.Load()
}

// Connect dials ZooKeeper (servers are "host:port", or comma-separated lists of them), waits until it has a
// session or ctx ends, and ensures that root (e.g. "/clover") exists.
func Connect(ctx context.Context, servers []string, root string, sessionTimeout time.Duration, logger *slog.Logger, opts ...Option) (*Session, error) {
	if !strings.HasPrefix(root, "/") || strings.HasSuffix(root, "/") {
		return nil, fmt.Errorf("zksession: root %q must start with '/' and not end with it", root)
	}
	var addrs []string
	for _, s := range servers {
		for _, a := range strings.Split(s, ",") {
			if a = strings.TrimSpace(a); a != "" {
				addrs = append(addrs, a)
			}
		}
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	logger = logger.With("component", "zksession")
	s := &Session{
		access:  o.access,
		root:    root,
		timeout: sessionTimeout,
		logger:  logger,
		ready:   make(chan struct{}),
		done:    make(chan struct{}),
		epoch:   time.Now(),
		state:   State{Kind: Disconnected},
		changed: make(chan struct{}),
		subs:    make(map[<-chan State]chan State),
	}
	if o.dialer == nil {
		o.dialer = net.DialTimeout
	}
	conn, events, err := zk.Connect(addrs, sessionTimeout,
		zk.WithLogger(zkLogger{logger}), zk.WithEventCallback(s.onEvent), zk.WithDialer(o.dialer))
	if err != nil {
		return nil, fmt.Errorf("zksession: connect %v: %w", addrs, err)
	}
	s.conn, s.events = conn, events
	close(s.ready)

	if err := s.WaitConnected(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("zksession: connect %v: %w", addrs, err)
	}
	if err := s.authenticate(ctx, o.access.Digests); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.EnsurePath(ctx, root); err != nil && !errors.Is(err, ErrNotMine) {
		s.Close()
		return nil, err
	}
	s.probe() // so that Healthy holds from the start
	s.wg.Add(1)
	go s.ping()
	return s, nil
}

// authenticate adds the identities to the session once it is connected (a request made before would fail
// with the first refused connection); the library sends them again after every reconnect, before any
// other request.
func (s *Session) authenticate(ctx context.Context, digests []string) error {
	for _, d := range digests {
		for {
			err := s.conn.AddAuth("digest", []byte(d))
			if err == nil {
				break
			}
			if !IsConnectionError(err) {
				return fmt.Errorf("zksession: authenticate: %w", err)
			}
			if err := s.Backoff(ctx); err != nil {
				return fmt.Errorf("zksession: authenticate: %w", err)
			}
		}
	}
	return nil
}

// ACL is the ACL this session gives a node it creates at path; nil when it must not create it.
func (s *Session) ACL(path string) []zk.ACL {
	if s.access.ACL == nil {
		return zk.WorldACL(zk.PermAll)
	}
	return s.access.ACL(path)
}

// Conn is the underlying connection, for the operations this package does not wrap.
func (s *Session) Conn() *zk.Conn { return s.conn }

// Root is the path under which this process keeps its nodes.
func (s *Session) Root() string { return s.root }

// Path is root + "/" + parts joined by "/"; Path() is the root.
func (s *Session) Path(parts ...string) string {
	if len(parts) == 0 {
		return s.root
	}
	return s.root + "/" + strings.Join(parts, "/")
}

// ID is the id of the session currently held; it changes after an expiry and is 0 between sessions.
func (s *Session) ID() int64 { return s.conn.SessionID() }

// SessionTimeout is the session timeout asked for at Connect.
func (s *Session) SessionTimeout() time.Duration { return s.timeout }

// Done is closed when Close is called.
func (s *Session) Done() <-chan struct{} { return s.done }

// State is the current session state.
func (s *Session) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}

// EnsurePath creates path and its missing parents as persistent nodes (mkdir -p); nodes created meanwhile by
// others are fine.
func (s *Session) EnsurePath(ctx context.Context, path string) error {
	if ok, _, err := s.conn.Exists(path); err == nil && ok {
		return nil
	}
	for i := 1; i <= len(path); i++ {
		if i < len(path) && path[i] != '/' {
			continue
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("zksession: ensure %s: %w", path, err)
		}
		if ok, _, err := s.conn.Exists(path[:i]); err == nil && ok {
			continue
		}
		acl := s.ACL(path[:i])
		if acl == nil {
			return fmt.Errorf("zksession: ensure %s: %s does not exist yet: %w", path, path[:i], ErrNotMine)
		}
		_, err := s.conn.Create(path[:i], nil, zk.FlagPersistent, acl)
		if err != nil && !errors.Is(err, zk.ErrNodeExists) {
			return fmt.Errorf("zksession: ensure %s: create %s: %w", path, path[:i], err)
		}
	}
	return nil
}

// Subscribe returns a channel that receives every session state change until Unsubscribe or Close (which
// close it). Delivery never blocks the session: a subscriber that falls more than 16 changes behind loses
// the oldest ones, never the newest.
func (s *Session) Subscribe() <-chan State {
	ch := make(chan State, subscriberBuffer)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		close(ch)
		return ch
	}
	s.subs[ch] = ch
	return ch
}

// Unsubscribe stops deliveries to ch and closes it; unknown or already closed channels are ignored.
func (s *Session) Unsubscribe(ch <-chan State) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.subs[ch]; ok {
		delete(s.subs, ch)
		close(c)
	}
}

// WaitConnected blocks until the session is connected, ctx ends (ctx.Err()) or the Session closes (ErrClosed).
func (s *Session) WaitConnected(ctx context.Context) error {
	for {
		s.mu.Lock()
		connected, changed := s.state.Kind == Connected, s.changed
		s.mu.Unlock()
		if connected {
			return nil
		}
		select {
		case <-changed:
		case <-s.done:
			return ErrClosed
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Backoff is what to do after an operation failed on the connection (IsConnectionError): pause briefly,
// then wait until the session is connected again. It returns ctx.Err() or ErrClosed when retrying is futile.
func (s *Session) Backoff(ctx context.Context) error {
	t := time.NewTimer(retryDelay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-s.done:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	return s.WaitConnected(ctx)
}

// IsConnectionError reports whether err came from the connection or session rather than from the request,
// so that the same request may succeed once the session is connected again.
func IsConnectionError(err error) bool {
	return errors.Is(err, zk.ErrConnectionClosed) || errors.Is(err, zk.ErrNoServer) ||
		errors.Is(err, zk.ErrSessionExpired) || errors.Is(err, zk.ErrSessionMoved) ||
		errors.Is(err, zk.ErrClosing)
}

// Healthy reports whether the session is connected and ZooKeeper confirmed it within maxAge, on the monotonic
// clock. A process resumed after a pause longer than its session timeout reads false until a fresh
// confirmation arrives, even while the client library still believes it is connected. Leaders call it
// before every action, with maxAge well under the session timeout (e.g. SessionTimeout()/2).
func (s *Session) Healthy(maxAge time.Duration) bool {
	if s.State().Kind != Connected {
		return false
	}
	return s.since()-time.Duration(s.lastOK.Load()) <= maxAge
}

func (s *Session) since() time.Duration { return time.Since(s.epoch) }

// ping confirms the session every timeout/4, on its own goroutine until Close. A confirmation is stamped
// with the time its request was sent, not answered: the server saw the session alive no earlier than that,
// and an answer that waited in the socket while the process was paused confirms nothing recent.
func (s *Session) ping() {
	defer s.wg.Done()
	t := time.NewTicker(max(s.timeout/4, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-t.C:
			s.probe()
		case <-s.done:
			return
		}
	}
}

// probe asks ZooKeeper about the root and, if the same session answered, records the confirmation.
func (s *Session) probe() {
	sent, id := s.since(), s.conn.SessionID()
	if _, _, err := s.conn.Exists(s.root); err == nil && id != 0 && s.conn.SessionID() == id {
		s.confirm(sent)
	}
}

func (s *Session) confirm(at time.Duration) {
	for {
		old := s.lastOK.Load()
		if int64(at) <= old || s.lastOK.CompareAndSwap(old, int64(at)) {
			return
		}
	}
}

// onEvent receives go-zookeeper's events on its connection goroutine; see Session for why it must not block.
func (s *Session) onEvent(ev zk.Event) {
	if ev.Type != zk.EventSession {
		return
	}
	<-s.ready
	var st State
	switch ev.State {
	case zk.StateHasSession:
		st = State{Kind: Connected, SessionID: s.conn.SessionID()}
	case zk.StateDisconnected:
		st = State{Kind: Disconnected}
	case zk.StateExpired:
		st = State{Kind: Expired}
	default: // connecting, TCP connected without a session yet, auth failures: not a session change
		return
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if st.Kind == Expired {
		st.SessionID = s.lastID
	}
	if s.closed || st == s.state {
		return
	}
	prev, resumed := s.state, st.Kind == Connected && st.SessionID == s.lastID
	s.state = st
	if st.Kind == Connected {
		// Not a confirmation for Healthy: this answer may have waited in the socket while we were paused.
		s.lastID = st.SessionID
	}
	// Counted and logged before subscribers hear of it, so a subscriber that reads Losses after the event
	// sees it counted.
	s.account(prev, st, resumed)
	close(s.changed)
	s.changed = make(chan struct{})
	for _, ch := range s.subs {
		publish(ch, st)
	}
}

// account counts a session loss and logs the change; our own Close loses nothing.
func (s *Session) account(prev, st State, resumed bool) {
	select {
	case <-s.done:
		return
	default:
	}
	switch {
	case resumed:
		s.logger.Info("session resumed", "session", fmt.Sprintf("0x%x", st.SessionID))
	case st.Kind == Connected:
		s.logger.Info("session established", "session", fmt.Sprintf("0x%x", st.SessionID))
	case st.Kind == Expired:
		s.expired.Add(1)
		s.logger.Warn("session expired: its ephemeral nodes and watches are gone", "session", fmt.Sprintf("0x%x", st.SessionID))
	case prev.Kind == Connected:
		s.disconnected.Add(1)
		s.logger.Warn("disconnected from ZooKeeper", "session", fmt.Sprintf("0x%x", prev.SessionID))
	}
}

// Close ends the session (its ephemeral nodes go at once), waits for the connection's goroutines to exit and
// closes every subscriber channel. It is safe to call more than once. While ZooKeeper is unreachable it takes
// about a second: the library waits that long for the answer to its close request.
func (s *Session) Close() {
	s.once.Do(func() {
		close(s.done)
		s.conn.Close()
		for range s.events { // closed by the library's goroutine when it exits: no more onEvent calls
		}
		s.wg.Wait()
		s.mu.Lock()
		defer s.mu.Unlock()
		s.closed = true
		s.state = State{Kind: Disconnected}
		for k, ch := range s.subs {
			delete(s.subs, k)
			close(ch)
		}
		close(s.changed)
		s.changed = make(chan struct{})
		s.logger.Info("session closed")
	})
}
