package transport

import (
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"

	zmq "github.com/pebbe/zmq4"
)

// ServersIdentity is the identity of a peer holding the servers' key. Client ids cannot contain '@'.
const ServersIdentity = "@servers"

// zapEndpoint is where libzmq asks for a verdict on every CURVE handshake its server-role sockets see
// (RFC 27, ZAP). One handler serves the process; each socket names its policy by its ZAP domain.
const zapEndpoint = "inproc://zeromq.zap.01"

// zapPolicy decides one socket's handshakes.
type zapPolicy struct {
	identify func(publicKey string) (string, bool)
}

// The handler is ours rather than zmq4's AuthStart because that one keeps its key lists in unguarded
// package maps (a data race when keys change under it) and panics on a malformed request.
var zap struct {
	once sync.Once
	err  error

	mu       sync.Mutex
	policies map[string]zapPolicy
	next     int

	refused atomic.Uint64
}

// HandshakesRefused counts CURVE handshakes this process's inboxes refused: unknown keys.
func HandshakesRefused() uint64 { return zap.refused.Load() }

func startZAP() error {
	zap.once.Do(func() {
		ready := make(chan error, 1)
		go serveZAP(ready)
		zap.err = <-ready
	})
	return zap.err
}

func addPolicy(p zapPolicy) string {
	zap.mu.Lock()
	defer zap.mu.Unlock()
	if zap.policies == nil {
		zap.policies = map[string]zapPolicy{}
	}
	zap.next++
	domain := "clover-" + strconv.Itoa(zap.next)
	zap.policies[domain] = p
	return domain
}

func removePolicy(domain string) {
	zap.mu.Lock()
	delete(zap.policies, domain)
	zap.mu.Unlock()
}

// serveZAP answers ZAP requests for the life of the process. The socket lives on this goroutine only.
func serveZAP(ready chan<- error) {
	sock, err := zmq.NewSocket(zmq.REP)
	if err != nil {
		ready <- fmt.Errorf("transport: ZAP handler: %w", err)
		return
	}
	_ = sock.SetLinger(0)
	if err := sock.Bind(zapEndpoint); err != nil {
		sock.Close()
		ready <- fmt.Errorf("transport: ZAP handler: bind %s: %w", zapEndpoint, err)
		return
	}
	ready <- nil
	for {
		req, err := sock.RecvMessageBytes(0)
		if err != nil {
			if zmq.AsErrno(err) == zmq.ETERM {
				sock.Close()
				return
			}
			continue
		}
		reply := decideZAP(req)
		if _, err := sock.SendMessage(reply[0], reply[1], reply[2], reply[3], reply[4], reply[5]); err != nil && zmq.AsErrno(err) == zmq.ETERM {
			sock.Close()
			return
		}
	}
}

// decideZAP answers one request: [version, request id, domain, address, routing id, mechanism, key...]
// with [version, request id, status, text, user id, metadata].
func decideZAP(req [][]byte) [6]string {
	if len(req) < 6 {
		return [6]string{"1.0", "", "500", "malformed ZAP request", "", ""}
	}
	version, id := string(req[0]), string(req[1])
	deny := func(code, why string) [6]string {
		zap.refused.Add(1)
		return [6]string{version, id, code, why, "", ""}
	}
	if version != "1.0" {
		return deny("500", "unsupported ZAP version")
	}
	domain, mechanism := string(req[2]), string(req[5])
	if mechanism != "CURVE" || len(req) < 7 || len(req[6]) != 32 {
		return deny("400", "CURVE required")
	}
	zap.mu.Lock()
	p, ok := zap.policies[domain]
	zap.mu.Unlock()
	if !ok {
		return deny("400", "unknown domain")
	}
	who, ok := p.identify(zmq.Z85encode(string(req[6])))
	if !ok {
		return deny("400", "unknown key")
	}
	return [6]string{version, id, "200", "OK", who, ""}
}
