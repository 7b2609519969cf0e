package store

import (
	"context"
	"slices"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/clover-sched/clover/internal/fallback"
	"github.com/clover-sched/clover/internal/job"
)

func entry(client string, boot, seq int64, kind fallback.Kind, execID string) fallback.Entry {
	return fallback.Entry{
		ID: fallback.EntryID(client, boot, seq), Client: client, Boot: boot, Seq: seq, At: t0.Add(time.Duration(seq) * time.Second),
		Kind: kind, ExecID: execID, Payload: []byte("frame"), State: fallback.StateWaiting,
	}
}

func TestFallbackKeepsEachClientsOrderAndSettlesOnce(t *testing.T) {
	t.Parallel()
	s := testStore(t)
	ctx := t.Context()
	// Appended out of order, across two boots of client a and one of b; the spool of a is moved twice.
	spool := []fallback.Entry{entry("a", 2, 1, fallback.KindResult, "j@1"), entry("a", 1, 2, fallback.KindRequest, "")}
	for range 2 {
		if err := s.AppendFallback(ctx, spool); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AppendFallback(ctx, []fallback.Entry{entry("b", 1, 1, fallback.KindAck, "k@1"), entry("a", 1, 1, fallback.KindResult, "j@0")}); err != nil {
		t.Fatal(err)
	}
	got, err := s.WaitingFallback(ctx, 10, nil)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range got {
		ids = append(ids, e.ID)
	}
	want := []string{fallback.EntryID("a", 1, 1), fallback.EntryID("a", 1, 2), fallback.EntryID("a", 2, 1), fallback.EntryID("b", 1, 1)}
	if !slices.Equal(ids, want) {
		t.Fatalf("waiting entries %v, want each client's in order %v", ids, want)
	}
	if string(got[0].Payload) != "frame" || got[0].Kind != fallback.KindResult || got[0].ExecID != "j@0" {
		t.Fatalf("entry read back as %+v", got[0])
	}
	// A client whose entries are stuck is read past.
	got, err = s.WaitingFallback(ctx, 10, []string{"a"})
	if err != nil || len(got) != 1 || got[0].Client != "b" {
		t.Fatalf("waiting entries without client a: %+v, %v", got, err)
	}

	waitingFor, err := s.FallbackWaitingFor(ctx, []string{"j@1", "k@1", "x@1"})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(waitingFor)
	if !slices.Equal(waitingFor, []string{"j@1", "k@1"}) {
		t.Fatalf("FallbackWaitingFor = %v", waitingFor)
	}

	ok, err := s.SettleFallback(ctx, want[0], fallback.StateApplied, "server-1", 3, "", t0.Add(time.Hour))
	if err != nil || !ok {
		t.Fatalf("first settle = %v, %v", ok, err)
	}
	if ok, err := s.SettleFallback(ctx, want[0], fallback.StateApplied, "server-2", 4, "", t0.Add(2*time.Hour)); err != nil || ok {
		t.Fatalf("second settle = %v, %v; want false: it was settled already", ok, err)
	}
	if _, err := s.SettleFallback(ctx, want[3], fallback.StateRejected, "server-1", 3, "job k does not exist", t0); err != nil {
		t.Fatal(err)
	}
	st, err := s.FallbackStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Waiting != 2 || st.Applied != 1 || st.Rejected != 1 || st.WaitingByClient["a"] != 2 || len(st.WaitingByClient) != 1 {
		t.Fatalf("status %+v", st)
	}
	if !st.OldestWaiting.Equal(t0.Add(time.Second)) || st.LastAppliedBy != "server-1" || !st.LastAppliedAt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("status times %+v", st)
	}
}

func TestFallbackEntriesWrittenBySomeoneElseAreRejectedNotFatal(t *testing.T) {
	t.Parallel()
	s := testStore(t)
	ctx := t.Context()
	if _, err := s.fallback.InsertMany(ctx, []any{
		bson.D{{Key: "_id", Value: "x/1"}, {Key: "client", Value: "x"}, {Key: "state", Value: "waiting"}, {Key: "seq", Value: "not a number"}},
		bson.D{{Key: "_id", Value: "x/2"}, {Key: "client", Value: "x"}, {Key: "state", Value: "waiting"}, {Key: "seq", Value: 2}, {Key: "kind", Value: "poem"}, {Key: "payload", Value: []byte("x")}},
		bson.D{{Key: "_id", Value: 42}, {Key: "client", Value: "x"}, {Key: "state", Value: "waiting"}}, // cannot be settled
	}); err != nil {
		t.Fatal(err)
	}
	got, err := s.WaitingFallback(ctx, 10, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("got %d entries, want the two with string ids, rejected", len(got))
	}
	for _, e := range got {
		if e.State != fallback.StateRejected || e.Error == "" || e.ID == "" || e.Client != "x" {
			t.Errorf("entry %+v: want rejected with a reason and its id", e)
		}
	}
	if err := s.AppendFallback(ctx, []fallback.Entry{{ID: "y", Client: "y", Seq: 1, Kind: "poem", Payload: []byte("x")}}); err == nil {
		t.Fatal("AppendFallback took an entry of an unknown kind")
	}
}

func TestAlertOpensOnceAndClears(t *testing.T) {
	t.Parallel()
	s := testStore(t)
	ctx := t.Context()
	a := Alert{Key: "fallback-queue", Kind: "fallback", Summary: "3 entries wait", Since: t0, RaisedBy: "server-1"}
	if opened, err := s.RaiseAlert(ctx, a, t0); err != nil || !opened {
		t.Fatalf("first raise = %v, %v", opened, err)
	}
	a.Summary = "5 entries wait"
	if opened, err := s.RaiseAlert(ctx, a, t0.Add(time.Minute)); err != nil || opened {
		t.Fatalf("second raise = %v, %v; want an update of the open alert", opened, err)
	}
	got, err := s.GetAlert(ctx, a.Key)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != AlertOpen || got.Summary != "5 entries wait" || !got.RaisedAt.Equal(t0) || !got.UpdatedAt.Equal(t0.Add(time.Minute)) {
		t.Fatalf("alert %+v", got)
	}
	if cleared, err := s.ClearAlert(ctx, a.Key, t0.Add(time.Hour)); err != nil || !cleared {
		t.Fatalf("clear = %v, %v", cleared, err)
	}
	if cleared, _ := s.ClearAlert(ctx, a.Key, t0.Add(time.Hour)); cleared {
		t.Fatal("cleared twice")
	}
	if opened, err := s.RaiseAlert(ctx, a, t0.Add(2*time.Hour)); err != nil || !opened {
		t.Fatalf("raise after clear = %v, %v; want a new episode", opened, err)
	}
	if _, err := s.RaiseAlert(ctx, Alert{Key: "other", Kind: "x", Where: "client-1"}, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ClearAlert(ctx, "other", t0); err != nil {
		t.Fatal(err)
	}
	open, err := s.ListAlerts(ctx, AlertOpen)
	if err != nil || len(open) != 1 || open[0].Key != a.Key {
		t.Fatalf("open alerts %+v, %v; want only %s", open, err, a.Key)
	}
	all, err := s.ListAlerts(ctx, "")
	if err != nil || len(all) != 2 || all[1].Where != "client-1" && all[0].Where != "client-1" {
		t.Fatalf("all alerts %+v, %v", all, err)
	}
}

// A document the database refuses is told apart from a database that does not answer.
func TestIsRefusedWrite(t *testing.T) {
	t.Parallel()
	s := testStore(t)
	ctx := t.Context()
	_, err := s.InsertExecutions(ctx, []job.Execution{{ID: "j@1", Job: "j", Params: map[string]string{"$bad": "x"}}})
	if err == nil {
		t.Skip("this database stores a parameter named $bad")
	}
	if !IsRefusedWrite(err) {
		t.Errorf("IsRefusedWrite(%v) = false, want true", err)
	}
	if _, err := s.InsertExecutions(ctx, []job.Execution{{ID: "j@2", Job: "j"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.InsertExecutions(ctx, []job.Execution{{ID: "j@2", Job: "j"}}); err != nil || IsRefusedWrite(err) {
		t.Errorf("a duplicate is not a refusal: %v", err)
	}
	if IsRefusedWrite(context.DeadlineExceeded) {
		t.Error("a timeout is not a refusal")
	}
}

func TestPruneKeepsWhatWaitsOrStillMatters(t *testing.T) {
	t.Parallel()
	s := testStore(t)
	ctx := t.Context()
	if err := s.AppendFallback(ctx, []fallback.Entry{entry("p", 1, 1, fallback.KindResult, "j@1"), entry("p", 1, 2, fallback.KindResult, "j@2"), entry("p", 1, 3, fallback.KindResult, "j@3")}); err != nil {
		t.Fatal(err)
	}
	for seq, at := range map[int64]time.Time{1: t0, 2: t0.Add(48 * time.Hour)} {
		if _, err := s.SettleFallback(ctx, fallback.EntryID("p", 1, seq), fallback.StateApplied, "s", 1, "", at); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.PruneFallback(ctx, t0.Add(24*time.Hour)); err != nil || n != 1 {
		t.Fatalf("PruneFallback = %d, %v; want the one applied before the cut", n, err)
	}
	left, err := s.FallbackEntries(ctx, "p")
	if err != nil || len(left) != 2 || left[0].Seq != 2 || left[1].State != fallback.StateWaiting {
		t.Fatalf("left %+v, %v; want the recent applied one and the waiting one", left, err)
	}

	note := func(id, alert string) Notification {
		return Notification{ID: id, AlertKey: alert, Kind: NotifyProblem, Channel: ChannelEmail, To: "a@example.com", State: NotificationPending, CreatedAt: t0, NextAttempt: t0}
	}
	if _, err := s.EnqueueNotifications(ctx, []Notification{
		note("old-sent", "cleared-alert"), note("old-open", "open-alert"), note("old-pending", "cleared-alert"),
	}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"old-sent", "old-open"} {
		if err := s.MarkNotificationSent(ctx, id, t0); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.PruneNotifications(ctx, t0.Add(time.Hour), []string{"open-alert"}); err != nil || n != 1 {
		t.Fatalf("PruneNotifications = %d, %v; want only the sent one of the cleared alert", n, err)
	}
	for _, id := range []string{"old-open", "old-pending"} {
		if _, err := s.GetNotification(ctx, id); err != nil {
			t.Errorf("%s: %v; want it kept", id, err)
		}
	}
}
