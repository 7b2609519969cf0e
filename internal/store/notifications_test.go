package store

import (
	"errors"
	"fmt"
	"reflect"
	"sync/atomic"
	"testing"
	"time"
)

func note(id, alert string, created time.Time) Notification {
	return Notification{
		ID: id, AlertKey: alert, Kind: NotifyProblem, Channel: ChannelEmail, To: "ops@example.com",
		Subject: "subject " + id, Body: "body " + id, CreatedAt: created,
	}
}

func TestEnqueueNotifications(t *testing.T) {
	t.Parallel()
	s := testStore(t)
	ctx := t.Context()

	a := note("a", "k1", t0.Add(1500*time.Microsecond))
	hook := note("b", "k2", t0.Add(time.Second))
	hook.Channel, hook.To, hook.Payload, hook.Subject, hook.Body = ChannelWebhook, "https://hooks.example.com/", []byte(`{"kind":"problem"}`), "", ""
	n, err := s.EnqueueNotifications(ctx, []Notification{a, hook, a})
	if err != nil || n != 2 {
		t.Fatalf("EnqueueNotifications(a, b, a) = %d, %v; want 2 new", n, err)
	}
	if n, err := s.EnqueueNotifications(ctx, []Notification{note("a", "k1", t0.Add(time.Hour)), note("c", "k1", t0.Add(2*time.Second))}); err != nil || n != 1 {
		t.Fatalf("EnqueueNotifications(a again, c) = %d, %v; want 1 new", n, err)
	}
	got, err := s.GetNotification(ctx, "a")
	want := a
	want.State, want.CreatedAt = NotificationPending, storedTime(a.CreatedAt)
	want.NextAttempt = want.CreatedAt
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("GetNotification(a) =\n%+v, %v\nwant\n%+v", got, err, want)
	}
	if got, err := s.GetNotification(ctx, "b"); err != nil || string(got.Payload) != `{"kind":"problem"}` {
		t.Errorf("GetNotification(b) = %+v, %v; want its payload", got, err)
	}

	for name, bad := range map[string]Notification{
		"no id":      {Kind: NotifyProblem, Channel: ChannelEmail, To: "x@example.com"},
		"no to":      {ID: "x", Kind: NotifyProblem, Channel: ChannelEmail},
		"channel":    {ID: "x", Kind: NotifyProblem, Channel: "sms", To: "x"},
		"kind":       {ID: "x", Kind: "hello", Channel: ChannelEmail, To: "x@example.com"},
		"state sent": {ID: "x", Kind: NotifyProblem, Channel: ChannelEmail, To: "x@example.com", State: NotificationSent},
	} {
		if _, err := s.EnqueueNotifications(ctx, []Notification{bad}); err == nil {
			t.Errorf("%s: EnqueueNotifications(%+v) succeeded", name, bad)
		}
	}

	list, err := s.ListNotifications(ctx, "k1", 0)
	if err != nil || len(list) != 2 || list[0].ID != "c" || list[1].ID != "a" {
		t.Errorf("ListNotifications(k1) = %+v, %v; want c, a", list, err)
	}
	if list, err := s.ListNotifications(ctx, "", 1); err != nil || len(list) != 1 || list[0].ID != "c" {
		t.Errorf("ListNotifications(all, 1) = %+v, %v; want c", list, err)
	}
	if c, err := s.CountNotifications(ctx, NotificationPending); err != nil || c != 3 {
		t.Errorf("CountNotifications(pending) = %d, %v; want 3", c, err)
	}
}

func TestNotificationLifecycle(t *testing.T) {
	t.Parallel()
	s := testStore(t)
	ctx := t.Context()

	later := note("later", "k", t0)
	later.NextAttempt = t0.Add(time.Minute)
	if _, err := s.EnqueueNotifications(ctx, []Notification{note("n2", "k", t0.Add(time.Second)), note("n1", "k", t0), later}); err != nil {
		t.Fatal(err)
	}
	due, err := s.DueNotifications(ctx, t0.Add(2*time.Second), 10)
	if err != nil || len(due) != 2 || due[0].ID != "n1" || due[1].ID != "n2" {
		t.Fatalf("DueNotifications = %+v, %v; want n1, n2", due, err)
	}
	if due, err := s.DueNotifications(ctx, t0.Add(time.Hour), 1); err != nil || len(due) != 1 || due[0].ID != "n1" {
		t.Errorf("DueNotifications(limit 1) = %+v, %v; want n1", due, err)
	}

	claim := func(id, owner string, now time.Time, want bool) {
		t.Helper()
		n, got, err := s.ClaimNotification(ctx, id, owner, now, now.Add(30*time.Second))
		if err != nil || got != want {
			t.Fatalf("ClaimNotification(%s, %s, %s) = %v, %v; want %v", id, owner, now.Format(time.TimeOnly), got, err, want)
		}
		if got && (n.ID != id || n.LeasedBy != owner || n.State != NotificationPending) {
			t.Fatalf("ClaimNotification(%s, %s) won %+v", id, owner, n)
		}
	}
	now := t0.Add(2 * time.Second)
	claim("n1", "m1", now, true)
	claim("n1", "m2", now, false)                     // held by m1
	claim("n1", "m2", now.Add(29*time.Second), false) // still held
	claim("later", "m1", now, false)                  // not due
	if n, _ := s.GetNotification(ctx, "n1"); n.LeasedBy != "m1" || !n.LeaseUntil.Equal(storedTime(now.Add(30*time.Second))) {
		t.Errorf("claimed n1 shows lease %s by %q", n.LeaseUntil, n.LeasedBy)
	}

	// m1 failed: attempt 1 is over; attempt 2 is due in 5s.
	if err := s.MarkNotificationRetry(ctx, "n1", 1, now.Add(5*time.Second), "connection refused"); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.GetNotification(ctx, "n1"); n.Attempts != 1 || n.LastError != "connection refused" || !n.LeaseUntil.IsZero() || n.State != NotificationPending {
		t.Errorf("after retry n1 = %+v", n)
	}
	claim("n1", "m2", now.Add(4*time.Second), false) // not due yet
	claim("n1", "m2", now.Add(5*time.Second), true)  // a new attempt: m1's lease on the first does not count
	// m2 hangs; its lease expires and m1 takes the attempt over.
	claim("n1", "m1", now.Add(34*time.Second), false)
	claim("n1", "m1", now.Add(36*time.Second), true)
	if err := s.MarkNotificationSent(ctx, "n1", now.Add(37*time.Second)); err != nil {
		t.Fatal(err)
	}
	n1, err := s.GetNotification(ctx, "n1")
	if err != nil || n1.State != NotificationSent || n1.Attempts != 2 || !n1.SentAt.Equal(storedTime(now.Add(37*time.Second))) {
		t.Errorf("sent n1 = %+v, %v", n1, err)
	}
	claim("n1", "m2", now.Add(time.Hour), false) // sent: nothing to claim
	if err := s.MarkNotificationSent(ctx, "n1", now); !errors.Is(err, ErrNotFound) {
		t.Errorf("MarkNotificationSent of a sent notification = %v, want ErrNotFound", err)
	}
	if err := s.MarkNotificationRetry(ctx, "n1", 9, now, "x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("MarkNotificationRetry of a sent notification = %v, want ErrNotFound", err)
	}
	if _, _, err := s.ClaimNotification(ctx, "nope", "m1", now, now.Add(time.Second)); !errors.Is(err, ErrNotFound) {
		t.Errorf("ClaimNotification(nope) = %v, want ErrNotFound", err)
	}

	claim("n2", "m1", now, true)
	if err := s.MarkNotificationFailed(ctx, "n2", "550 no such user"); err != nil {
		t.Fatal(err)
	}
	if n2, err := s.GetNotification(ctx, "n2"); err != nil || n2.State != NotificationFailed || n2.Attempts != 1 || n2.LastError != "550 no such user" {
		t.Errorf("failed n2 = %+v, %v", n2, err)
	}
	if due, err := s.DueNotifications(ctx, now.Add(time.Hour), 10); err != nil || len(due) != 1 || due[0].ID != "later" {
		t.Errorf("DueNotifications at the end = %+v, %v; want later", due, err)
	}
	for state, want := range map[string]int64{NotificationPending: 1, NotificationSent: 1, NotificationFailed: 1} {
		if c, err := s.CountNotifications(ctx, state); err != nil || c != want {
			t.Errorf("CountNotifications(%s) = %d, %v; want %d", state, c, err, want)
		}
	}
}

// TestClaimNotificationConcurrent: of many dispatchers claiming the same attempt at once, exactly one wins,
// also on FerretDB where a conditional update would let several through.
func TestClaimNotificationConcurrent(t *testing.T) {
	t.Parallel()
	s := testStore(t)
	const rounds, claimers = 8, 12
	for r := range rounds {
		id := fmt.Sprint("n", r)
		if _, err := s.EnqueueNotifications(t.Context(), []Notification{note(id, "k", t0)}); err != nil {
			t.Fatal(err)
		}
		var won atomic.Int32
		errs := make(chan error, claimers)
		for i := range claimers {
			go func() {
				_, ok, err := s.ClaimNotification(t.Context(), id, fmt.Sprint("m", i), t0, t0.Add(time.Minute))
				if ok {
					won.Add(1)
				}
				errs <- err
			}()
		}
		for range claimers {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		if w := won.Load(); w != 1 {
			t.Fatalf("round %d: %d claimers won, want 1", r, w)
		}
	}
}
