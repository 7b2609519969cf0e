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

// Inbox is a bound PULL socket.
type Inbox struct {
	sock     *zmq.Socket
	endpoint string
}

// Listen binds a PULL socket at endpoint ("tcp://127.0.0.1:7701"; port 0 or * picks a free port).
func Listen(endpoint string) (*Inbox, error) {
	sock, err := zmq.NewSocket(zmq.PULL)
	if err != nil {
		return nil, fmt.Errorf("transport: new PULL socket: %w", err)
	}
	_ = sock.SetLinger(0)
	_ = sock.SetRcvhwm(sendHWM)
	// Frames larger than this are dropped by ZeroMQ before they reach us; the wire layer checks again.
	_ = sock.SetMaxmsgsize(4 << 20)
	bind := endpoint
	if strings.HasSuffix(bind, ":0") {
		bind = strings.TrimSuffix(bind, ":0") + ":*"
	}
	if err := sock.Bind(bind); err != nil {
		sock.Close()
		return nil, fmt.Errorf("transport: bind %s: %w", endpoint, err)
	}
	actual, err := sock.GetLastEndpoint()
	if err != nil {
		sock.Close()
		return nil, fmt.Errorf("transport: endpoint of %s: %w", endpoint, err)
	}
	return &Inbox{sock: sock, endpoint: actual}, nil
}

// Endpoint is the bound address, with the port resolved.
func (in *Inbox) Endpoint() string { return in.endpoint }

// Run reads frames and hands each to deliver, with the sender's address ("ip" as ZeroMQ reports it, for
// logs), until ctx ends, then closes the socket. deliver runs on Run's goroutine and must not block for long:
// a slow deliver backs up the peers' queues.
func (in *Inbox) Run(ctx context.Context, deliver func(frame []byte, peer string)) error {
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
			frame, meta, err := in.sock.RecvBytesWithMetadata(zmq.DONTWAIT, "Peer-Address")
			if err != nil {
				break // EAGAIN: drained
			}
			deliver(frame, meta["Peer-Address"])
		}
	}
	return nil
}

// Outbox holds one PUSH socket per peer.
type Outbox struct {
	logger *slog.Logger

	mu    sync.RWMutex
	peers map[string]*peer
	order []string // peer ids, sorted, for spreading
	next  int
}

type peer struct {
	endpoint string
	mu       sync.Mutex
	sock     *zmq.Socket
}

// NewOutbox returns an Outbox with no peers.
func NewOutbox(logger *slog.Logger) *Outbox {
	return &Outbox{logger: logger, peers: map[string]*peer{}}
}

// SetPeers makes the peer set exactly peers (id -> endpoint): new peers are connected, gone ones closed, and
// a peer whose endpoint changed is reconnected.
func (o *Outbox) SetPeers(peers map[string]string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for id, p := range o.peers {
		if ep, ok := peers[id]; !ok || ep != p.endpoint {
			p.close()
			delete(o.peers, id)
		}
	}
	for id, ep := range peers {
		if _, ok := o.peers[id]; ok {
			continue
		}
		p, err := dial(ep)
		if err != nil {
			o.logger.Warn("cannot connect to peer", "peer", id, "endpoint", ep, "err", err)
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

// AddPeer connects one more peer (or reconnects it at a new endpoint).
func (o *Outbox) AddPeer(id, endpoint string) {
	o.mu.RLock()
	cur := make(map[string]string, len(o.peers)+1)
	for pid, p := range o.peers {
		cur[pid] = p.endpoint
	}
	o.mu.RUnlock()
	cur[id] = endpoint
	o.SetPeers(cur)
}

func dial(endpoint string) (*peer, error) {
	sock, err := zmq.NewSocket(zmq.PUSH)
	if err != nil {
		return nil, fmt.Errorf("new PUSH socket: %w", err)
	}
	_ = sock.SetLinger(0)
	_ = sock.SetImmediate(true)
	_ = sock.SetSndhwm(sendHWM)
	_ = sock.SetReconnectIvl(100 * time.Millisecond)
	_ = sock.SetReconnectIvlMax(2 * time.Second)
	if err := sock.Connect(endpoint); err != nil {
		sock.Close()
		return nil, fmt.Errorf("connect %s: %w", endpoint, err)
	}
	return &peer{endpoint: endpoint, sock: sock}, nil
}

func (p *peer) send(frame []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.sock == nil {
		return ErrUnavailable
	}
	if _, err := p.sock.SendBytes(frame, zmq.DONTWAIT); err != nil {
		if zmq.AsErrno(err) == zmq.Errno(syscall.EAGAIN) {
			return ErrUnavailable
		}
		return fmt.Errorf("transport: send to %s: %w", p.endpoint, err)
	}
	return nil
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
