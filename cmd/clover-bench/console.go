package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"time"

	"github.com/clover-sched/clover/integration"
	"github.com/clover-sched/clover/internal/histfill"
	"github.com/clover-sched/clover/internal/job"
)

// runConsole: the console's pages over a store of 100,000 jobs and 1,000,000 ended executions (a tenth
// of each with -quick), each page's median time for a logged-in browser-like client (the aim:
// every page under 300 ms on a real MongoDB; FerretDB here scans what MongoDB reads by index).
func runConsole(t *T, s settings, out io.Writer) {
	nJobs, nExecs := 100_000, 1_000_000
	if s.quick {
		nJobs, nExecs = 10_000, 100_000
	}
	if s.jobs > 0 {
		nJobs = s.jobs
	}
	c := startCluster(t, integration.Options{Servers: 1, Clients: 1})
	leader, _ := c.WaitLeader(30 * time.Second)
	ctx := context.Background()

	t.Progressf("writing %d jobs into the store", nJobs)
	begun := time.Now()
	specs := make([]job.Spec, nJobs)
	for i := range specs {
		// Once a year, paused: the jobs are there to be listed, not to run.
		specs[i] = job.Spec{Name: fmt.Sprintf("job-%06d", i), Schedule: "0 0 3 1 1 ?", Handler: job.HandlerShell,
			Params: map[string]string{"command": "true"}, Paused: i%10 == 0, Source: "api"}
	}
	if _, err := createJobs(ctx, c, leader, specs, 0); err != nil {
		t.Fatalf("create jobs: %v", err)
	}
	t.Logf("wrote %d jobs in %s", nJobs, time.Since(begun).Round(time.Second))
	t.Progressf("filling the history with %d executions", nExecs)
	begun = time.Now()
	end := time.Now().Add(-time.Hour)
	if err := histfill.Fill(ctx, c.Store(), histfill.Options{Jobs: []string{"eod-a", "eod-b", "eod-c"}, N: nExecs, End: end, Spacing: time.Second, Fill: -1}); err != nil {
		t.Fatalf("fill: %v", err)
	}
	t.Logf("filled %d executions in %s", nExecs, time.Since(begun).Round(time.Second))
	oldest := job.ExecutionID("eod-a", end.Add(-time.Duration(nExecs-1)*time.Second).UTC())

	base := "http://" + leader.API
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Timeout: 5 * time.Minute, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := browser.PostForm(base+"/ui/login", url.Values{"token": {c.Tokens.Admin}, "next": {"/ui/"}})
	if err != nil || resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("console login: %v %v", resp, err)
	}
	resp.Body.Close()
	page := func(path string) func() error {
		return func() error {
			resp, err := browser.Get(base + path)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("GET %s: HTTP %d: %s", path, resp.StatusCode, strings.TrimSpace(string(body[:min(len(body), 300)])))
			}
			return nil
		}
	}
	mid := fmt.Sprintf("job-%06d", nJobs/2)
	pages := []struct{ what, path string }{
		{"dashboard", "/ui/"},
		{"jobs, first page", "/ui/jobs"},
		{"jobs, a page in the middle (cursor)", "/ui/jobs?after=" + mid},
		{"jobs, paused only", "/ui/jobs?state=paused"},
		{"jobs, text search (one match)", "/ui/jobs?q=" + fmt.Sprintf("job-%06d", nJobs-7)},
		{"a job's page", "/ui/jobs/" + mid},
		{"executions, newest", "/ui/executions"},
		{"executions of one job", "/ui/executions?job=eod-b"},
		{"the oldest execution's page", "/ui/executions/" + url.PathEscape(oldest)},
		{"logs: failures, last day", "/ui/logs?job=eod-a&hours=24"},
		{"clients and servers", "/ui/members"},
		{"ZooKeeper root", "/ui/zookeeper"},
	}
	tb := newTable(fmt.Sprintf("console: each page's median of 5, logged in, over %d jobs and %d ended executions (1 server + 1 client)", nJobs, nExecs),
		"page", "time", "aim")
	for _, p := range pages {
		d := medianOf(t, 5, page(p.path))
		t.Progressf("%s: %s", p.what, fmtRead(d))
		tb.add(p.what, fmtRead(d), "< 300 ms (MongoDB)")
	}
	tb.note("jobs and executions are written straight into the store (jobs as the API stores them; executions as the closer writes them, by internal/histfill)")
	tb.note("FerretDB 1.24 on SQLite evaluates a filter or a sort on other keys than _id by scanning; on MongoDB the same reads use the indexes Clover creates")
	tb.print(out)
}
