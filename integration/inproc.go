package integration

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/clover-sched/clover/client"
	"github.com/clover-sched/clover/internal/config"
	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/testenv"
	springconfig "github.com/clover-sched/clover/spring-like-config"
)

// AppClient is a client embedded in the test process, as an application embeds the client library: the
// test calls its API (RequestRun) and its Go handlers record what ran. Servers, ZooKeeper and FerretDB
// are the cluster's real processes.
type AppClient struct {
	*client.Client
	ID       string
	SpoolDir string
	log      string

	cancel context.CancelFunc
	done   chan error
}

// AppClientOptions shape an AppClient.
type AppClientOptions struct {
	ID       string
	Handlers map[string]client.HandlerFunc
	SpoolDir string        // default: a directory of the cluster's, the same for every start of ID
	After    time.Duration // fallback.after; default 1s
	Capacity int           // default 64
	Declare  []job.Spec    // jobs the client declares
	// Register are declarations in code (springconfig: jobs with their Go handlers, batches of them).
	Register []springconfig.Declarer
}

// StartAppClient starts an embedded client with the fallback queue on the cluster's database, and waits
// until it is registered. Stop it with Stop; it is stopped when the test ends.
func (c *Cluster) StartAppClient(opts AppClientOptions) *AppClient {
	c.t.Helper()
	if opts.SpoolDir == "" {
		opts.SpoolDir = filepath.Join(c.Dir, opts.ID+"-spool")
	}
	if opts.After == 0 {
		opts.After = time.Second
	}
	if opts.Capacity == 0 {
		opts.Capacity = 64
	}
	c.ClientKeys(opts.ID)
	cfg := client.DefaultConfig()
	cfg.ID = opts.ID
	cfg.KeysDir = c.Keys
	cfg.Listen = fmt.Sprintf("tcp://127.0.0.1:%d", testenv.FreePort(c.t))
	cfg.ZooKeeper = config.ZooKeeper{Servers: c.ZooKeeperServers(), Root: c.Root, SessionTimeout: c.opts.SessionTimeout}
	cfg.Capacity = opts.Capacity
	cfg.StateDir = filepath.Join(c.Dir, "state") // the same for every start of ID, as the spool
	cfg.Fallback = client.FallbackConfig{MongoURI: c.Mongo.URI, Database: c.DB, SpoolDir: opts.SpoolDir, SpoolMaxBytes: 16 << 20, After: opts.After}
	logPath := filepath.Join(c.Dir, opts.ID+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		c.t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(&syncWriter{w: f}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cl, err := client.New(cfg, client.WithLogger(logger))
	if err != nil {
		c.t.Fatalf("client %s: %v", opts.ID, err)
	}
	for name, h := range opts.Handlers {
		cl.Handle(name, h)
	}
	for _, spec := range opts.Declare {
		if err := cl.Declare(spec); err != nil {
			c.t.Fatalf("client %s: declare %s: %v", opts.ID, spec.Name, err)
		}
	}
	if len(opts.Register) > 0 {
		if err := springconfig.Register(context.Background(), cl, opts.Register...); err != nil {
			c.t.Fatalf("client %s: %v", opts.ID, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &AppClient{Client: cl, ID: opts.ID, SpoolDir: opts.SpoolDir, log: logPath, cancel: cancel, done: make(chan error, 1)}
	go func() { a.done <- cl.Run(ctx) }()
	c.t.Cleanup(func() {
		a.Stop()
		f.Close()
	})
	c.apps = append(c.apps, a)
	return a
}

// Stop stops the client, as a restart of its process would (its runs are abandoned, its spool stays).
func (a *AppClient) Stop() {
	a.cancel()
	select {
	case <-a.done:
	case <-time.After(10 * time.Second):
	}
}

// Log returns the tail of the client's log.
func (a *AppClient) Log(lines int) string { return testenv.TailFile(a.log, lines) }

type syncWriter struct {
	mu sync.Mutex
	w  *os.File
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
