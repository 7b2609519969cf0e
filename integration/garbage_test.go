package integration

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang/snappy"

	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/testenv"
	"github.com/clover-sched/clover/internal/wire"
)

// Garbage, truncated, oversized and forged frames sent to every ZeroMQ endpoint are dropped, and the
// cluster keeps firing every second exactly once.
func TestGarbageFramesAreDropped(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	c, l, start := startTicking(t, Options{Servers: 2, Clients: 2})

	valid, err := wire.Encode(&wire.Result{
		Header: wire.Header{From: "intruder", SentAt: time.Now()},
		ExecID: "tick@2000-01-01T00:00:00Z", Job: "tick", Attempt: 1,
		Result: job.Result{Status: job.StateSucceeded},
	})
	if err != nil {
		t.Fatal(err)
	}
	// A dispatch from epoch 1, older than any real leader here: a client must ignore it.
	forged, err := wire.Encode(&wire.Dispatch{
		Header: wire.Header{From: "intruder", Epoch: 0, SentAt: time.Now()},
		ExecID: "forged@2000-01-01T00:00:00Z", Job: "forged", Handler: job.HandlerShell,
		Params:   map[string]string{"command": fmt.Sprintf(`echo "forged@x intruder" >> %s`, l.path)},
		AcceptBy: time.Now().Add(time.Hour), Attempt: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 512)
	for i := range random {
		random[i] = byte(rng.UintN(256))
	}
	badSnappy := append([]byte("CLV\x01\x03"), 0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2, 3)
	bomb := append([]byte("CLV\x01\x03"), snappy.Encode(nil, bytes.Repeat([]byte{'A'}, 8<<20))...)
	frames := map[string][]byte{
		"empty":         {},
		"random":        random,
		"magic only":    []byte("CLV"),
		"truncated":     valid[:len(valid)/2],
		"bad version":   append([]byte("CLV\x09"), valid[4:]...),
		"unknown kind":  append([]byte("CLV\x01\x63"), valid[5:]...),
		"bad snappy":    badSnappy,
		"snappy bomb":   bomb,
		"bad json":      append([]byte("CLV\x01\x03"), snappy.Encode(nil, []byte(`{"exec_id": 12`))...),
		"forged old":    forged,
		"oversized":     bytes.Repeat([]byte{'x'}, 5<<20),
		"wrong kind":    forged, // a dispatch sent to a server
		"valid unknown": valid,  // a result for an execution that never existed
	}

	// The frames come from authenticated peers, the worst case: a client holding an admitted key (to the
	// servers) and a holder of the servers' key (to the clients). Unauthenticated peers do not get as far
	// as the decoder (TestUnauthenticatedPeersCannotSendFrames).
	toServers, toClients := c.peerOutboxes("intruder")
	endpoints := map[string]string{}
	for _, m := range append(slices.Clone(c.Servers), c.Clients...) {
		endpoints[m.ID] = m.Listen
	}
	for id := range endpoints {
		out := toServers
		if strings.HasPrefix(id, "client") {
			out = toClients
		}
		testenv.WaitFor(t, 10*time.Second, "connection to "+id, func() bool { return out.Send(id, random) == nil })
		for name, f := range frames {
			if name == "oversized" {
				continue // sent last: ZeroMQ drops the connection of a peer that sends one
			}
			if err := out.Send(id, f); err != nil {
				t.Fatalf("send %s frame to %s: %v", name, id, err)
			}
		}
		_ = out.Send(id, frames["oversized"])
	}

	testenv.WaitFor(t, 10*time.Second, "servers to count dropped frames", func() bool {
		for _, s := range c.Servers {
			if v, err := c.Metric(s, "clover_frames_dropped_total"); err != nil || v < 5 {
				return false
			}
		}
		return true
	})
	end := time.Now().Add(4 * time.Second).Truncate(time.Second)
	l.waitComplete(t, c, start, end, 30*time.Second)
	for _, m := range append(slices.Clone(c.Servers), c.Clients...) {
		if m.Proc.Exited() {
			t.Errorf("%s exited:\n%s", m.ID, m.Log(30))
		}
	}
	for _, r := range l.runs(t) {
		if strings.HasPrefix(r.execID, "forged") {
			t.Errorf("a client ran the forged dispatch from an old epoch")
		}
	}
}
