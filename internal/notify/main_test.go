package notify

import (
	"context"
	"crypto/rand"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/clover-sched/clover/internal/store"
	"github.com/clover-sched/clover/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, testenv.KeptGoroutines()) }

// testStore opens a store of the test's own: on CLOVER_TEST_MONGO_URI if set, else on a FerretDB started
// for the test.
func testStore(t *testing.T) *store.Store {
	t.Helper()
	uri := os.Getenv("CLOVER_TEST_MONGO_URI")
	if uri == "" {
		uri = testenv.StartFerretDB(t).URI
	}
	st, err := store.Open(t.Context(), uri, "t_notify_"+rand.Text()[:10])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close(context.Background()) })
	return st
}

// countingStore counts the dispatcher's polls, so that a test can let a few more go by.
type countingStore struct {
	*store.Store
	polls atomic.Int64
}

func (c *countingStore) DueNotifications(ctx context.Context, now time.Time, limit int) ([]store.Notification, error) {
	c.polls.Add(1)
	return c.Store.DueNotifications(ctx, now, limit)
}

// waitPolls waits until the dispatcher has polled n more times.
func (c *countingStore) waitPolls(t *testing.T, n int64) {
	t.Helper()
	target := c.polls.Load() + n
	testenv.WaitFor(t, 10*time.Second, strconv.FormatInt(n, 10)+" more polls", func() bool { return c.polls.Load() >= target })
}

// run runs d until the test ends.
func run(t *testing.T, d *Dispatcher) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

// fastOptions make a dispatcher poll and retry in milliseconds.
func fastOptions(t *testing.T, owner string) []Option {
	return []Option{
		WithLogger(slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))), WithOwner(owner), WithPollInterval(10 * time.Millisecond), WithBackoff(20*time.Millisecond, 200*time.Millisecond),
		WithSendTimeout(10 * time.Second),
	}
}

func smtpConfig(t *testing.T, addr string) SMTPConfig {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultSMTPConfig()
	cfg.Host, cfg.From, cfg.Timeout = host, "Clover <clover@example.com>", 10*time.Second
	if cfg.Port, err = strconv.Atoi(port); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func getNote(t *testing.T, st *store.Store, id string) store.Notification {
	t.Helper()
	n, err := st.GetNotification(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func mailNote(id, to string, created time.Time) store.Notification {
	subject, body := RenderAlert(AlertView{
		Kind: store.NotifyProblem, Alert: "client-down/" + id, What: "client " + id + " is down", Where: "client " + id,
		Since: created.Add(-3 * time.Minute), WhatToDo: "Restart it.", Cluster: "test", Now: created,
	})
	return store.Notification{
		ID: id, AlertKey: "client-down/" + id, Kind: store.NotifyProblem, Channel: store.ChannelEmail, To: to,
		Subject: subject, Body: body, CreatedAt: created,
	}
}
