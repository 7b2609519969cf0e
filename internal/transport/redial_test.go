package transport

import (
	"log/slog"
	"sync/atomic"
	"testing"
	"time"
)

// libzmq gives up a connection whose handshake was refused; the outbox opens a new one, so that a client
// whose key is admitted after its first try (or a server restarted with the right allowlist) is reached.
func TestAPeerRefusedOnceIsReachedOnceAdmitted(t *testing.T) {
	c := newCluster(t)
	var admit atomic.Bool
	sc := c.serverCurve()
	inner := sc.Identify
	sc.Identify = func(pub string) (string, bool) {
		if pub == c.a.pub && !admit.Load() {
			return "", false
		}
		return inner(pub)
	}
	in, got := startInboxWith(t, sc)
	out := NewOutbox(slog.Default(), c.clientCurve(c.a))
	defer out.Close()
	out.SetPeers(map[string]Peer{"s": {Endpoint: in.Endpoint(), Server: true}})
	refused := HandshakesRefused()
	deadline := time.Now().Add(10 * time.Second)
	for HandshakesRefused() == refused && time.Now().Before(deadline) {
		_ = out.Send("s", []byte("early")) // refused: the key is not admitted yet
		time.Sleep(20 * time.Millisecond)
	}
	if HandshakesRefused() == refused || got.len() != 0 {
		t.Fatalf("the first handshake was not refused (%d frames in)", got.len())
	}
	admit.Store(true)
	// The outbox redials every redialAfter; the deadline is many of those, since a loaded machine may
	// delay a handshake, and without the redial nothing arrives however long the test waits.
	start := time.Now()
	for time.Since(start) < 10*redialAfter {
		_ = out.Send("s", []byte("probe"))
		if got.count("probe") > 0 {
			t.Logf("delivered after %s", time.Since(start))
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("never delivered after admission")
}
