package transport

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/clover-sched/clover/internal/testenv"
)

type collector struct {
	mu     sync.Mutex
	frames []string
	peers  []Sender
}

func (c *collector) add(b []byte, from Sender) {
	c.mu.Lock()
	c.frames = append(c.frames, string(b))
	c.peers = append(c.peers, from)
	c.mu.Unlock()
}
func (c *collector) len() int { c.mu.Lock(); defer c.mu.Unlock(); return len(c.frames) }

// count is how many frames received are f.
func (c *collector) count(f string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, got := range c.frames {
		if got == f {
			n++
		}
	}
	return n
}

func startInbox(t *testing.T) (*Inbox, *collector) {
	return startInboxWith(t, nil)
}

func startInboxWith(t *testing.T, curve *Curve) (*Inbox, *collector) {
	t.Helper()
	in, err := Listen("tcp://127.0.0.1:0", Options{MaxFrame: 1 << 20, Curve: curve})
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = in.Run(ctx, c.add) }()
	t.Cleanup(func() { cancel(); <-done })
	return in, c
}

func TestSendReachesThePeer(t *testing.T) {
	in, got := startInbox(t)
	out := NewOutbox(slog.Default(), nil)
	defer out.Close()
	out.SetPeers(map[string]Peer{"a": {Endpoint: in.Endpoint()}})
	// The connection completes asynchronously; until then ZMQ_IMMEDIATE makes sends fail fast.
	testenv.WaitFor(t, 5*time.Second, "first frame accepted", func() bool { return out.Send("a", []byte("hello")) == nil })
	for i := 0; i < 99; i++ {
		if err := out.Send("a", []byte("more")); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	testenv.WaitFor(t, 5*time.Second, "100 frames received", func() bool { return got.len() == 100 })
	got.mu.Lock()
	defer got.mu.Unlock()
	if got.peers[0] != (Sender{Addr: "127.0.0.1"}) {
		t.Fatalf("sender %+v, want address 127.0.0.1 and no identity", got.peers[0])
	}
}

func TestSendAnySpreadsAndSkipsDeadPeers(t *testing.T) {
	a, gotA := startInbox(t)
	b, gotB := startInbox(t)
	out := NewOutbox(slog.Default(), nil)
	defer out.Close()
	// "dead" points at a port nobody listens on: SendAny must skip it.
	dead := "tcp://127.0.0.1:" + itoa(testenv.FreePort(t))
	out.SetPeers(map[string]Peer{"a": {Endpoint: a.Endpoint()}, "b": {Endpoint: b.Endpoint()}, "dead": {Endpoint: dead}})
	// The connect probe may send "x" to a peer more than once: only the test's own "y" frames are counted.
	testenv.WaitFor(t, 5*time.Second, "both live peers connected", func() bool {
		return out.Send("a", []byte("x")) == nil && out.Send("b", []byte("x")) == nil
	})
	for i := 0; i < 200; i++ {
		id, err := out.SendAny([]byte("y"))
		if err != nil {
			t.Fatalf("SendAny %d: %v", i, err)
		}
		if id == "dead" {
			t.Fatalf("SendAny chose the dead peer")
		}
	}
	testenv.WaitFor(t, 5*time.Second, "all frames received", func() bool { return gotA.count("y")+gotB.count("y") == 200 })
	if a, b := gotA.count("y"), gotB.count("y"); a < 50 || b < 50 {
		t.Fatalf("frames not spread: a=%d b=%d", a, b)
	}
}

func TestSendToUnknownOrDeadPeerFailsFast(t *testing.T) {
	out := NewOutbox(slog.Default(), nil)
	defer out.Close()
	if err := out.Send("nobody", []byte("x")); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("unknown peer: err = %v, want ErrUnavailable", err)
	}
	out.SetPeers(map[string]Peer{"dead": {Endpoint: "tcp://127.0.0.1:" + itoa(testenv.FreePort(t))}})
	if err := out.Send("dead", []byte("x")); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("dead peer: err = %v, want ErrUnavailable", err)
	}
	if _, err := out.SendAny([]byte("x")); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("SendAny with only a dead peer: err = %v, want ErrUnavailable", err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
