package transport

import (
	"log/slog"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
)

type keys struct{ pub, sec string }

func newKeys(t testing.TB) keys {
	t.Helper()
	pub, sec, err := zmq.NewCurveKeypair()
	if err != nil {
		t.Fatal(err)
	}
	return keys{pub, sec}
}

// cluster is a server keypair and two client keypairs, with the servers' view of who is who.
type cluster struct {
	server, a, b keys
}

func newCluster(t testing.TB) cluster {
	return cluster{server: newKeys(t), a: newKeys(t), b: newKeys(t)}
}

func (c cluster) serverCurve() *Curve {
	return &Curve{Public: c.server.pub, Secret: c.server.sec, ServerPublic: c.server.pub,
		Identify: func(pub string) (string, bool) {
			switch pub {
			case c.server.pub:
				return ServersIdentity, true
			case c.a.pub:
				return "client-a", true
			case c.b.pub:
				return "client-b", true
			}
			return "", false
		},
		PeerKey: func(id string) (string, bool) {
			switch id {
			case "client-a":
				return c.a.pub, true
			case "client-b":
				return c.b.pub, true
			}
			return "", false
		}}
}

func (c cluster) clientCurve(k keys) *Curve {
	return &Curve{Public: k.pub, Secret: k.sec, ServerPublic: c.server.pub,
		Identify: func(pub string) (string, bool) { return ServersIdentity, pub == c.server.pub }}
}

// deliverOne sends "probe" frames from out to id until one arrives or a few seconds pass, and reports
// whether any arrived. A refused handshake leaves the peer unconnected, so sends fail with ErrUnavailable.
// A refusal is only seen as nothing arriving: the wait is long enough for a handshake on a loaded machine
// (a success returns as soon as the frame is in).
func deliverOne(t *testing.T, out *Outbox, id string, got *collector) bool {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		_ = out.Send(id, []byte("probe"))
		if got.count("probe") > 0 {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return got.count("probe") > 0
}

func TestServerInboxNamesEachClientByItsKey(t *testing.T) {
	c := newCluster(t)
	in, got := startInboxWith(t, c.serverCurve())
	out := NewOutbox(slog.Default(), c.clientCurve(c.a))
	defer out.Close()
	out.SetPeers(map[string]Peer{"s": {Endpoint: in.Endpoint(), Server: true}})
	if !deliverOne(t, out, "s", got) {
		t.Fatal("an allowlisted client could not deliver")
	}
	got.mu.Lock()
	defer got.mu.Unlock()
	if got.peers[0].Identity != "client-a" {
		t.Fatalf("identity %q, want client-a", got.peers[0].Identity)
	}
}

func TestServerInboxRefusesNullAndUnknownKeys(t *testing.T) {
	c := newCluster(t)
	in, got := startInboxWith(t, c.serverCurve())
	refused := HandshakesRefused()

	null := NewOutbox(slog.Default(), nil)
	defer null.Close()
	null.SetPeers(map[string]Peer{"s": {Endpoint: in.Endpoint()}})
	stranger := NewOutbox(slog.Default(), c.clientCurve(newKeys(t)))
	defer stranger.Close()
	stranger.SetPeers(map[string]Peer{"s": {Endpoint: in.Endpoint(), Server: true}})
	if deliverOne(t, null, "s", got) {
		t.Fatal("a NULL (unauthenticated) peer delivered a frame")
	}
	if deliverOne(t, stranger, "s", got) {
		t.Fatal("a peer with an unknown key delivered a frame")
	}
	if HandshakesRefused() == refused {
		t.Fatal("the refused handshake of the unknown key was not counted")
	}
}

func TestClientInboxTakesFramesOnlyFromServers(t *testing.T) {
	c := newCluster(t)
	in, got := startInboxWith(t, c.clientCurve(c.a))

	// A peer that does not hold the servers' secret: plain PUSH, a client's key, and a CURVE server with
	// another secret. None may deliver.
	null := NewOutbox(slog.Default(), nil)
	defer null.Close()
	null.SetPeers(map[string]Peer{"a": {Endpoint: in.Endpoint()}})
	if deliverOne(t, null, "a", got) {
		t.Fatal("a NULL PUSH delivered to a client inbox")
	}
	b := NewOutbox(slog.Default(), c.clientCurve(c.b))
	defer b.Close()
	b.SetPeers(map[string]Peer{"a": {Endpoint: in.Endpoint(), Server: true}})
	if deliverOne(t, b, "a", got) {
		t.Fatal("another client delivered to a client inbox")
	}
	impostor := newCluster(t)
	impostor.a = c.a // it even knows client-a's public key, and holds a servers' key of its own
	fake := NewOutbox(slog.Default(), impostor.serverCurve())
	defer fake.Close()
	fake.SetPeers(map[string]Peer{"client-a": {Endpoint: in.Endpoint()}})
	if deliverOne(t, fake, "client-a", got) {
		t.Fatal("a server with another secret key delivered to a client inbox")
	}

	real := NewOutbox(slog.Default(), c.serverCurve())
	defer real.Close()
	real.SetPeers(map[string]Peer{"client-a": {Endpoint: in.Endpoint()}})
	if !deliverOne(t, real, "client-a", got) {
		t.Fatal("the servers could not deliver to their client")
	}
}

func TestServerSendsToAClientOnlyOnceItProvesThatClientsKey(t *testing.T) {
	c := newCluster(t)
	// client-b's inbox, but the server believes it is client-a's (as if client-b had registered client-a's
	// endpoint, or squatted client-a's id).
	in, got := startInboxWith(t, c.clientCurve(c.b))
	out := NewOutbox(slog.Default(), c.serverCurve())
	defer out.Close()
	out.SetPeers(map[string]Peer{"client-a": {Endpoint: in.Endpoint()}})
	if deliverOne(t, out, "client-a", got) {
		t.Fatal("a frame meant for client-a reached a peer holding client-b's key")
	}
	out.SetPeers(map[string]Peer{"client-b": {Endpoint: in.Endpoint()}})
	if !deliverOne(t, out, "client-b", got) {
		t.Fatal("a frame for client-b did not reach client-b")
	}
}

func TestServersReachEachOtherAsServers(t *testing.T) {
	c := newCluster(t)
	in, got := startInboxWith(t, c.serverCurve())
	out := NewOutbox(slog.Default(), c.serverCurve())
	defer out.Close()
	out.SetPeers(map[string]Peer{"leader": {Endpoint: in.Endpoint(), Server: true}})
	if !deliverOne(t, out, "leader", got) {
		t.Fatal("a server could not deliver to another server")
	}
	got.mu.Lock()
	defer got.mu.Unlock()
	if got.peers[0].Identity != ServersIdentity {
		t.Fatalf("identity %q, want %q", got.peers[0].Identity, ServersIdentity)
	}
}

func TestMalformedZAPRequestsAreRefused(t *testing.T) {
	for _, req := range [][][]byte{
		nil,
		{[]byte("1.0")},
		{[]byte("2.0"), []byte("1"), []byte("d"), []byte("a"), []byte("i"), []byte("CURVE"), make([]byte, 32)},
		{[]byte("1.0"), []byte("1"), []byte("nope"), []byte("a"), []byte("i"), []byte("CURVE"), make([]byte, 32)},
		{[]byte("1.0"), []byte("1"), []byte("d"), []byte("a"), []byte("i"), []byte("PLAIN"), []byte("u"), []byte("p")},
		{[]byte("1.0"), []byte("1"), []byte("d"), []byte("a"), []byte("i"), []byte("CURVE"), []byte("short")},
	} {
		if r := decideZAP(req); r[2] == "200" {
			t.Fatalf("request %q accepted", req)
		}
	}
}
