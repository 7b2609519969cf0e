package server

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/clover-sched/clover/internal/fallback"
	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/wire"
)

func frame(t *testing.T, m wire.Message) []byte {
	t.Helper()
	b, err := wire.Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// An entry written by someone else, or damaged, is rejected with a reason that names what is wrong; it
// never stops the replay or the server.
func TestFallbackEntriesThatCanNeverApplyAreRejected(t *testing.T) {
	h := newHarness(t, newFakeStore(), "a")
	result := &wire.Result{Header: wire.Header{From: "a"}, ExecID: "j@1", Job: "j", Result: job.Result{Status: job.StateSucceeded}}
	tests := map[string]struct {
		entry fallback.Entry
		want  string
	}{
		"payload not a frame": {
			entry: fallback.Entry{Client: "a", Kind: fallback.KindResult, Payload: []byte("hello")},
			want:  `refused: payload: wire: frame starts with "hel", not "CLV"`,
		},
		"frame of another client": {
			entry: fallback.Entry{Client: "b", Kind: fallback.KindResult, Payload: frame(t, result)},
			want:  "refused: a result from a in an entry of client b",
		},
		"kind that does not match the frame": {
			entry: fallback.Entry{Client: "a", Kind: fallback.KindRequest, Payload: frame(t, result)},
			want:  "refused: an entry of kind request holds a frame of kind result",
		},
		"refusal in an ack entry": {
			entry: fallback.Entry{Client: "a", Kind: fallback.KindAck, Payload: frame(t, &wire.Ack{Header: wire.Header{From: "a"}, ExecID: "j@1", Job: "j", At: t0})},
			want:  "refused: an ack entry holds a refusal, which records nothing",
		},
		"declarations that do not decode": {
			entry: fallback.Entry{Client: "a", Kind: fallback.KindDeclare, Payload: []byte(`{"name":`)},
			want:  "refused: declarations do not decode: unexpected end of JSON input",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := h.l.applyEntry(context.Background(), tc.entry)
			if !errors.Is(err, errRefused) {
				t.Fatalf("applyEntry = %v, want errRefused", err)
			}
			if err.Error() != tc.want {
				t.Errorf("error\n got %s\nwant %s", err, tc.want)
			}
		})
	}
}

// A run request fires one execution whose id comes from the request: sent twice (a re-send, a replay of
// the same entry by the next leader) it fires nothing more. Requests for jobs that cannot run are refused
// for good, and the client is told either way so that it stops sending them.
func TestARunRequestRunsOnce(t *testing.T) {
	local := shellJob("local", "@every 1h", created)
	local.Mode = job.ModeLocal
	// A client may request the shell jobs it declares (and jobs of other handlers); others' shell jobs
	// are an operator's to run.
	settle := shellJob("settle", "@every 1000h", created)
	settle.Source = "client:a"
	fs := newFakeStore(settle, local, shellJob("admins", "@every 1000h", created))
	h := newHarness(t, fs, "a")
	h.clients[0].Jobs = []string{"settle"}
	h.establish()
	ctx := context.Background()
	req := &wire.Request{Header: wire.Header{From: "a"}, ReqID: "a.1.1", Job: "settle", Params: map[string]string{"day": "23"}, At: h.now}
	for range 2 {
		h.l.onRequest(ctx, requestNote{req: req})
	}
	want := job.RequestExecutionID("settle", "a.1.1")
	if got := fs.ids(); !slices.Equal(got, []string{want}) {
		t.Fatalf("recorded %v, want only %s", got, want)
	}
	e := fs.folded()[0]
	if e.Trigger != job.TriggerRequest || e.Params["day"] != "23" || e.Params["command"] != "true" {
		t.Errorf("execution %+v: want trigger request with the request's params over the job's", e)
	}
	if d := h.sentTo("a"); len(d) != 1 || d[0].d.ExecID != want {
		t.Errorf("dispatched %v, want %s once", d, want)
	}
	// Once the execution ended and the leader forgot it, a replay of the same request is still one run.
	h.l.forget(want, "")
	if err := h.l.request(ctx, req); err != nil {
		t.Fatal(err)
	}
	if got := fs.ids(); len(got) != 1 {
		t.Fatalf("recorded %v after a replay of the request", got)
	}

	for name, r := range map[string]*wire.Request{
		"unknown job":         {Header: wire.Header{From: "a"}, ReqID: "a.1.2", Job: "nope", At: h.now},
		"local job":           {Header: wire.Header{From: "a"}, ReqID: "a.1.3", Job: "local", At: h.now},
		"another's shell job": {Header: wire.Header{From: "a"}, ReqID: "a.1.5", Job: "admins", At: h.now},
	} {
		if err := h.l.request(ctx, r); !errors.Is(err, errRefused) {
			t.Errorf("%s: request = %v, want errRefused", name, err)
		}
		h.l.onRequest(ctx, requestNote{req: r})
	}
	var receipted []string
	for _, r := range h.receipts {
		receipted = append(receipted, r.Requests...)
	}
	slices.Sort(receipted)
	if !slices.Equal(receipted, []string{"a.1.1", "a.1.1", "a.1.2", "a.1.3", "a.1.5"}) {
		t.Errorf("receipts for %v, want every request answered", receipted)
	}

	// Without a confirmed session the request waits (no receipt): the client sends it again later.
	h.healthy = false
	h.now = h.now.Add(time.Minute)
	n := len(h.receipts)
	h.l.onRequest(ctx, requestNote{req: &wire.Request{Header: wire.Header{From: "a"}, ReqID: "a.1.4", Job: "settle", At: h.now}})
	if len(h.receipts) != n {
		t.Error("a request the leader could not run was receipted")
	}
}

// A request replayed after its execution ended fires nothing, and under overlap replace it stops
// nothing either: it is not a new firing.
func TestAReplayedRequestStopsNothing(t *testing.T) {
	spec := shellJob("r", "@every 1000h", created)
	spec.Overlap, spec.Source = job.OverlapReplace, "client:a"
	h := newHarness(t, newFakeStore(spec), "a")
	h.clients[0].Jobs = []string{"r"}
	h.establish()
	ctx := context.Background()
	request := func(id string) *wire.Request {
		return &wire.Request{Header: wire.Header{From: "a"}, ReqID: id, Job: "r", At: h.now}
	}
	h.l.onRequest(ctx, requestNote{req: request("a.1.1")})
	first := h.lastTo("a")
	h.ack("a", first)
	h.finish("a", first, job.StateSucceeded)
	h.l.onRequest(ctx, requestNote{req: request("a.1.2")})
	second := h.lastTo("a")
	h.ack("a", second)

	h.l.onRequest(ctx, requestNote{req: request("a.1.1")}) // the first again, from the queue
	if len(h.stops) != 0 {
		t.Fatalf("a replayed request stopped %v", h.stops)
	}
	if f := h.l.flights[second.ExecID]; f == nil || f.stopping != "" {
		t.Fatalf("the second run %+v: want it running on", f)
	}
	if n := len(h.store.ids()); n != 2 {
		t.Fatalf("%d executions recorded, want 2", n)
	}
}

// Declarations a client queued are older news than a change made since: they do not roll the job back.
func TestAQueuedDeclarationDoesNotRollBackANewerDefinition(t *testing.T) {
	stored := shellJob("d", "@every 1h", created)
	stored.Source, stored.UpdatedAt = "client:x", t0.Add(time.Hour)
	fs := newFakeStore(stored)
	h := newHarness(t, fs, "a")
	h.establish()
	older := shellJob("d", "@every 2h", created)
	if err := h.l.onDeclare(context.Background(), declareNote{client: "x", specs: []job.Spec{older}, at: t0}); err != nil {
		t.Fatal(err)
	}
	if got := fs.jobs["d"].Schedule; got != "@every 1h" {
		t.Fatalf("schedule %q after an older queued declaration, want @every 1h kept", got)
	}
	if err := h.l.onDeclare(context.Background(), declareNote{client: "x", specs: []job.Spec{older}, at: t0.Add(2 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if got := fs.jobs["d"].Schedule; got != "@every 2h" {
		t.Fatalf("schedule %q after a newer queued declaration, want @every 2h", got)
	}
}
