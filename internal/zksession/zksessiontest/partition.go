// Package zksessiontest cuts or freezes a zksession's network, to test what a partition from ZooKeeper, or a
// process paused past its session timeout, does. Meanwhile ZooKeeper keeps running and expires the session.
package zksessiontest

import (
	"errors"
	"net"
	"sync"
	"time"

	"github.com/clover-sched/clover/internal/zksession"
)

// Partition is a switch between one Session and ZooKeeper. Its zero value lets everything through.
type Partition struct {
	mu     sync.Mutex
	cut    bool
	thawed chan struct{} // nil or closed while not frozen
	conns  []*conn
}

var errCut = errors.New("zksessiontest: network cut")

// Option makes a Session dial through p.
func (p *Partition) Option() zksession.Option { return zksession.WithDialer(p.dial) }

func (p *Partition) dial(network, addr string, timeout time.Duration) (net.Conn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		return nil, errCut
	}
	c, err := net.DialTimeout(network, addr, timeout)
	if err != nil {
		return nil, err
	}
	pc := &conn{Conn: c, p: p, closed: make(chan struct{})}
	p.conns = append(p.conns, pc)
	return pc, nil
}

// Cut closes the live connection and refuses new ones until Heal: the client notices at once.
func (p *Partition) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// Heal lets the session reconnect.
func (p *Partition) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = false
}

// Freeze holds every read and write of the connection until Thaw, as if the process were stopped: the
// client library notices nothing, and sends no pings, until it is thawed.
func (p *Partition) Freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.thawed == nil || isClosed(p.thawed) {
		p.thawed = make(chan struct{})
	}
}

// Thaw releases what Freeze held.
func (p *Partition) Thaw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.thawed != nil && !isClosed(p.thawed) {
		close(p.thawed)
	}
}

func (p *Partition) waitThawed(c *conn) {
	p.mu.Lock()
	thawed := p.thawed
	p.mu.Unlock()
	if thawed == nil {
		return
	}
	select {
	case <-thawed:
	case <-c.closed: // never hold up a Close
	}
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// conn holds reads (after they return) and writes (before they start) while the partition is frozen.
type conn struct {
	net.Conn
	p         *Partition
	closed    chan struct{}
	closeOnce sync.Once
}

func (c *conn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.p.waitThawed(c)
	return n, err
}

func (c *conn) Write(b []byte) (int, error) {
	c.p.waitThawed(c)
	return c.Conn.Write(b)
}

func (c *conn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return c.Conn.Close()
}
