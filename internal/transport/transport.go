package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	zmq "github.com/pebbe/zmq4"
)

// ErrUnavailable means the peer is unknown, not connected, or its queue is full: the frame was not queued.
var ErrUnavailable = errors.New("transport: peer unavailable")

// sendHWM bounds the frames queued for one peer; past it sends fail rather than grow memory.
const sendHWM = 100_000

// Curve sets up CURVE on a process's sockets: every connection is encrypted, and each end proves the key
// it holds. A nil *Curve means the NULL mechanism: no encryption and anyone may send (insecure mode).
//
// Every bound socket (an inbox) takes the CURVE server role with its process's own keypair, and names each
// peer that connects by its key through the ZAP handler (Identify); unknown keys are refused. Every
// connecting socket takes the CURVE client role and names the key the peer it connects to must hold: the
// servers' public key towards a server, and towards a client that client's own public key (PeerKey), so a
// server delivers X's dispatches only to the holder of X's secret key. (The CURVE server role stays on bound
// sockets: libzmq 4.3 aborts the process when a connecting CURVE server's ZAP handler refuses a peer.)
type Curve struct {
	Public, Secret string // this process's keypair, Z85
	ServerPublic   string // the servers' public key
	// Identify names the holder of a public key that connects to an inbox of this process: on a server a
	// client id or ServersIdentity, on a client ServersIdentity only.
	Identify func(publicKey string) (string, bool)
	// PeerKey, on servers, is the public key of client id (the allowlist).
	PeerKey func(id string) (string, bool)
}

// Options configures an Inbox.
type Options struct {
	// MaxFrame: larger frames are dropped by ZeroMQ before they are read (and the connection closed).
	MaxFrame int64
	Curve    *Curve
}

// Sender is who sent a frame.
type Sender struct {
	Addr string // the peer's IP, for logs
	// Identity is the authenticated peer: a client id, or ServersIdentity; "" without CURVE.
	Identity string
}

// Inbox is a bound PULL socket.
type Inbox struct {
	sock     *zmq.Socket
	endpoint string
	domain   string // ZAP domain, removed with the socket
}

// Listen binds a PULL socket at endpoint ("tcp://127.0.0.1:7701"; port 0 or * picks a free port).
func Listen(endpoint string, opts Options) (*Inbox, error) {
	sock, err := zmq.NewSocket(zmq.PULL)
	if err != nil {
		return nil, fmt.Errorf("transport: new PULL socket: %w", err)
	}
	_ = sock.SetLinger(0)
	_ = sock.SetRcvhwm(sendHWM)
	if opts.MaxFrame > 0 {
		_ = sock.SetMaxmsgsize(opts.MaxFrame)
	}
	var domain string
	if c := opts.Curve; c != nil {
		domain, err = serverRole(sock, c)
		if err != nil {
			sock.Close()
			return nil, fmt.Errorf("transport: CURVE on %s: %w", endpoint, err)
		}
	}
	bind := endpoint
	if strings.HasSuffix(bind, ":0") {
		bind = strings.TrimSuffix(bind, ":0") + ":*"
	}
	if err := sock.Bind(bind); err != nil {
		sock.Close()
		removePolicy(domain)
		return nil, fmt.Errorf("transport: bind %s: %w", endpoint, err)
	}
	actual, err := sock.GetLastEndpoint()
	if err != nil {
		sock.Close()
		removePolicy(domain)
		return nil, fmt.Errorf("transport: endpoint of %s: %w", endpoint, err)
	}
	return &Inbox{sock: sock, endpoint: actual, domain: domain}, nil
}

// serverRole makes sock a CURVE server whose peers c.Identify knows.
func serverRole(sock *zmq.Socket, c *Curve) (string, error) {
	if c.Identify == nil {
		return "", errors.New("no Identify for the peers of an inbox")
	}
	if err := startZAP(); err != nil {
		return "", err
	}
	domain := addPolicy(zapPolicy{identify: c.Identify})
	if err := sock.ServerAuthCurve(domain, c.Secret); err != nil {
		removePolicy(domain)
		return "", err
	}
	return domain, nil
}

// Close closes an inbox whose Run was never called (a start that failed after Listen).
func (in *Inbox) Close() {
	in.sock.Close()
	removePolicy(in.domain)
}

// Endpoint is the bound address, with the port resolved.
func (in *Inbox) Endpoint() string { return in.endpoint }

// Run reads frames and hands each to deliver, with its sender, until ctx ends, then closes the socket.
// deliver runs on Run's goroutine and must not block for long: a slow deliver backs up the peers' queues.
func (in *Inbox) Run(ctx context.Context, deliver func(frame []byte, from Sender)) error {
	defer removePolicy(in.domain)
	defer in.sock.Close()
	poller := zmq.NewPoller()
	poller.Add(in.sock, zmq.POLLIN)
	for ctx.Err() == nil {
		polled, err := poller.Poll(100 * time.Millisecond)
		if err != nil {
			if errors.Is(err, syscall.EINTR) || zmq.AsErrno(err) == zmq.Errno(syscall.EINTR) {
				continue
			}
			return fmt.Errorf("transport: poll %s: %w", in.endpoint, err)
		}
		if len(polled) == 0 {
			continue
		}
		for {
			frame, meta, err := in.sock.RecvBytesWithMetadata(zmq.DONTWAIT, "Peer-Address", "User-Id")
			if err != nil {
				break // EAGAIN: drained
			}
			deliver(frame, Sender{Addr: meta["Peer-Address"], Identity: meta["User-Id"]})
		}
	}
	return nil
}

// Peer is a process an Outbox sends to.
type Peer struct {
	Endpoint string
	// Server: the peer holds the servers' key. Otherwise it is the client named by its id, and with CURVE
	// a server sends to it only once it has proved that client's key.
	Server bool
}

// Outbox holds one PUSH socket per peer.
type Outbox struct {
	logger *slog.Logger
	curve  *Curve

	mu    sync.RWMutex
	peers map[string]*peer
	order []string // peer ids, sorted, for spreading
	next  int
}

type peer struct {
	Peer
	open  func() (*zmq.Socket, error) // a new connected socket
	mu    sync.Mutex
	sock  *zmq.Socket
	since time.Time // the socket was opened, or last took a frame
	took  bool      // the socket took a frame: a handshake completed once
}

// libzmq never reconnects a connection whose CURVE handshake was refused (a protocol error ends the
// session): a key admitted after the first try, or a peer restarted with another key, would stay
// unreachable until the peer set changes. So a socket that has taken no frame while we send gets
// replaced: after redialAfter if it never took one (its first handshake failed), after redialStuck if it
// did. The longer wait keeps the queue of a connected but slow peer (a full queue refuses frames too)
// unless it stays full that long, when the peer is as good as gone.
const (
	redialAfter = 3 * time.Second
	redialStuck = 30 * time.Second
)

// NewOutbox returns an Outbox with no peers; curve nil sends without CURVE.
func NewOutbox(logger *slog.Logger, curve *Curve) *Outbox {
	return &Outbox{logger: logger, curve: curve, peers: map[string]*peer{}}
}

// SetPeers makes the peer set exactly peers (by id): new peers are connected, gone ones closed, and a peer
// that changed is reconnected.
func (o *Outbox) SetPeers(peers map[string]Peer) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for id, p := range o.peers {
		if cur, ok := peers[id]; !ok || cur != p.Peer {
			p.close()
			delete(o.peers, id)
		}
	}
	for id, target := range peers {
		if _, ok := o.peers[id]; ok {
			continue
		}
		p, err := o.dial(id, target)
		if err != nil {
			o.logger.Warn("cannot connect to peer", "peer", id, "endpoint", target.Endpoint, "err", err)
			continue
		}
		o.peers[id] = p
	}
	o.order = o.order[:0]
	for id := range o.peers {
		o.order = append(o.order, id)
	}
	slices.Sort(o.order)
}

// AddPeer connects one more peer (or reconnects it if it changed).
func (o *Outbox) AddPeer(id string, target Peer) {
	o.mu.RLock()
	cur := make(map[string]Peer, len(o.peers)+1)
	for pid, p := range o.peers {
		cur[pid] = p.Peer
	}
	o.mu.RUnlock()
	cur[id] = target
	o.SetPeers(cur)
}

func (o *Outbox) dial(id string, target Peer) (*peer, error) {
	p := &peer{Peer: target, open: func() (*zmq.Socket, error) { return o.connect(id, target) }}
	sock, err := p.open()
	if err != nil {
		return nil, err
	}
	p.sock, p.since = sock, time.Now()
	return p, nil
}

func (o *Outbox) connect(id string, target Peer) (*zmq.Socket, error) {
	sock, err := zmq.NewSocket(zmq.PUSH)
	if err != nil {
		return nil, fmt.Errorf("new PUSH socket: %w", err)
	}
	_ = sock.SetLinger(0)
	_ = sock.SetImmediate(true)
	_ = sock.SetSndhwm(sendHWM)
	_ = sock.SetReconnectIvl(100 * time.Millisecond)
	_ = sock.SetReconnectIvlMax(2 * time.Second)
	if c := o.curve; c != nil {
		peerKey, ok := c.ServerPublic, true
		if !target.Server {
			if c.PeerKey == nil {
				ok = false
			} else {
				peerKey, ok = c.PeerKey(id)
			}
		}
		if !ok {
			sock.Close()
			return nil, fmt.Errorf("CURVE for %s: no public key for it", id)
		}
		if err := sock.ClientAuthCurve(peerKey, c.Public, c.Secret); err != nil {
			sock.Close()
			return nil, fmt.Errorf("CURVE for %s: %w", id, err)
		}
	}
	if err := sock.Connect(target.Endpoint); err != nil {
		sock.Close()
		return nil, fmt.Errorf("connect %s: %w", target.Endpoint, err)
	}
	return sock, nil
}

func (p *peer) send(frame []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.sock == nil {
		return ErrUnavailable
	}
	if _, err := p.sock.SendBytes(frame, zmq.DONTWAIT); err != nil {
		if zmq.AsErrno(err) == zmq.Errno(syscall.EAGAIN) {
			if wait := time.Since(p.since); !p.took && wait > redialAfter || wait > redialStuck {
				p.redial()
			}
			return ErrUnavailable
		}
		return fmt.Errorf("transport: send to %s: %w", p.Endpoint, err)
	}
	p.since, p.took = time.Now(), true
	return nil
}

// redial replaces the socket. Frames queued on the old one are dropped with it, as with a peer that
// died: the layers above send again what was not answered. p.mu must be held.
func (p *peer) redial() {
	sock, err := p.open()
	if err != nil {
		p.since = time.Now() // try again later
		return
	}
	p.sock.Close()
	p.sock, p.since, p.took = sock, time.Now(), false
}

func (p *peer) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.sock != nil {
		p.sock.Close()
		p.sock = nil
	}
}

// Send queues frame for the peer id. A newly added peer may take a moment to connect; until then sends
// fail with ErrUnavailable.
func (o *Outbox) Send(id string, frame []byte) error {
	o.mu.RLock()
	p, ok := o.peers[id]
	o.mu.RUnlock()
	if !ok {
		return fmt.Errorf("%w: %s is not a known peer", ErrUnavailable, id)
	}
	if err := p.send(frame); err != nil {
		if errors.Is(err, ErrUnavailable) {
			return fmt.Errorf("%w: %s", ErrUnavailable, id)
		}
		return err
	}
	return nil
}

// SendAny queues frame for one connected peer, taking peers in turn so that load spreads; it tries every
// peer once before it gives up with ErrUnavailable. It returns the peer that took the frame.
func (o *Outbox) SendAny(frame []byte) (string, error) {
	o.mu.Lock()
	n := len(o.order)
	if n == 0 {
		o.mu.Unlock()
		return "", fmt.Errorf("%w: no peers", ErrUnavailable)
	}
	start := o.next % n
	o.next++
	order := slices.Clone(o.order)
	o.mu.Unlock()
	var lastErr error
	for i := range n {
		id := order[(start+i)%n]
		if err := o.Send(id, frame); err != nil {
			lastErr = err
			continue
		}
		return id, nil
	}
	return "", lastErr
}

// Peers returns the ids of the current peers.
func (o *Outbox) Peers() []string {
	o.mu.RLock()
	defer o.mu.RUnlock()
	return slices.Clone(o.order)
}

// Close closes every peer socket.
func (o *Outbox) Close() {
	o.mu.Lock()
	defer o.mu.Unlock()
	for id, p := range o.peers {
		p.close()
		delete(o.peers, id)
	}
	o.order = nil
}
