package server

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clover-sched/clover/api"
	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/store"
	"github.com/clover-sched/clover/internal/testenv"
)

// A job's history through the API: each change (create, update, pause, resume, rollback, delete,
// restore) is a revision naming who made it and why; a diff names the fields; a rollback is conditional
// on the version expected; a tagged revision outlives pruning; a deleted job comes back with its
// versions going on.
func TestAJobsHistoryRecordsEveryChangeAndRollsBackAndRestores(t *testing.T) {
	t.Parallel()
	st := testStore(t, "t_rev_")
	s := &Server{store: st}
	srv, tok := serveSecured(t, s)
	s.cfg.History.RevisionsKeep, s.cfg.Limits.Jobs = 4, 10
	l := newLeader(leaderDeps{cfg: s.cfg, metrics: s.metrics, now: time.Now, store: st}, s.logger, 7)
	s.lead.Store(l)
	call := func(method, path, body string) (int, string) {
		t.Helper()
		return apiCall{method: method, path: path, body: body, token: tok.admin}.do(t, srv)
	}
	must := func(what string, want int, method, path, body string) string {
		t.Helper()
		code, out := call(method, path, body)
		if code != want {
			t.Fatalf("%s: %d %s, want %d", what, code, out, want)
		}
		return out
	}
	q := url.QueryEscape
	must("create", 201, "POST", "/api/v1/jobs?message="+q("first cut"), `{"name":"ledger","schedule":"0 0 1 * * ?","handler":"shell","params":{"command":"close"}}`)
	must("update", 200, "PUT", "/api/v1/jobs/ledger?message="+q("later, after the batch"), `{"schedule":"0 0 3 * * ?","handler":"shell","params":{"command":"close --all"},"version":1}`)
	must("pause", 200, "POST", "/api/v1/jobs/ledger/pause", "")
	must("resume", 200, "POST", "/api/v1/jobs/ledger/resume", "")

	page := decodeInto[api.RevisionPage](t, must("history", 200, "GET", "/api/v1/jobs/ledger/revisions", ""))
	var got []string
	for _, r := range page.Revisions {
		got = append(got, fmt.Sprintf("%d %s %s %q", r.Version, r.Action, r.Who, r.Message))
	}
	want := []string{`4 resumed admin-1 ""`, `3 paused admin-1 ""`, `2 updated admin-1 "later, after the batch"`, `1 created admin-1 "first cut"`}
	if strings.Join(got, "|") != strings.Join(want, "|") || page.Latest != 4 {
		t.Fatalf("history:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	diff := decodeInto[api.JobDiff](t, must("diff", 200, "GET", "/api/v1/jobs/ledger/diff?from=1&to=2", ""))
	if len(diff.Changes) != 2 || diff.Changes[0].Field != "params.command" || diff.Changes[1].Field != "schedule" || diff.Changes[1].Before != "0 0 1 * * ?" {
		t.Fatalf("diff 1..2: %+v", diff.Changes)
	}

	// A rollback expecting a version the job has left is refused, and changes nothing.
	code, body := call("POST", "/api/v1/jobs/ledger/rollback", `{"version":1,"expect":3}`)
	if code != http.StatusConflict || !strings.Contains(body, "changed since version 3 (it is at 4 now)") {
		t.Fatalf("a rollback from a stale view: %d %s", code, body)
	}
	must("tag 2", 200, "POST", "/api/v1/jobs/ledger/revisions/2/tags", `{"tag":"before-migration"}`)
	back := decodeInto[job.Spec](t, must("rollback", 200, "POST", "/api/v1/jobs/ledger/rollback", `{"version":1,"expect":4,"message":"3 a.m. was wrong"}`))
	if back.Version != 5 || back.Schedule != "0 0 1 * * ?" || back.Params["command"] != "close" || back.Paused {
		t.Fatalf("after the rollback to 1: %+v", back)
	}
	rev := decodeInto[store.Revision](t, must("revision 5", 200, "GET", "/api/v1/jobs/ledger/revisions/5", ""))
	if rev.Action != store.RevisionRolledBack || rev.From != 1 || rev.Message != "3 a.m. was wrong" {
		t.Fatalf("revision 5: %+v", rev)
	}

	// Keep 4: version 6 prunes 2, but 2 is tagged; version 7 prunes 3.
	must("update 6", 200, "PUT", "/api/v1/jobs/ledger", `{"schedule":"0 0 4 * * ?","handler":"shell","params":{"command":"close"},"version":5}`)
	must("update 7", 200, "PUT", "/api/v1/jobs/ledger", `{"schedule":"0 0 5 * * ?","handler":"shell","params":{"command":"close"},"version":6}`)
	testenv.WaitFor(t, 20*time.Second, "the pruner", s.prunes.idle)
	if code, _ := call("GET", "/api/v1/jobs/ledger/revisions/3", ""); code != http.StatusNotFound {
		t.Fatalf("revision 3, out of the window of 4: %d, want pruned (404)", code)
	}
	if r := decodeInto[store.Revision](t, must("tagged 2", 200, "GET", "/api/v1/jobs/ledger/revisions/2", "")); len(r.Tags) != 1 || r.Tags[0] != "before-migration" {
		t.Fatalf("the tagged revision: %+v", r)
	}
	if tagged := decodeInto[api.RevisionPage](t, must("tagged", 200, "GET", "/api/v1/jobs/ledger/revisions?tagged=true", "")); len(tagged.Revisions) != 1 {
		t.Fatalf("tagged revisions: %+v", tagged.Revisions)
	}

	// Deleted by mistake, then restored as it was, its versions going on.
	must("delete", 204, "DELETE", "/api/v1/jobs/ledger?message="+q("oops"), "")
	page = decodeInto[api.RevisionPage](t, must("history of the deleted job", 200, "GET", "/api/v1/jobs/ledger/revisions?limit=2", ""))
	if !page.Deleted || page.Latest != 8 || len(page.Revisions) != 2 || page.Revisions[0].Action != store.RevisionDeleted || page.Next != 7 {
		t.Fatalf("the deleted job's newest page: %+v", page)
	}
	restored := decodeInto[job.Spec](t, must("restore", 201, "POST", "/api/v1/jobs/ledger/restore", `{"message":"it was needed"}`))
	if restored.Version != 9 || restored.Schedule != "0 0 5 * * ?" {
		t.Fatalf("restored: %+v", restored)
	}
	if code, body := call("POST", "/api/v1/jobs/ledger/restore", ""); code != http.StatusConflict {
		t.Fatalf("restoring a job that exists: %d %s", code, body)
	}
	if rev := decodeInto[store.Revision](t, must("revision 9", 200, "GET", "/api/v1/jobs/ledger/revisions/9", "")); rev.Action != store.RevisionRestored || rev.From != 7 {
		t.Fatalf("revision 9: %+v", rev)
	}
	// A viewer reads the history, and may not roll back.
	if code, _ := (apiCall{method: "GET", path: "/api/v1/jobs/ledger/revisions", token: tok.viewer}).do(t, srv); code != http.StatusOK {
		t.Fatalf("a viewer reading the history: %d", code)
	}
	if code, _ := (apiCall{method: "POST", path: "/api/v1/jobs/ledger/rollback", body: `{"version":1,"expect":9}`, token: tok.operator}).do(t, srv); code != http.StatusForbidden {
		t.Fatalf("an operator's rollback: %d, want 403", code)
	}
}

// Jobs deleted at once (their tombstones share an insert) come back, made again through another server,
// with their versions going on.
func TestJobsDeletedAtOnceComeBackWithTheirVersionsGoingOn(t *testing.T) {
	t.Parallel()
	st := testStore(t, "t_tomb_")
	serve := func() (*Server, *httptest.Server, testTokens) {
		s := &Server{store: st}
		srv, tok := serveSecured(t, s)
		s.cfg.Limits.Jobs = 100
		s.lead.Store(newLeader(leaderDeps{cfg: s.cfg, metrics: s.metrics, now: time.Now, store: st}, s.logger, 7))
		return s, srv, tok
	}
	_, srv, tok := serve()
	const n = 16
	name := func(i int) string { return fmt.Sprintf("nightly-%02d", i) }
	for i := range n {
		body := fmt.Sprintf(`{"name":%q,"schedule":"0 0 1 * * ?","handler":"shell","params":{"command":"true"}}`, name(i))
		if code, out := (apiCall{method: "POST", path: "/api/v1/jobs", body: body, token: tok.admin}).do(t, srv); code != http.StatusCreated {
			t.Fatalf("create %s: %d %s", name(i), code, out)
		}
	}
	var wg sync.WaitGroup
	codes := make([]int, n)
	for i := range n {
		wg.Go(func() {
			codes[i], _ = apiCall{method: "DELETE", path: "/api/v1/jobs/" + name(i), token: tok.admin}.do(t, srv)
		})
	}
	wg.Wait()
	for i, code := range codes {
		if code != http.StatusNoContent {
			t.Fatalf("delete %s: %d", name(i), code)
		}
	}
	// Another server knows no tombstone but the store's.
	_, other, tok2 := serve()
	for i := range n {
		body := fmt.Sprintf(`{"name":%q,"schedule":"0 0 2 * * ?","handler":"shell","params":{"command":"true"}}`, name(i))
		code, out := apiCall{method: "POST", path: "/api/v1/jobs", body: body, token: tok2.admin}.do(t, other)
		if code != http.StatusCreated {
			t.Fatalf("create %s again: %d %s", name(i), code, out)
		}
		if spec := decodeInto[job.Spec](t, out); spec.Version != 3 {
			t.Errorf("%s made again at version %d, want 3 (1 created, 2 deleted)", name(i), spec.Version)
		}
	}
}
