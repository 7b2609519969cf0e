package notify

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/clover-sched/clover/internal/store"
	"github.com/clover-sched/clover/internal/testenv"
)

func TestBackoff(t *testing.T) {
	t.Parallel()
	d := NewDispatcher(nil, nil)
	for attempts, want := range map[int]time.Duration{
		1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 9: 256 * time.Second, 10: 5 * time.Minute, 49: 5 * time.Minute,
	} {
		if got := d.backoff(attempts); got != want {
			t.Errorf("backoff(%d) = %s, want %s", attempts, got, want)
		}
	}
}

// TestDeliverOnce: a queued mail reaches the SMTP server once, as written, and is recorded sent.
func TestDeliverOnce(t *testing.T) {
	t.Parallel()
	st := &countingStore{Store: testStore(t)}
	sink := startSink(t, "127.0.0.1:0", func(s *smtpSink) { s.user, s.pass = "mon", "secret" })
	cfg := smtpConfig(t, sink.Addr)
	cfg.Username, cfg.Password = "mon", "secret"
	mailer, err := NewSMTPSender(cfg)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	run(t, NewDispatcher(st, map[string]Sender{store.ChannelEmail: mailer}, append(fastOptions(t, "m1"), WithRegisterer(reg))...))

	n := mailNote("n1", "ops@example.com", time.Now())
	if _, err := st.EnqueueNotifications(t.Context(), []store.Notification{n}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 10*time.Second, "the mail", func() bool { return sink.count() > 0 })
	st.waitPolls(t, 10)
	msgs := sink.messages()
	if len(msgs) != 1 {
		t.Fatalf("received %d mails, want 1", len(msgs))
	}
	m := msgs[0]
	if m.From != "clover@example.com" || len(m.To) != 1 || m.To[0] != "ops@example.com" || m.User != "mon" {
		t.Errorf("mail from %q to %v as %q", m.From, m.To, m.User)
	}
	if m.Subject != "[test] PROBLEM: client n1 is down" || m.Body != n.Body {
		t.Errorf("subject %q body\n%s", m.Subject, m.Body)
	}
	for _, w := range []string{"What:      client n1 is down", "Where:     client n1", "(for 3m)", "What to do:\n  Restart it."} {
		if !strings.Contains(m.Body, w) {
			t.Errorf("body lacks %q:\n%s", w, m.Body)
		}
	}
	testenv.WaitFor(t, 5*time.Second, "n1 recorded sent", func() bool { return getNote(t, st.Store, "n1").State == store.NotificationSent })
	if got := getNote(t, st.Store, "n1"); got.Attempts != 1 || got.SentAt.IsZero() || got.LastError != "" {
		t.Errorf("sent notification %+v", got)
	}
	if got := metricValue(t, reg, "clover_notifications_sent_total"); got != 1 {
		t.Errorf("clover_notifications_sent_total = %v, want 1", got)
	}
	testenv.WaitFor(t, 5*time.Second, "pending gauge 0", func() bool {
		return metricValue(t, reg, "clover_notifications_pending") == 0
	})
}

// metricValue is the sum of the series of the counter or gauge name in reg.
func metricValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		var v float64
		for _, m := range mf.GetMetric() {
			v += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
		return v
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// TestSMTPDownThenUp: while the mail server is down the mail is retried with growing waits; once it is
// back on the same port, the mail arrives, once.
func TestSMTPDownThenUp(t *testing.T) {
	t.Parallel()
	st := &countingStore{Store: testStore(t)}
	addr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)) // nothing listens there yet
	mailer, err := NewSMTPSender(smtpConfig(t, addr))
	if err != nil {
		t.Fatal(err)
	}
	run(t, NewDispatcher(st, map[string]Sender{store.ChannelEmail: mailer}, fastOptions(t, "m1")...))
	if _, err := st.EnqueueNotifications(t.Context(), []store.Notification{mailNote("n1", "ops@example.com", time.Now())}); err != nil {
		t.Fatal(err)
	}
	var retried store.Notification
	testenv.WaitFor(t, 10*time.Second, "three failed attempts", func() bool {
		retried = getNote(t, st.Store, "n1")
		return retried.Attempts >= 3
	})
	if retried.State != store.NotificationPending || !strings.Contains(retried.LastError, "refused") {
		t.Errorf("while down: %+v, want pending with a connection refused", retried)
	}
	if wait := retried.NextAttempt.Sub(time.Now()); wait > 200*time.Millisecond {
		t.Errorf("next attempt in %s, beyond the maximum backoff", wait)
	}

	sink := startSink(t, addr, nil)
	testenv.WaitFor(t, 10*time.Second, "the mail once the server is back", func() bool { return sink.count() > 0 })
	testenv.WaitFor(t, 5*time.Second, "n1 recorded sent", func() bool { return getNote(t, st.Store, "n1").State == store.NotificationSent })
	st.waitPolls(t, 20)
	if got := sink.count(); got != 1 {
		t.Errorf("received %d mails, want 1", got)
	}
	if got := getNote(t, st.Store, "n1"); got.Attempts <= retried.Attempts {
		t.Errorf("sent after %d attempts, want more than the %d failed ones", got.Attempts, retried.Attempts)
	}
}

// TestSlowSMTPDoesNotBlockWebhooks: a mail server that hangs holds up neither whoever queues nor the
// webhooks.
func TestSlowSMTPDoesNotBlockWebhooks(t *testing.T) {
	t.Parallel()
	st := &countingStore{Store: testStore(t)}
	release := make(chan struct{})
	sink := startSink(t, "127.0.0.1:0", func(s *smtpSink) { s.block = release })
	mailer, err := NewSMTPSender(smtpConfig(t, sink.Addr))
	if err != nil {
		t.Fatal(err)
	}
	var hooks atomic.Int32
	hookSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hooks.Add(1) }))
	defer hookSrv.Close()
	run(t, NewDispatcher(st, map[string]Sender{store.ChannelEmail: mailer, store.ChannelWebhook: NewWebhookSender(5*time.Second, true)},
		append(fastOptions(t, "m1"), WithWorkers(1))...))

	now := time.Now()
	if _, err := st.EnqueueNotifications(t.Context(), []store.Notification{mailNote("mail-1", "ops@example.com", now.Add(-time.Second))}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 10*time.Second, "the mail server to hang", func() bool { return sink.sending() == 1 })

	hook := store.Notification{ID: "hook-1", AlertKey: "a", Kind: store.NotifyProblem, Channel: store.ChannelWebhook, To: hookSrv.URL,
		Payload: WebhookPayload(AlertView{Kind: store.NotifyProblem, Alert: "a", Now: now}), CreatedAt: now}
	start := time.Now()
	if _, err := st.EnqueueNotifications(t.Context(), []store.Notification{hook, mailNote("mail-2", "dev@example.com", now)}); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("queueing took %s while the mail server hangs", took)
	}
	testenv.WaitFor(t, 5*time.Second, "the webhook while the mail server hangs", func() bool {
		return getNote(t, st.Store, "hook-1").State == store.NotificationSent
	})
	if hooks.Load() != 1 || sink.sending() != 1 || getNote(t, st.Store, "mail-1").State != store.NotificationPending {
		t.Fatalf("webhooks %d, mails in progress %d: want the webhook sent and the mail still hanging", hooks.Load(), sink.sending())
	}

	close(release)
	testenv.WaitFor(t, 10*time.Second, "both mails once the server answers", func() bool {
		return getNote(t, st.Store, "mail-1").State == store.NotificationSent && getNote(t, st.Store, "mail-2").State == store.NotificationSent
	})
	st.waitPolls(t, 10)
	if got := sink.count(); got != 2 {
		t.Errorf("received %d mails, want 2", got)
	}
	if got := hooks.Load(); got != 1 {
		t.Errorf("received %d webhooks, want 1", got)
	}
}

// TestGivesUp: a mail the server always refuses ends failed after MaxAttempts, with the server's answer.
func TestGivesUp(t *testing.T) {
	t.Parallel()
	st := testStore(t)
	sink := startSink(t, "127.0.0.1:0", func(s *smtpSink) { s.rejectRcpt = true })
	mailer, err := NewSMTPSender(smtpConfig(t, sink.Addr))
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	run(t, NewDispatcher(st, map[string]Sender{store.ChannelEmail: mailer},
		append(fastOptions(t, "m1"), WithMaxAttempts(3), WithBackoff(5*time.Millisecond, 10*time.Millisecond), WithRegisterer(reg))...))
	if _, err := st.EnqueueNotifications(t.Context(), []store.Notification{mailNote("n1", "nobody@example.com", time.Now())}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 10*time.Second, "n1 given up", func() bool { return getNote(t, st, "n1").State == store.NotificationFailed })
	got := getNote(t, st, "n1")
	if got.Attempts != 3 || !strings.Contains(got.LastError, "no such user here") || !got.SentAt.IsZero() {
		t.Errorf("failed notification %+v", got)
	}
	if sink.count() != 0 {
		t.Errorf("received %d mails, want none", sink.count())
	}
	if f, r := metricValue(t, reg, "clover_notifications_failed_total"), metricValue(t, reg, "clover_notification_retries_total"); f != 1 || r != 2 {
		t.Errorf("failed_total %v, retries_total %v; want 1, 2", f, r)
	}
}

// TestNoSender: a notification of a channel this dispatcher has no sender for is left pending, for a
// dispatcher that has one, and does not keep others waiting.
func TestNoSender(t *testing.T) {
	t.Parallel()
	st := testStore(t)
	var hooks atomic.Int32
	hookSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hooks.Add(1) }))
	defer hookSrv.Close()
	run(t, NewDispatcher(st, map[string]Sender{store.ChannelWebhook: NewWebhookSender(5*time.Second, true)},
		append(fastOptions(t, "m1"), WithMaxAttempts(2), WithBackoff(5*time.Millisecond, 10*time.Millisecond))...))
	now := time.Now()
	hook := store.Notification{ID: "hook-1", AlertKey: "a", Kind: store.NotifyProblem, Channel: store.ChannelWebhook, To: hookSrv.URL,
		Payload: []byte(`{}`), CreatedAt: now}
	if _, err := st.EnqueueNotifications(t.Context(), []store.Notification{mailNote("mail-1", "ops@example.com", now.Add(-time.Second)), hook}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 10*time.Second, "the webhook sent", func() bool {
		return getNote(t, st, "hook-1").State == store.NotificationSent
	})
	testenv.Poll(200*time.Millisecond, func() bool { return false }) // more polls
	if got := getNote(t, st, "mail-1"); got.State != store.NotificationPending || got.Attempts != 0 {
		t.Errorf("mail without a sender here %+v: want it pending, untouched", got)
	}
}

// TestTwoDispatchers: two monitors' dispatchers on one store deliver every mail exactly once.
func TestTwoDispatchers(t *testing.T) {
	t.Parallel()
	st := &countingStore{Store: testStore(t)}
	sink := startSink(t, "127.0.0.1:0", nil)
	for _, owner := range []string{"m1", "m2"} {
		mailer, err := NewSMTPSender(smtpConfig(t, sink.Addr))
		if err != nil {
			t.Fatal(err)
		}
		run(t, NewDispatcher(st, map[string]Sender{store.ChannelEmail: mailer}, append(fastOptions(t, owner), WithPollInterval(2*time.Millisecond))...))
	}
	const n = 30
	now := time.Now()
	var queued []store.Notification
	for i := range n {
		queued = append(queued, mailNote(fmt.Sprint("n", i), fmt.Sprintf("u%d@example.com", i), now))
	}
	// Queued twice, as two monitors that saw the same problems would.
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			if _, err := st.EnqueueNotifications(context.Background(), queued); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	testenv.WaitFor(t, 20*time.Second, "every mail recorded sent", func() bool {
		c, err := st.CountNotifications(t.Context(), store.NotificationSent)
		return err == nil && c == n
	})
	st.waitPolls(t, 20)
	perRcpt := map[string]int{}
	for _, m := range sink.messages() {
		perRcpt[strings.Join(m.To, ",")]++
	}
	for i := range n {
		if to := fmt.Sprintf("u%d@example.com", i); perRcpt[to] != 1 {
			t.Errorf("%s received %d mails, want 1", to, perRcpt[to])
		}
	}
	if got := sink.count(); got != n {
		t.Errorf("received %d mails, want %d", got, n)
	}
}
