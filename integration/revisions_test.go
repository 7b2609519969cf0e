package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/clover-sched/clover/api"
	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/store"
	"github.com/clover-sched/clover/internal/testenv"
)

// consoleEdit saves a job's JSON definition through a server's console, as a browser would: log in,
// read the CSRF token, post the edit form at the version given.
func consoleEdit(t *testing.T, c *Cluster, m *Member, name string, version int64, definition string) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	base := c.scheme + "://" + m.API
	post := func(path string, form url.Values) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("POST", base+path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", base)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := post("/ui/login", url.Values{"token": {c.Tokens.Admin}, "next": {"/ui/"}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("console login: %s", resp.Status)
	}
	resp, err := hc.Get(base + "/ui/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	csrf := regexp.MustCompile(`"X-Clover-CSRF": "([^"]+)"`).FindStringSubmatch(string(body))
	if csrf == nil {
		t.Fatalf("no CSRF token on the console's dashboard")
	}
	resp = post("/ui/jobs/"+name+"/edit", url.Values{"csrf": {csrf[1]}, "version": {fmt.Sprint(version)}, "definition": {definition}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("console edit of %s: %s", name, resp.Status)
	}
}

// Every source of a change leaves a revision naming it: the CLI (add, update, pause, resume, with
// messages), `config apply`, the console, a client's declaration and a rollback; a diff names the fields;
// a rollback from a stale view is refused; a tagged revision outlives pruning; a deleted job is restored;
// an execution names the version it ran.
func TestEveryChangeToAJobIsARevisionFromEverySource(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	c := StartCluster(t, Options{Servers: 2, Clients: 1, ServerEnv: []string{"CLOVER_HISTORY_REVISIONS_KEEP=6"}})
	leader, _ := c.WaitLeader(30 * time.Second)
	c.WaitClients(1, 30*time.Second)
	f := c.otherServer(leader)
	cli := func(args ...string) string { t.Helper(); return clover(t, c, f, false, args...) }

	cli("job", "add", "ledger", "--schedule", "0 0 1 * * ?", "--command", "echo closing", "-m", "first cut")
	cli("job", "update", "ledger", "--schedule", "0 0 3 * * ?", "--message", "after the batch")
	cli("job", "pause", "ledger")
	cli("job", "resume", "ledger", "-m", "batch moved")
	var cur job.Spec
	if err := json.Unmarshal([]byte(cli("job", "get", "ledger")), &cur); err != nil {
		t.Fatal(err)
	}
	def, _ := json.Marshal(job.Spec{Name: "ledger", Schedule: "0 30 3 * * ?", Handler: job.HandlerShell, Params: map[string]string{"command": "echo closing"}})
	consoleEdit(t, c, f, "ledger", cur.Version, string(def))

	file := filepath.Join(t.TempDir(), "finance.yaml")
	if err := os.WriteFile(file, []byte("jobs:\n  - name: ledger-report\n    schedule: \"0 0 6 * * ?\"\n    handler: shell\n    params:\n      command: echo report\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cli("config", "apply", file)
	c.StartAppClient(AppClientOptions{ID: "app-1", Declare: []job.Spec{{Name: "ledger-feed", Schedule: "0 0 7 * * ?", Handler: "feed"}}})

	history := cli("job", "history", "ledger")
	for _, want := range []string{
		`1\s+created\s+test-admin\s+\S+\s+\S+\s+-\s+first cut`, `2\s+updated\s+test-admin\s+\S+\s+\S+\s+-\s+after the batch`,
		`3\s+paused\s+test-admin`, `4\s+resumed\s+test-admin\s+\S+\s+\S+\s+-\s+batch moved`,
		`5\s+updated\s+test-admin\s+console@` + f.ID,
	} {
		if !regexp.MustCompile(want).MatchString(history) {
			t.Errorf("clover job history ledger has no line like %q:\n%s", want, history)
		}
	}
	if h := cli("job", "history", "ledger-report"); !strings.Contains(h, "created") || !strings.Contains(h, "config apply "+file) {
		t.Errorf("the config-applied job's history:\n%s", h)
	}
	testenv.WaitFor(t, 30*time.Second, "the declared job's history", func() bool {
		return regexp.MustCompile(`1\s+declared\s+client:app-1`).MatchString(cli("job", "history", "ledger-feed"))
	})

	if d := cli("job", "diff", "ledger", "1", "2"); !strings.Contains(d, "~ schedule: 0 0 1 * * ? → 0 0 3 * * ?") {
		t.Errorf("diff 1 2:\n%s", d)
	}
	if d := cli("job", "diff", "ledger"); !strings.Contains(d, "version 4 → 5") || !strings.Contains(d, "~ schedule: 0 0 3 * * ? → 0 30 3 * * ?") {
		t.Errorf("the last change:\n%s", d)
	}
	if msg := clover(t, c, f, true, "job", "rollback", "ledger", "1", "--expect", "4"); !strings.Contains(msg, "changed since version 4 (it is at 5 now)") {
		t.Errorf("a rollback from a stale view: %s", msg)
	}
	cli("job", "tag", "ledger", "2", "before-migration")
	if out := cli("job", "rollback", "ledger", "1", "-m", "1 a.m. after all"); !strings.Contains(out, "version 6 is version 1's definition") {
		t.Fatalf("rollback: %s", out)
	}
	if err := json.Unmarshal([]byte(cli("job", "get", "ledger")), &cur); err != nil || cur.Schedule != "0 0 1 * * ?" || cur.Version != 6 {
		t.Fatalf("after the rollback: %+v (%v)", cur, err)
	}
	if h := cli("job", "history", "ledger"); !strings.Contains(h, "rolled back (from 1)") || !strings.Contains(h, "1 a.m. after all") {
		t.Errorf("the rollback's revision:\n%s", h)
	}
	// Keep 6: versions 7, 8 and 9 prune 1, 2 and 3 (in that order, in the background); 2 is tagged and stays.
	cli("job", "update", "ledger", "--schedule", "0 0 2 * * ?")
	cli("job", "update", "ledger", "--schedule", "0 0 4 * * ?")
	cli("job", "update", "ledger", "--schedule", "0 0 5 * * ?")
	testenv.WaitFor(t, 30*time.Second, "version 3, out of the window, to be pruned", func() bool {
		return isStatus(c.Call(f, "GET", "/api/v1/jobs/ledger/revisions/3", nil, nil), http.StatusNotFound)
	})
	if err := c.Call(f, "GET", "/api/v1/jobs/ledger/revisions/1", nil, nil); !isStatus(err, http.StatusNotFound) {
		t.Errorf("version 1, out of the window: %v, want pruned (404)", err)
	}
	var rev store.Revision
	if err := json.Unmarshal([]byte(cli("job", "show", "ledger", "--version", "2")), &rev); err != nil || rev.Spec.Schedule != "0 0 3 * * ?" || len(rev.Tags) != 1 {
		t.Errorf("the tagged version 2: %+v (%v)", rev, err)
	}

	// Deleted by mistake, restored.
	cli("job", "delete", "ledger", "-m", "oops")
	if h := cli("job", "history", "ledger"); !strings.Contains(h, "ledger is deleted (version 10)") {
		t.Errorf("a deleted job's history:\n%s", h)
	}
	if out := cli("job", "restore", "ledger", "-m", "it was needed"); !strings.Contains(out, "restored ledger (version 11)") {
		t.Fatalf("restore: %s", out)
	}
	// An execution names the version it ran.
	id := strings.TrimSpace(cli("job", "trigger", "ledger"))
	e := c.waitState(t, id, job.StateSucceeded, 30*time.Second)
	if e.JobVersion != 11 {
		t.Errorf("the execution ran version %d of its job, want 11", e.JobVersion)
	}
}

// A schedule rolled back on a running cluster: each firing follows the schedule of the version it was
// fired with (even seconds, then 1 mod 4, then even again), the restored schedule from its next due time,
// with no due time lost at either switch and no time fired twice.
func TestARolledBackScheduleFiresFromItsNextDueTime(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	c := StartCluster(t, Options{Servers: 1, Clients: 1})
	leader, _ := c.WaitLeader(30 * time.Second)
	c.WaitClients(1, 30*time.Second)
	c.CreateJob(job.Spec{Name: "tick", Schedule: "0/2 * * * * ?", Handler: job.HandlerShell, Params: map[string]string{"command": "true"}, Overlap: job.OverlapAllow})
	execsOf := func() []job.Execution {
		var out []job.Execution
		if err := c.Call(leader, "GET", "/api/v1/executions?job=tick&limit=1000", nil, &out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	waitRuns := func(version int64, n int) {
		t.Helper()
		testenv.WaitFor(t, 60*time.Second, fmt.Sprintf("%d runs of version %d", n, version), func() bool {
			got := 0
			for _, e := range execsOf() {
				if e.JobVersion == version && e.State == job.StateSucceeded {
					got++
				}
			}
			return got >= n
		})
	}
	waitRuns(1, 3)
	var spec job.Spec
	if err := c.Call(leader, "PUT", "/api/v1/jobs/tick", job.Spec{Schedule: "1/4 * * * * ?", Handler: job.HandlerShell, Params: map[string]string{"command": "true"}, Overlap: job.OverlapAllow, Version: 1}, &spec); err != nil {
		t.Fatal(err)
	}
	v2Since := spec.ActiveSince
	waitRuns(2, 3)
	if err := c.Call(leader, "POST", "/api/v1/jobs/tick/rollback", api.RollbackRequest{Version: 1, Expect: 2}, &spec); err != nil {
		t.Fatal(err)
	}
	v3Since := spec.ActiveSince
	waitRuns(3, 3)
	if err := c.Call(leader, "POST", "/api/v1/jobs/tick/pause", nil, &spec); err != nil {
		t.Fatal(err)
	}
	execs := execsOf()
	seen := map[int64]int{} // by Unix second
	last := map[int64]time.Time{}
	for _, e := range execs {
		at := e.ScheduledAt.UTC()
		seen[at.Unix()]++
		sec := at.Second()
		switch e.JobVersion {
		case 1, 3:
			if sec%2 != 0 {
				t.Errorf("%s fired with version %d at second %d: not its schedule (even seconds)", e.ID, e.JobVersion, sec)
			}
		case 2:
			if sec%4 != 1 {
				t.Errorf("%s fired with version 2 at second %d: not its schedule (1 mod 4)", e.ID, sec)
			}
		default:
			if e.JobVersion != 4 { // the pause
				t.Errorf("%s names version %d", e.ID, e.JobVersion)
			}
		}
		if e.JobVersion == 3 && at.Before(v3Since) {
			t.Errorf("%s: the restored schedule fired a time from before it was restored", e.ID)
		}
		if at.After(last[e.JobVersion]) {
			last[e.JobVersion] = at
		}
	}
	for at, n := range seen {
		if n > 1 {
			t.Errorf("%s fired %d times", time.Unix(at, 0).UTC(), n)
		}
	}
	// None lost: every due time of version 2 between its start and the rollback, and of version 3 from
	// the rollback to its last run, fired.
	for at := v2Since.Truncate(time.Second).Add(time.Second); at.Before(v3Since.Truncate(time.Second)); at = at.Add(time.Second) {
		if at.Second()%4 == 1 && seen[at.Unix()] == 0 {
			t.Errorf("version 2's due time %s did not fire", at.UTC())
		}
	}
	for at := v3Since.Truncate(time.Second).Add(time.Second); !at.After(last[3]); at = at.Add(time.Second) {
		if at.Second()%2 == 0 && seen[at.Unix()] == 0 {
			t.Errorf("the restored schedule's due time %s did not fire", at.UTC())
		}
	}
}
