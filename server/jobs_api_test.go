package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/clover-sched/clover/api"
	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/store"
)

// What the API writes reaches the leader loop as written, without the loop reading the store: two writes
// of a job before the loop's turn are installed once, as last written, and a deletion removes the job.
func TestJobChangesReachTheLoopWithoutAStoreRead(t *testing.T) {
	fs := newFakeStore() // holds no job: a loop that read the store would find none
	h := newHarness(t, fs, "a")
	h.establish()
	first := spec("w", "0 * * * * ?", nil)
	second := spec("w", "30 * * * * ?", func(s *job.Spec) { s.Version = 2 })
	h.l.JobsWritten(first)
	h.l.JobsWritten(second)
	select {
	case <-h.l.changes.wake:
	default:
		t.Fatal("no wake-up for the loop")
	}
	h.l.applyJobChanges()
	if e := h.l.jobs["w"]; e == nil || e.spec.Version != 2 || e.gen != 1 {
		t.Fatalf("after two writes: %+v; want version 2 installed once", e)
	}
	h.advance(30 * time.Second)
	if len(h.sent) != 1 || h.sent[0].d.Job != "w" {
		t.Fatalf("dispatched %d, want w at :30", len(h.sent))
	}
	h.l.JobsDeleted("w")
	h.l.applyJobChanges()
	if h.l.jobs["w"] != nil {
		t.Fatal("a deleted job is still installed")
	}
}

func decodeInto[T any](t *testing.T, body string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("decode %q: %v", body, err)
	}
	return v
}

// The single and bulk job routes against a store: answers without a read back that equal what a read
// gives, conflicts, per-operation outcomes, limits.jobs, an audit entry per operation, and every write
// handed to the leader loop.
func TestJobWritesThroughTheAPI(t *testing.T) {
	t.Parallel()
	st := testStore(t, "t_jobs_")
	s := &Server{store: st}
	s.cfg.Limits.Jobs = 5
	srv, tok := serveSecured(t, s)
	l := newLeader(leaderDeps{cfg: s.cfg, metrics: s.metrics, now: time.Now, store: st}, s.logger, 7)
	s.lead.Store(l)
	call := func(method, path, body string) (int, string) {
		t.Helper()
		return apiCall{method: method, path: path, body: body, token: tok.admin}.do(t, srv)
	}
	expect := func(what string, code int, body string, want int) {
		t.Helper()
		if code != want {
			t.Fatalf("%s: %d %s, want %d", what, code, body, want)
		}
	}

	code, body := call("POST", "/api/v1/jobs", shellJobBody)
	expect("create", code, body, http.StatusCreated)
	created := decodeInto[job.Spec](t, body)
	_, body = call("GET", "/api/v1/jobs/nightly", "")
	if read := decodeInto[job.Spec](t, body); fmt.Sprint(read) != fmt.Sprint(created) || created.Version != 1 {
		t.Fatalf("created\n%+v\nread back\n%+v", created, read)
	}
	code, body = call("PUT", "/api/v1/jobs/nightly", `{"schedule":"0 0 2 * * ?","handler":"shell","params":{"command":"x"},"version":7}`)
	expect("update at a stale version", code, body, http.StatusConflict)
	code, body = call("PUT", "/api/v1/jobs/nightly", `{"schedule":"0 0 2 * * ?","handler":"shell","params":{"command":"x"},"version":1}`)
	expect("update", code, body, http.StatusOK)
	code, body = call("POST", "/api/v1/jobs/nightly/pause", "")
	expect("pause", code, body, http.StatusOK)
	code, body = call("POST", "/api/v1/jobs/nightly/pause", "")
	if got := decodeInto[job.Spec](t, body); code != http.StatusOK || got.Version != 3 || !got.Paused {
		t.Fatalf("pause of a paused job: %d %+v; want it unchanged at version 3", code, got)
	}
	if w := l.changes.take()["nightly"]; w == nil || w.Version != 3 || w.Schedule != "0 0 2 * * ?" || !w.Paused {
		t.Fatalf("the loop was handed %+v; want version 3, paused, on the new schedule", w)
	}

	def := func(name string) *job.Spec {
		return &job.Spec{Name: name, Schedule: "@daily", Handler: job.HandlerShell, Params: map[string]string{"command": "true"}}
	}
	ops := []api.BatchOp{
		{Op: api.BatchCreate, Job: def("a")},
		{Op: api.BatchCreate, Job: def("b")},
		{Op: api.BatchCreate, Job: def("bad name!")},
		{Op: api.BatchUpdate, Job: def("nightly"), Version: 3},
		{Op: api.BatchUpdate, Job: def("ghost")},
		{Op: api.BatchDelete, Name: "nope"},
		{Op: api.BatchCreate, Job: def("c")},
		{Op: api.BatchCreate, Job: def("d")},
		{Op: api.BatchCreate, Job: def("e")}, // the sixth job: limits.jobs is 5
		{Op: api.BatchUpdate, Name: "a", Job: def("a")},
		{Op: "rename", Name: "x"},
	}
	want := []int{201, 201, 400, 200, 404, 404, 201, 201, 507, 400, 400}
	b, _ := json.Marshal(api.BatchRequest{Ops: ops})
	code, body = call("POST", "/api/v1/jobs:batch", string(b))
	expect("bulk", code, body, http.StatusOK)
	resp := decodeInto[api.BatchResponse](t, body)
	for i, res := range resp.Results {
		if res.Status != want[i] || (res.Status < 300) != (res.Error == "") {
			t.Errorf("operation %d (%s %s): %d %q, want %d", i, res.Op, res.Name, res.Status, res.Error, want[i])
		}
	}
	if resp.Succeeded != 5 || resp.Failed != 6 || resp.Results[3].Version != 4 {
		t.Errorf("bulk: %d succeeded, %d failed, nightly at version %d; want 5, 6, 4", resp.Succeeded, resp.Failed, resp.Results[3].Version)
	}
	changes := l.changes.take()
	for name, version := range map[string]int64{"a": 1, "b": 1, "c": 1, "d": 1, "nightly": 4} {
		if w := changes[name]; w == nil || w.Version != version {
			t.Errorf("the loop was handed %s %+v, want version %d", name, w, version)
		}
	}
	if len(changes) != 5 {
		t.Errorf("the loop was handed %d jobs, want 5", len(changes))
	}
	entries, err := st.ListAudit(t.Context(), "", store.AuditCursor{}, 100)
	if err != nil {
		t.Fatal(err)
	}
	bulk := map[string]store.AuditEntry{}
	for _, e := range entries {
		if strings.HasPrefix(e.Action, "POST /api/v1/jobs:batch ") {
			bulk[e.Action+" "+e.Target] = e
		}
	}
	if e := bulk["POST /api/v1/jobs:batch update nightly"]; len(bulk) != len(ops) || e.Before != 3 || e.After != 4 || e.Who != "admin-1" {
		t.Errorf("audit: %d bulk entries (want %d), nightly's %+v", len(bulk), len(ops), e)
	}

	ops = []api.BatchOp{{Op: api.BatchDelete, Name: "a", Version: 1}, {Op: api.BatchDelete, Name: "b", Version: 7}}
	b, _ = json.Marshal(api.BatchRequest{Ops: ops})
	_, body = call("POST", "/api/v1/jobs:batch", string(b))
	if resp := decodeInto[api.BatchResponse](t, body); resp.Results[0].Status != 204 || resp.Results[1].Status != 409 {
		t.Errorf("bulk delete at the right and a wrong version: %+v", resp.Results)
	}
	// One place left: a creation of an existing job does not take it from the next.
	ops = []api.BatchOp{{Op: api.BatchCreate, Job: def("nightly")}, {Op: api.BatchCreate, Job: def("f")}, {Op: api.BatchCreate, Job: def("g")}}
	b, _ = json.Marshal(api.BatchRequest{Ops: ops})
	_, body = call("POST", "/api/v1/jobs:batch", string(b))
	if resp := decodeInto[api.BatchResponse](t, body); resp.Results[0].Status != 409 || resp.Results[1].Status != 201 || resp.Results[2].Status != 507 {
		t.Errorf("bulk creation of an existing job and two more with room for one: %+v", resp.Results)
	}
	code, body = call("DELETE", "/api/v1/jobs/nightly", "")
	expect("delete", code, body, http.StatusNoContent)
	if changes := l.changes.take(); len(changes) != 3 || changes["a"] != nil || changes["nightly"] != nil || changes["f"] == nil {
		t.Errorf("after the deletions the loop was handed %v; want a and nightly deleted, f created", changes)
	}
	code, body = call("POST", "/api/v1/jobs", `{"name":"g","schedule":"@daily","handler":"shell","params":{"command":"true"}}`)
	expect("a creation once there is room again", code, body, http.StatusCreated)
	code, body = call("POST", "/api/v1/jobs", `{"name":"h","schedule":"@daily","handler":"shell","params":{"command":"true"}}`)
	expect("a creation past limits.jobs", code, body, http.StatusInsufficientStorage)

	// Requests refused as a whole.
	many, _ := json.Marshal(api.BatchRequest{Ops: make([]api.BatchOp, api.MaxBatchOps+1)})
	for what, c := range map[string]struct {
		body string
		want int
	}{
		"no operation":       {`{"ops":[]}`, http.StatusBadRequest},
		"an unknown field":   {`{"ops":[],"all":true}`, http.StatusBadRequest},
		"too many":           {string(many), http.StatusRequestEntityTooLarge},
		"a body over 8 MiB":  {`{"ops":[` + strings.Repeat(" ", api.MaxBatchBody) + `]}`, http.StatusRequestEntityTooLarge},
		"not JSON, 1.5 MiB ": {strings.Repeat("x", 3<<19), http.StatusBadRequest}, // past the other routes' bound, read
	} {
		code, body := call("POST", "/api/v1/jobs:batch", c.body)
		if code != c.want {
			t.Errorf("%s: %d %.200s, want %d", what, code, body, c.want)
		}
	}
}
