package client

import (
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/clover-sched/clover/internal/election"
	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/registry"
	"github.com/clover-sched/clover/internal/testenv"
	"github.com/clover-sched/clover/internal/transport"
	"github.com/clover-sched/clover/internal/wire"
	"github.com/clover-sched/clover/internal/zksession"
)

// TestRunServesFakeServers runs a client against a real ZooKeeper and two fake servers, s2 leading: the
// client sends its heartbeats to the leader, fires its local job, and runs what the leader dispatches.
func TestRunServesFakeServers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ZooKeeper")
	}
	z := testenv.StartZooKeeper(t)
	logger := slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sess, err := zksession.Connect(ctx, []string{z.Addr}, "/clover", 2*time.Second, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sess.Close)
	servers := map[string]*fakeServer{}
	for _, id := range []string{"s1", "s2"} {
		fs, endpoint := listenFake(t, id)
		servers[id] = fs
		reg, err := registry.Register(ctx, sess, registry.KindServers, registry.Member{ID: id, Endpoint: endpoint, StartedAt: time.Now()}, logger)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = reg.Close(context.Background()) })
	}
	term, err := election.New(sess, sess.Path("election"), "s2", nil, logger).Campaign(ctx)
	if err != nil {
		t.Fatal(err)
	}

	cfg := DefaultConfig()
	cfg.ID, cfg.LeaseRenew, cfg.StateDir = "c1", 50*time.Millisecond, t.TempDir()
	cfg.Insecure = true // the fake servers here are plain sockets; the integration tests run secure
	cfg.ZooKeeper.Servers, cfg.ZooKeeper.SessionTimeout = []string{z.Addr}, 2*time.Second
	cfg.Jobs = []JobConfig{{Name: "tick", Schedule: "@every 1s", Handler: "quick", Mode: string(job.ModeLocal)}}
	c, err := New(cfg, WithLogger(logger))
	if err != nil {
		t.Fatal(err)
	}
	c.Handle("quick", func(ctx context.Context, jc JobContext) error { return nil })
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()

	fromC1 := func(h *wire.Heartbeat) bool { return h.From == "c1" && h.Epoch == term.Epoch() }
	waitFor(t, func() bool { return len(received(servers["s2"], fromC1)) >= 2 })

	// The local job fires by itself.
	bothServers := func(keep func(wire.Message) bool) bool {
		return slices.ContainsFunc([]*fakeServer{servers["s1"], servers["s2"]}, func(fs *fakeServer) bool {
			return len(received(fs, keep)) > 0
		})
	}
	waitFor(t, func() bool {
		return bothServers(func(m wire.Message) bool {
			a, ok := m.(*wire.Ack)
			return ok && a.Local != nil && a.Local.Job == "tick"
		})
	})

	// The leader dispatches to the endpoint the client registered.
	clients := registry.NewCache(sess, registry.KindClients, logger)
	cacheCtx, stopCache := context.WithCancel(ctx)
	cacheDone := make(chan struct{})
	go func() {
		defer close(cacheDone)
		clients.Run(cacheCtx)
	}()
	defer func() {
		stopCache()
		<-cacheDone
	}()
	waitFor(t, func() bool { return len(clients.Members()) == 1 })
	out := transport.NewOutbox(logger, nil)
	defer out.Close()
	out.AddPeer("c1", transport.Peer{Endpoint: clients.Members()[0].Endpoint})
	frame, err := wire.Encode(&wire.Dispatch{
		Header: wire.Header{From: "s2", Epoch: term.Epoch()}, ExecID: "d@1", Job: "tick", Handler: "quick",
		Attempt: 1, Run: 1, AcceptBy: time.Now().Add(time.Minute),
	})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return out.Send("c1", frame) == nil })
	waitFor(t, func() bool {
		return bothServers(func(m wire.Message) bool { r, ok := m.(*wire.Result); return ok && r.ExecID == "d@1" && r.Run == 1 })
	})
}
