package server

import (
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/registry"
	"github.com/clover-sched/clover/internal/store"
	"github.com/clover-sched/clover/internal/testenv"
	"github.com/clover-sched/clover/internal/zksession"
)

// `clover server split-store` moves a store an earlier version made, and only while no server runs.
func TestSplitStoreWaitsForEveryServerToStop(t *testing.T) {
	t.Parallel()
	z, f := testenv.StartZooKeeper(t), testenv.StartFerretDB(t)
	ctx := t.Context()
	db := "split_" + rand.Text()[:8]
	// What an earlier version wrote: an execution in the open set of the store's own database.
	e := job.Execution{ID: "j@2030-01-02T03:04:05Z", Job: "j", Trigger: job.TriggerSchedule, ScheduledAt: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC), Epoch: 1}
	raw, err := mongo.Connect(options.Client().ApplyURI(f.URI))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = raw.Disconnect(context.Background()) })
	if _, err := raw.Database(db).Collection("open_executions").InsertOne(ctx, e); err != nil {
		t.Fatal(err)
	}

	cfg := DefaultConfig()
	cfg.Insecure, cfg.ZooKeeper.Servers, cfg.ZooKeeper.Root = true, []string{z.Addr}, "/split"
	cfg.Mongo.URI, cfg.Mongo.Database = f.URI, db
	s, err := New(cfg, WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	sess, err := zksession.Connect(ctx, []string{z.Addr}, "/split", 5*time.Second, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sess.Close)
	// A split under way (its node held): a second refuses, and so does a server's start.
	if err := sess.EnsurePath(ctx, sess.Root()); err != nil {
		t.Fatal(err)
	}
	if _, err := sess.Conn().Create(sess.Path(splitLock), nil, zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SplitStore(ctx); err == nil || !strings.Contains(err.Error(), "another split") {
		t.Fatalf("split while another holds the node: %v; want it refused", err)
	}
	if err := refuseDuringSplit(sess); err == nil {
		t.Fatal("a server may start while a split is under way")
	}
	if err := sess.Conn().Delete(sess.Path(splitLock), -1); err != nil {
		t.Fatal(err)
	}
	if err := refuseDuringSplit(sess); err != nil {
		t.Fatalf("with no split under way: %v", err)
	}

	reg, err := registry.Register(ctx, sess, registry.KindServers, registry.Member{ID: "server-1", Endpoint: "tcp://127.0.0.1:5555",
		APIAddr: "127.0.0.1:8080", StartedAt: time.Now()}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.SplitStore(ctx); err == nil || !strings.Contains(err.Error(), "server-1") {
		t.Fatalf("split with server-1 running: %v; want it refused, naming server-1", err)
	}
	st, err := store.Open(ctx, f.URI, db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close(context.Background())
	if st.Split() {
		t.Fatal("the store was split while a server ran")
	}
	// That server goes on with its store (it is paused, say, and counted gone); once the store is split it
	// stops rather than read and write where the split moved things from.
	stale := &Server{store: st, logger: slog.New(slog.DiscardHandler)}
	watched := make(chan error, 1)
	go func() { watched <- stale.watchLayout(ctx) }()

	if err := reg.Close(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-watched:
		t.Fatalf("a server stopped for a split before any: %v", err)
	default:
	}
	if moved, err := s.SplitStore(ctx); err != nil || moved != 1 {
		t.Fatalf("split with no server running = %d, %v; want 1 document moved", moved, err)
	}
	select {
	case err := <-watched:
		if !errors.Is(err, errStoreSplit) {
			t.Fatalf("the server that opened the store before the split ended with %v, want errStoreSplit", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the server that opened the store before the split still runs 30 s after it")
	}
	after, err := store.Open(ctx, f.URI, db)
	if err != nil {
		t.Fatal(err)
	}
	defer after.Close(context.Background())
	open, _, err := after.ReadOpenSet(ctx)
	if err != nil || !after.Split() || len(open) != 1 || open[0].ID != e.ID {
		t.Fatalf("after the split: split %v, open set %v, %v; want %s in it", after.Split(), open, err, e.ID)
	}
}
