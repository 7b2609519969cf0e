package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/clover-sched/clover/client"
	"github.com/clover-sched/clover/integration"
	"github.com/clover-sched/clover/internal/config"
	"github.com/clover-sched/clover/server"
)

// sessionTimeout is the ZooKeeper session timeout of every member, the harness's default.
const sessionTimeout = 1500 * time.Millisecond

// apiToken is the admin token of the cluster under test (scenarios run one cluster at a time).
var apiToken string

// insecure runs the clusters with insecure: true (-insecure).
var insecure bool

// startCluster starts a cluster for one scenario, configured as in production rather than for tests:
// members log at info (the harness's debug is for tests that read logs) and servers keep their default
// ack timeout and accept window (the harness shortens them so that tests of lost dispatches end sooner;
// under load, shorter ones mean more re-sends).
func startCluster(t *T, opts integration.Options) *integration.Cluster {
	def := server.DefaultConfig()
	// Servers at the harness's short session (failover is measured against it); clients at their own
	// default, as deployed: a shorter one only makes a loaded client lose its session sooner.
	opts.SessionTimeout, opts.ClientSessionDefault = sessionTimeout, true
	opts.ServerEnv = append(opts.ServerEnv, "CLOVER_LOG_LEVEL=info",
		"CLOVER_ACK_TIMEOUT="+def.AckTimeout.String(), "CLOVER_ACCEPT_WINDOW="+def.AcceptWindow.String())
	opts.ClientEnv = append(opts.ClientEnv, "CLOVER_LOG_LEVEL=info")
	// CLOVER_BENCH_SERVER_ENV: more settings for every server, to profile one under a bench
	// (CLOVER_DEBUG_LISTEN=127.0.0.1:6061; one server at a time can have that address).
	opts.ServerEnv = append(opts.ServerEnv, strings.Fields(os.Getenv("CLOVER_BENCH_SERVER_ENV"))...)
	if insecure {
		opts.ServerEnv = append(opts.ServerEnv, "CLOVER_INSECURE=true")
		opts.ClientEnv = append(opts.ClientEnv, "CLOVER_INSECURE=true")
	}
	t.Progressf("starting ZooKeeper, FerretDB, %d server(s), %d client process(es)", opts.Servers, opts.Clients)
	c := integration.StartCluster(t, opts)
	apiToken = c.Tokens.Admin
	t.Logf("cluster up in %s", c.Dir)
	return c
}

// startEmbeddedClients runs n Clover clients inside this process, each serving handler with h, and waits
// until the servers see them. They stop when t's scope ends, before the cluster under them.
func startEmbeddedClients(t *T, c *integration.Cluster, n int, handler string, h client.HandlerFunc) []*client.Client {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			fmt.Fprintf(t.r.out, "clover-bench: %s: embedded clients did not stop within 15s\n", t.name)
		}
	})
	clients := make([]*client.Client, n)
	for i := range n {
		cfg := client.Config{
			ID:     fmt.Sprintf("%s-embedded-%d", t.name, i+1),
			Listen: "tcp://127.0.0.1:0",
			ZooKeeper: config.ZooKeeper{
				Servers: c.ZooKeeperServers(), Root: c.Root, SessionTimeout: client.DefaultConfig().ZooKeeper.SessionTimeout,
			},
			KeysDir:     c.Keys,
			Insecure:    insecure,
			StateDir:    filepath.Join(c.Dir, "state"), // the cluster's: a journal from an earlier run would report into this one
			Capacity:    4096,
			ResultRetry: time.Second,
			LeaseRenew:  2 * time.Second,
			LogLevel:    "info",
		}
		c.ClientKeys(cfg.ID)
		cl, err := client.New(cfg, client.WithLogger(t.Logger()))
		if err != nil {
			t.Fatalf("embedded client: %v", err)
		}
		cl.Handle(handler, h)
		clients[i] = cl
		wg.Go(func() {
			if err := cl.Run(ctx); err != nil {
				fmt.Fprintf(t.r.out, "clover-bench: %s: embedded client %s: %v\n", t.name, cfg.ID, err)
			}
		})
	}
	c.WaitClients(n, 30*time.Second)
	return clients
}

// clientTotals adds up the embedded clients' counters.
type clientTotals struct{ accepted, refused, duplicates, staleEpoch, succeeded, failed int64 }

func totals(clients []*client.Client) clientTotals {
	var tot clientTotals
	for _, c := range clients {
		s := c.Stats()
		tot.accepted += s.Accepted.Load()
		tot.refused += s.Refused.Load()
		tot.duplicates += s.Duplicates.Load()
		tot.staleEpoch += s.StaleEpoch.Load()
		tot.succeeded += s.Succeeded.Load()
		tot.failed += s.Failed.Load()
	}
	return tot
}

func (a clientTotals) minus(b clientTotals) clientTotals {
	return clientTotals{a.accepted - b.accepted, a.refused - b.refused, a.duplicates - b.duplicates,
		a.staleEpoch - b.staleEpoch, a.succeeded - b.succeeded, a.failed - b.failed}
}

// snapshot is the leader's state at one instant: its metrics and its resident memory.
type snapshot struct {
	at  time.Time
	m   sample
	rss int64
	cpu cpuSample
}

func takeSnapshot(t *T, m *integration.Member) snapshot {
	s, err := scrape(context.Background(), m.API)
	if err != nil {
		t.Fatalf("%v", err)
	}
	r, err := rss(m.Proc.Pid())
	if err != nil {
		t.Fatalf("memory of %s: %v", m.ID, err)
	}
	return snapshot{at: time.Now(), m: s, rss: r, cpu: sampleCPU()}
}

// waitFiring waits until the leader fires at least 90% of want executions a second over the last two
// seconds (every job is loaded: through the API at once, from the store at the next resync), or until
// timeout. It reports whether the rate was reached.
func waitFiring(t *T, m *integration.Member, want float64, timeout time.Duration) bool {
	type point struct {
		at    time.Time
		fires float64
	}
	var hist []point
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		s, err := scrape(context.Background(), m.API)
		if err != nil {
			t.Fatalf("%v", err)
		}
		now := time.Now()
		hist = append(hist, point{now, s.sum("clover_fires_total")})
		for len(hist) > 2 && now.Sub(hist[1].at) >= 2*time.Second {
			hist = hist[1:]
		}
		if span := now.Sub(hist[0].at); span >= 2*time.Second {
			if (hist[len(hist)-1].fires-hist[0].fires)/span.Seconds() >= 0.9*want {
				return true
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	return false
}

// windowStats is what window saw of the leader while it waited.
type windowStats struct {
	peakRSS     int64
	maxInflight float64 // clover_inflight_executions, sampled every second
	maxWaiting  float64 // clover_waiting_executions, sampled every second
}

// window waits d, sampling the leader's memory and backlog gauges every second.
func window(t *T, m *integration.Member, d time.Duration) windowStats {
	var ws windowStats
	end := time.Now().Add(d)
	for {
		if r, err := rss(m.Proc.Pid()); err == nil && r > ws.peakRSS {
			ws.peakRSS = r
		}
		if s, err := scrape(context.Background(), m.API); err == nil {
			ws.maxInflight = max(ws.maxInflight, s.sum("clover_inflight_executions"))
			ws.maxWaiting = max(ws.maxWaiting, s.sum("clover_waiting_executions"))
		}
		left := time.Until(end)
		if left <= 0 {
			return ws
		}
		time.Sleep(min(left, time.Second))
	}
}
