package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clover-sched/clover/api"
	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/testenv"
)

// applyJobs runs `clover job apply -f file` against server m and returns its output and error.
func applyJobs(t *testing.T, c *Cluster, m *Member, file string) (string, error) {
	t.Helper()
	cmd := exec.Command(c.Bin, "job", "apply", "-f", file, "--api", "http://"+m.API)
	cmd.Env = append(os.Environ(), "CLOVER_TOKEN="+c.Tokens.Admin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func writeJobList(t *testing.T, path string, specs []job.Spec) {
	t.Helper()
	b, err := json.Marshal(specs)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// Thousands of jobs through a follower with clover job apply and the bulk API: per-job errors for
// invalid definitions, nothing rewritten when nothing changed, a version conflict, limits.jobs, deletions
// in bulk with the audit entry of each; the leader fires the jobs created and stops firing those deleted.
func TestBulkJobWritesThroughAFollower(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	c := StartCluster(t, Options{Servers: 2, Clients: 1, ServerEnv: []string{"CLOVER_LIMITS_JOBS=2010"}})
	leader, _ := c.WaitLeader(10 * time.Second)
	var follower *Member
	for _, m := range c.Servers {
		if m != leader {
			follower = m
		}
	}

	// 2,000 jobs, three of them firing every second, and five invalid ones.
	var specs []job.Spec
	for i := range 2000 {
		spec := job.Spec{Name: fmt.Sprintf("bulk-%04d", i), Schedule: "@at 2099-01-01T00:00:00Z", Handler: job.HandlerShell,
			Params: map[string]string{"command": "true"}}
		if i < 3 {
			spec.Schedule, spec.Overlap = "@every 1s", job.OverlapAllow
		}
		specs = append(specs, spec)
	}
	valid := specs
	for i := range 5 {
		specs = append(specs, job.Spec{Name: fmt.Sprintf("invalid-%d", i), Schedule: "every other tuesday", Handler: job.HandlerShell,
			Params: map[string]string{"command": "true"}})
	}
	file := filepath.Join(c.Dir, "jobs.json")
	writeJobList(t, file, specs)
	out, err := applyJobs(t, c, follower, file)
	if err == nil || !strings.Contains(out, "applied: 2000 created, 0 updated, 0 unchanged, 5 failed") ||
		!strings.Contains(out, "FAILED create invalid-3: ") || !strings.Contains(out, "(HTTP 400)") {
		t.Fatalf("clover job apply of 2,000 jobs and 5 invalid ones: %v\n%s", err, out)
	}
	var stored []job.Spec
	if err := c.Call(leader, "GET", "/api/v1/jobs", nil, &stored); err != nil || len(stored) != 2000 {
		t.Fatalf("after apply: %d jobs stored (%v), want 2000", len(stored), err)
	}
	for _, name := range []string{"bulk-0000", "bulk-0001", "bulk-0002"} {
		testenv.WaitFor(t, 60*time.Second, "the leader fires "+name, func() bool {
			var execs []job.Execution
			err := c.Call(leader, "GET", "/api/v1/executions?state=succeeded&job="+name, nil, &execs)
			return err == nil && len(execs) > 0
		})
	}

	// Applied again: nothing to do. One job changed in the file: one update.
	valid[10].Params = map[string]string{"command": "true # changed"}
	writeJobList(t, file, valid)
	if out, err := applyJobs(t, c, follower, file); err != nil || !strings.Contains(out, "applied: 0 created, 1 updated, 1999 unchanged, 0 failed") {
		t.Fatalf("clover job apply with one job changed: %v\n%s", err, out)
	}

	// A bulk update at a stale version is a conflict; creations past limits.jobs are refused, each.
	ops := []api.BatchOp{
		{Op: api.BatchUpdate, Job: &valid[10], Version: 1},
		{Op: api.BatchUpdate, Job: &valid[11], Version: 1},
	}
	for i := range 20 {
		ops = append(ops, api.BatchOp{Op: api.BatchCreate, Job: &job.Spec{Name: fmt.Sprintf("extra-%02d", i), Schedule: "@daily",
			Handler: job.HandlerShell, Params: map[string]string{"command": "true"}}})
	}
	var resp api.BatchResponse
	if err := c.Call(follower, "POST", "/api/v1/jobs:batch", api.BatchRequest{Ops: ops}, &resp); err != nil {
		t.Fatal(err)
	}
	statuses := map[int]int{}
	for _, r := range resp.Results {
		statuses[r.Status]++
	}
	if resp.Results[0].Status != http.StatusConflict || resp.Results[1].Status != http.StatusOK || resp.Results[1].Version != 2 ||
		statuses[http.StatusCreated] != 10 || statuses[http.StatusInsufficientStorage] != 10 {
		t.Fatalf("bulk update at a stale version and 20 creations with room for 10: %v, results %+v", statuses, resp.Results[:2])
	}

	// 1,000 deletions in one request (the most it takes), one of them at a stale version.
	ops = nil
	for i := 1001; i < 2000; i++ {
		op := api.BatchOp{Op: api.BatchDelete, Name: fmt.Sprintf("bulk-%04d", i)}
		if i == 1999 {
			op.Version = 5
		}
		ops = append(ops, op)
	}
	ops = append(ops, api.BatchOp{Op: api.BatchDelete, Name: "bulk-0000"}) // fires every second
	resp = api.BatchResponse{}
	if err := c.Call(follower, "POST", "/api/v1/jobs:batch", api.BatchRequest{Ops: ops}, &resp); err != nil {
		t.Fatal(err)
	}
	// The loop was handed the deletions before the answer; it applies them at its next turn.
	deletedAt := time.Now().Add(2 * time.Second)
	if resp.Succeeded != 999 || resp.Failed != 1 || resp.Results[998].Status != http.StatusConflict {
		t.Fatalf("bulk deletion: %d succeeded, %d failed, bulk-1999 %+v; want 999, 1 and a conflict", resp.Succeeded, resp.Failed, resp.Results[998])
	}
	if err := c.Call(leader, "GET", "/api/v1/jobs", nil, &stored); err != nil || len(stored) != 2010-999 {
		t.Fatalf("after the deletions: %d jobs (%v), want 1011", len(stored), err)
	}
	var entries []struct {
		Via, Action, Target string
		Status              int
	}
	if err := c.Call(leader, "GET", "/api/v1/audit?limit=1000", nil, &entries); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range entries {
		found = found || (e.Action == "POST /api/v1/jobs:batch delete" && e.Target == "bulk-1500" && e.Status == http.StatusNoContent && e.Via == follower.ID)
	}
	if !found {
		t.Errorf("no audit entry for the deletion of bulk-1500 forwarded by %s among %d", follower.ID, len(entries))
	}

	// The leader stops firing the deleted job: once bulk-0001 has fired three more times, bulk-0000 has
	// not fired since two seconds after its deletion was answered.
	firedSince := func(name string, since time.Time) int {
		var execs []job.Execution
		if err := c.Call(leader, "GET", "/api/v1/executions?limit=100&job="+name, nil, &execs); err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, e := range execs {
			if e.ScheduledAt.After(since) {
				n++
			}
		}
		return n
	}
	testenv.WaitFor(t, 60*time.Second, "bulk-0001 fires after the deletions", func() bool {
		return firedSince("bulk-0001", deletedAt) >= 3
	})
	if n := firedSince("bulk-0000", deletedAt); n > 0 {
		t.Errorf("bulk-0000 fired %d times after it was deleted", n)
	}
}
