package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/keyring"
	"github.com/clover-sched/clover/internal/testenv"
	"github.com/clover-sched/clover/internal/transport"
	"github.com/clover-sched/clover/internal/wire"
)

func TestRecordedIDsAreForgottenAfterTheirTime(t *testing.T) {
	in := &intake{known: map[string]bool{}}
	var batch []inbound
	for i := range 3000 {
		batch = append(batch, inbound{event: fmt.Sprint(i)})
	}
	in.remember(batch[:2000], t0)
	in.remember(batch[2000:], t0.Add(2*time.Second))
	in.remember(nil, t0.Add(recentFor+time.Second)) // the first 2,000 are now older than recentFor
	if in.known["0"] || in.known["1999"] || !in.known["2000"] || !in.known["2999"] {
		t.Fatalf("after expiry: 0=%v 1999=%v 2000=%v 2999=%v", in.known["0"], in.known["1999"], in.known["2000"], in.known["2999"])
	}
	if live := len(in.expiry) - in.head; live != len(in.known) {
		t.Fatalf("expiry holds %d live ids, known %d", live, len(in.known))
	}
}

// intakeRig is an intake with a fake store, a fake term and the frames it sends, for tests of its batching.
type intakeRig struct {
	mu      sync.Mutex
	fail    bool
	batches [][]job.Event
	sent    map[string][]*wire.Receipt // peer -> receipts
	reports []wire.Message
	resent  []bool
	recd    [][]string
}

func (r *intakeRig) InsertEvents(_ context.Context, evs []job.Event) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail {
		return 0, errors.New("store down")
	}
	r.batches = append(r.batches, slices.Clone(evs))
	return 0, nil
}

func (r *intakeRig) InsertExecutions(context.Context, []job.Execution) ([]string, error) {
	return nil, nil
}
func (r *intakeRig) Report(m wire.Message, resent bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reports, r.resent = append(r.reports, m), append(r.resent, resent)
}
func (r *intakeRig) Recorded(ids []string, _ []int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recd = append(r.recd, ids)
}

func (r *intakeRig) intake(t *testing.T) *intake {
	r.sent = map[string][]*wire.Receipt{}
	return newIntake(intakeDeps{
		id: "s1", now: func() time.Time { return t0 }, logger: slog.New(slog.DiscardHandler),
		metrics: newMetrics(prometheus.NewRegistry()), store: r,
		send: func(peer string, frame []byte) error {
			m, err := wire.Decode(frame)
			if err != nil {
				t.Errorf("the intake sent an undecodable frame: %v", err)
				return nil
			}
			r.mu.Lock()
			r.sent[peer] = append(r.sent[peer], m.(*wire.Receipt))
			r.mu.Unlock()
			return nil
		},
		term:        func() termReports { return r },
		otherLeader: func() (string, bool) { return "", false },
	}, newCloser(nil, DefaultConfig().History, func() time.Time { return t0 }, slog.New(slog.DiscardHandler), newMetrics(prometheus.NewRegistry()))) // no closes here
}

func (r *intakeRig) state() (batches [][]job.Event, sent map[string][]*wire.Receipt, recd [][]string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.batches), cloneReceipts(r.sent), slices.Clone(r.recd)
}

func cloneReceipts(m map[string][]*wire.Receipt) map[string][]*wire.Receipt {
	out := map[string][]*wire.Receipt{}
	for k, v := range m {
		out[k] = slices.Clone(v)
	}
	return out
}

func encoded(t *testing.T, m wire.Message) []byte {
	t.Helper()
	b, err := wire.Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func result(client, id string) *wire.Result {
	return &wire.Result{Header: wire.Header{From: client}, ExecID: id, Job: "j", Attempt: 1, Run: 1,
		Result: job.Result{Status: job.StateSucceeded}, FinishedAt: t0}
}

func ack(client, id string) *wire.Ack {
	return &wire.Ack{Header: wire.Header{From: client}, ExecID: id, Job: "j", Attempt: 1, Run: 1, Accepted: true, At: t0}
}

// Reports that arrive together are one bulk write; an ack whose result is in the same batch is not written;
// each client gets one receipt naming what it sent; the leader hears every report at once and which results
// are recorded; a re-send of a recorded report is answered from memory, without a write.
func TestTheIntakeBatchesReportsAndAnswersEachClient(t *testing.T) {
	rig := &intakeRig{}
	in := rig.intake(t)
	for _, m := range []wire.Message{result("c1", "a"), ack("c1", "a"), result("c1", "b"), result("c1", "c"), ack("c2", "d")} {
		in.receive(encoded(t, m), transport.Sender{Addr: "127.0.0.1", Identity: wire.From(m)})
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = in.run(ctx) }()
	defer func() { cancel(); <-done }()

	testenv.WaitFor(t, 10*time.Second, "receipts to both clients", func() bool {
		_, sent, _ := rig.state()
		return len(sent["c1"]) > 0 && len(sent["c2"]) > 0
	})
	batches, sent, recd := rig.state()
	if len(batches) != 1 || len(batches[0]) != 4 {
		t.Fatalf("wrote %d batches (%v), want one of 4 events (3 results, c2's ack; c1's ack says less than its result)", len(batches), batches)
	}
	if r := sent["c1"][0]; !slices.Equal(r.ExecIDs, []string{"a", "b", "c"}) || len(r.Acked) != 1 || len(sent["c1"]) != 1 {
		t.Fatalf("c1 got %d receipts, the first %+v; want one naming a, b, c and its ack", len(sent["c1"]), r)
	}
	if r := sent["c2"][0]; len(r.ExecIDs) != 0 || !slices.Equal(r.Acked, []string{"d"}) {
		t.Fatalf("c2 got %+v; want its ack of d", r)
	}
	if len(recd) != 1 || !slices.Equal(recd[0], []string{"a", "b", "c"}) {
		t.Fatalf("the leader was told %v recorded; want a, b, c", recd)
	}
	rig.mu.Lock()
	reports := len(rig.reports)
	rig.mu.Unlock()
	if reports != 5 {
		t.Fatalf("the leader heard %d reports, want 5", reports)
	}

	in.receive(encoded(t, result("c1", "b")), transport.Sender{Addr: "127.0.0.1", Identity: "c1"}) // a re-send: its receipt was lost
	testenv.WaitFor(t, 10*time.Second, "a second receipt to c1", func() bool {
		_, sent, _ := rig.state()
		return len(sent["c1"]) == 2
	})
	batches, sent, _ = rig.state()
	if len(batches) != 1 || !slices.Equal(sent["c1"][1].ExecIDs, []string{"b"}) {
		t.Fatalf("after a re-send: %d batches, receipt %+v; want no write and a receipt for b", len(batches), sent["c1"][1])
	}
	rig.mu.Lock()
	defer rig.mu.Unlock()
	if !rig.resent[len(rig.resent)-1] {
		t.Fatal("the re-send reached the leader as a first report")
	}
}

// A batch the store refuses gets no receipt, and the clients' re-sends are written once the store is back.
func TestTheIntakeLetsClientsResendWhatTheStoreRefused(t *testing.T) {
	rig := &intakeRig{fail: true}
	in := rig.intake(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = in.run(ctx) }()
	defer func() { cancel(); <-done }()

	in.receive(encoded(t, result("c1", "a")), transport.Sender{Addr: "127.0.0.1", Identity: "c1"})
	testenv.WaitFor(t, 10*time.Second, "the refused write to be forgotten", func() bool { return !in.resent(result("c1", "a")) })
	if _, sent, _ := rig.state(); len(sent) != 0 {
		t.Fatalf("receipts %v for a write the store refused", sent)
	}
	rig.mu.Lock()
	rig.fail = false
	rig.mu.Unlock()
	in.receive(encoded(t, result("c1", "a")), transport.Sender{Addr: "127.0.0.1", Identity: "c1"})
	testenv.WaitFor(t, 10*time.Second, "the re-send recorded and confirmed", func() bool {
		batches, sent, _ := rig.state()
		return len(batches) == 1 && len(sent["c1"]) == 1
	})
}

// A client speaks for itself only; servers send receipts and relays. Without CURVE nothing is checked.
func TestOnlyTheAuthenticatedSenderMaySpeakForItself(t *testing.T) {
	relayed := func(m wire.Message) wire.Message {
		frame, err := wire.Relay(m, "s2")
		if err != nil {
			t.Fatal(err)
		}
		r, err := wire.Decode(frame)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	receipt := &wire.Receipt{Header: wire.Header{From: "s2"}, ExecIDs: []string{"a"}}
	for _, tc := range []struct {
		name     string
		m        wire.Message
		identity string
		want     string
	}{
		{"own result", result("c1", "a"), "c1", ""},
		{"another client's result", result("c2", "a"), "c1", "forged_sender"},
		{"a client's relay", relayed(result("c1", "a")), "c1", "relay_from_client"},
		{"a client's receipt", &wire.Receipt{Header: wire.Header{From: "c1"}}, "c1", "receipt_from_client"},
		{"a server's relay", relayed(result("c1", "a")), transport.ServersIdentity, ""},
		{"a server's receipt", receipt, transport.ServersIdentity, ""},
		{"a server's own result", result("c1", "a"), transport.ServersIdentity, "server_not_relayed"},
		{"insecure", result("c2", "a"), "", ""},
	} {
		if got := mayNotSend(tc.m, tc.identity); got != tc.want {
			t.Errorf("%s: mayNotSend = %q, want %q", tc.name, got, tc.want)
		}
	}
	rig := &intakeRig{}
	in := rig.intake(t)
	in.receive(encoded(t, result("c2", "a")), transport.Sender{Addr: "127.0.0.1", Identity: "c1"})
	if got := testutil.ToFloat64(in.metrics.framesDropped.WithLabelValues("forged_sender")); got != 1 {
		t.Fatalf("forged frames counted: %v, want 1", got)
	}
	if len(in.queue) != 0 {
		t.Fatal("a forged result was queued for the store")
	}
}

// A client's ack or result must show its run was sent to it (the dispatch's token), or that it fired
// the run itself (a local execution's id names it); servers hold the key and check it, the leader only
// chose the client.
func TestAReportMustProveItsRunWasSentToItsClient(t *testing.T) {
	key := []byte("run token key")
	check := func(execID string, run int, client, token string) bool {
		return keyring.CheckRunToken(key, execID, run, client, token)
	}
	tokenFor := func(client string) string { return keyring.RunToken(key, "job@2030-01-01T00:00:00Z", 2, client) }
	res := func(from, id, token string) *wire.Result {
		return &wire.Result{Header: wire.Header{From: from}, ExecID: id, Job: "job", Run: 2, Token: token}
	}
	localID := job.LocalExecutionID("job", time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC), "c1")
	for _, tc := range []struct {
		name     string
		m        wire.Message
		identity string
		want     string
	}{
		{"its own run", res("c1", "job@2030-01-01T00:00:00Z", tokenFor("c1")), "c1", ""},
		{"another client's token", res("c1", "job@2030-01-01T00:00:00Z", tokenFor("c2")), "c1", "bad_run_token"},
		{"no token", res("c1", "job@2030-01-01T00:00:00Z", ""), "c1", "bad_run_token"},
		{"its own local run", res("c1", localID, ""), "c1", ""},
		{"another's local run", res("c2", localID, ""), "c2", "bad_run_token"},
		{"a local ack of another's id", &wire.Ack{Header: wire.Header{From: "c2"}, ExecID: localID, Accepted: true, Local: &job.Execution{ID: localID}}, "c2", "local_not_own"},
		{"relayed by a server", res("c1", "job@2030-01-01T00:00:00Z", ""), transport.ServersIdentity, ""},
	} {
		if got := unproven(tc.m, tc.identity, check); got != tc.want {
			t.Errorf("%s: unproven = %q, want %q", tc.name, got, tc.want)
		}
	}
	if got := unproven(res("c1", "x@y", ""), "c1", nil); got != "" {
		t.Errorf("insecure mode checked a token: %q", got)
	}
}

// A client's report of a run that was never its own is dropped, and receipted to it, so that it stops
// sending it (a journal left from another cluster would otherwise be sent for ever); nothing is written.
func TestAReportOfARunNotItsOwnIsReceiptedAndNotRecorded(t *testing.T) {
	rig := &intakeRig{}
	in := rig.intake(t)
	in.checkRunToken = func(string, int, string, string) bool { return false }
	in.receive(encoded(t, result("c1", "a")), transport.Sender{Addr: "127.0.0.1", Identity: "c1"})
	if len(in.queue) != 0 {
		t.Fatal("a report without its run token was queued for the store")
	}
	rig.mu.Lock()
	defer rig.mu.Unlock()
	if got := rig.sent["c1"]; len(got) != 1 || len(got[0].ExecIDs) != 1 {
		t.Fatalf("receipts to c1: %+v, want one naming the result", got)
	}
}
