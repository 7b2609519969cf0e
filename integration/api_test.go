package integration

import (
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/testenv"
)

// clover runs the CLI against server m and returns its stdout; a non-zero exit fails the test unless
// wantErr, in which case stderr is returned.
func clover(t *testing.T, c *Cluster, m *Member, wantErr bool, args ...string) string {
	t.Helper()
	cmd := exec.Command(c.Bin, append(args, "--api", "http://"+m.API)...)
	cmd.Env = append(os.Environ(), "CLOVER_TOKEN="+c.Tokens.Admin)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if wantErr {
		if err == nil {
			t.Fatalf("clover %s: succeeded, want an error; output:\n%s", strings.Join(args, " "), stdout.String())
		}
		return stderr.String()
	}
	if err != nil {
		t.Fatalf("clover %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}

// The operator's path: every job and exec command of the CLI, through a follower (writes are forwarded to
// the leader), and clear errors for bad input.
func TestCLIManagesJobsThroughAnyServer(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	c := StartCluster(t, Options{Servers: 2, Clients: 1})
	leader, _ := c.WaitLeader(10 * time.Second)
	var follower *Member
	for _, m := range c.Servers {
		if m != leader {
			follower = m
		}
	}

	status := clover(t, c, follower, false, "cluster", "status")
	if !strings.Contains(status, "leader:") || !strings.Contains(status, leader.ID) || !strings.Contains(status, "client-1") {
		t.Fatalf("cluster status does not name the leader and the client:\n%s", status)
	}

	clover(t, c, follower, false, "job", "add", "greet", "--schedule", "0 0 3 * * ?", "--command", "echo hello-$CLOVER_PARAM_WHO", "--param", "who=world", "--overridable", "who")
	var spec job.Spec
	if err := json.Unmarshal([]byte(clover(t, c, leader, false, "job", "get", "greet")), &spec); err != nil {
		t.Fatal(err)
	}
	if spec.Version != 1 || spec.Handler != job.HandlerShell || spec.Source != "api" || spec.Params["who"] != "world" {
		t.Fatalf("created job = %+v", spec)
	}
	if out := clover(t, c, follower, false, "job", "list"); !strings.Contains(out, "greet") || !strings.Contains(out, "0 0 3 * * ?") {
		t.Fatalf("job list:\n%s", out)
	}
	clover(t, c, follower, false, "job", "update", "greet", "--schedule", "0 30 3 * * ?")
	if err := json.Unmarshal([]byte(clover(t, c, follower, false, "job", "get", "greet")), &spec); err != nil {
		t.Fatal(err)
	}
	if spec.Version != 2 || spec.Schedule != "0 30 3 * * ?" || spec.Params["who"] != "world" {
		t.Fatalf("updated job = %+v", spec)
	}
	if out := clover(t, c, follower, false, "job", "next", "greet", "-n", "3"); strings.Count(out, "T03:30:00Z") != 3 {
		t.Fatalf("job next should list three 03:30:00 times:\n%s", out)
	}
	if out := clover(t, c, follower, false, "job", "pause", "greet"); !strings.Contains(out, "paused=true") {
		t.Fatalf("pause: %s", out)
	}
	if out := clover(t, c, follower, false, "job", "resume", "greet"); !strings.Contains(out, "paused=false") {
		t.Fatalf("resume: %s", out)
	}

	if msg := clover(t, c, follower, true, "job", "trigger", "greet", "--param", "command=id"); !strings.Contains(msg, "never sets the command") {
		t.Fatalf("a trigger setting the command: %s", msg)
	}
	id := strings.TrimSpace(clover(t, c, follower, false, "job", "trigger", "greet", "--param", "who=operator"))
	if !strings.HasPrefix(id, "greet@manual-") {
		t.Fatalf("trigger printed %q, want an execution id", id)
	}
	var e job.Execution
	testenv.WaitFor(t, 20*time.Second, "the triggered run to end", func() bool {
		out := clover(t, c, follower, false, "exec", "get", id)
		return json.Unmarshal([]byte(out), &e) == nil && e.State.Terminal()
	})
	if e.State != job.StateSucceeded || e.Result == nil || strings.TrimSpace(e.Result.Output) != "hello-operator" || e.Client != "client-1" || e.Trigger != job.TriggerManual {
		t.Fatalf("triggered execution = %+v (result %+v)", e, e.Result)
	}
	if out := clover(t, c, leader, false, "exec", "list", "--job", "greet", "--state", "succeeded"); !strings.Contains(out, id) {
		t.Fatalf("exec list does not show %s:\n%s", id, out)
	}
	if out := clover(t, c, follower, false, "exec", "output", id); out != "hello-operator\n" {
		t.Fatalf("exec output printed %q", out)
	}
	if out := clover(t, c, follower, false, "exec", "output", id, "--offset", "6"); out != "operator\n" {
		t.Fatalf("exec output from byte 6 printed %q", out)
	}

	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"bad cron":      {[]string{"job", "add", "bad", "--schedule", "0 61 * * * ?", "--command", "true"}, "schedule"},
		"bad zone":      {[]string{"job", "add", "bad", "--schedule", "@hourly", "--tz", "Mars/Olympus", "--command", "true"}, "Mars/Olympus"},
		"no handler":    {[]string{"job", "add", "bad", "--schedule", "@hourly"}, "handler is required"},
		"bad name":      {[]string{"job", "add", "no/slash", "--schedule", "@hourly", "--command", "true"}, "job name"},
		"duplicate":     {[]string{"job", "add", "greet", "--schedule", "@hourly", "--command", "true"}, "exists"},
		"unknown job":   {[]string{"job", "get", "nope"}, "not found"},
		"unknown exec":  {[]string{"exec", "get", "nope@2000-01-01T00:00:00Z"}, "not found"},
		"trigger gone":  {[]string{"job", "trigger", "nope"}, "not found"},
		"bad exec list": {[]string{"exec", "list", "--state", "sleeping"}, "state"},
	} {
		t.Run(name, func(t *testing.T) {
			if msg := clover(t, c, follower, true, tc.args...); !strings.Contains(msg, tc.want) {
				t.Errorf("error %q does not mention %q", msg, tc.want)
			}
		})
	}

	clover(t, c, follower, false, "job", "delete", "greet")
	if err := c.Call(leader, "GET", "/api/v1/jobs/greet", nil, nil); !isStatus(err, http.StatusNotFound) {
		t.Fatalf("deleted job: err = %v, want 404", err)
	}
}

// Raw API errors are JSON with a message and the right status.
func TestAPIErrorsAreJSON(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	c := StartCluster(t, Options{Servers: 1, Clients: 0})
	s := c.Servers[0]
	for name, tc := range map[string]struct {
		method, path string
		body         any
		status       int
	}{
		"unknown field": {"POST", "/api/v1/jobs", map[string]any{"name": "x", "schedule": "@hourly", "handler": "noop", "colour": "red"}, 400},
		"not json":      {"POST", "/api/v1/jobs", "just a string", 400},
		"no route":      {"GET", "/api/v1/nothing", nil, 404},
		"bad limit":     {"GET", "/api/v1/executions?limit=0", nil, 400},
		"rename":        {"PUT", "/api/v1/jobs/a", map[string]any{"name": "b", "schedule": "@hourly", "handler": "noop"}, 400},
	} {
		t.Run(name, func(t *testing.T) {
			err := c.Call(s, tc.method, tc.path, tc.body, nil)
			var apiErr *APIError
			if !errors.As(err, &apiErr) || apiErr.Status != tc.status {
				t.Fatalf("err = %v, want HTTP %d", err, tc.status)
			}
			var body struct {
				Error string `json:"error"`
			}
			if json.Unmarshal([]byte(apiErr.Body), &body) != nil || body.Error == "" {
				t.Fatalf("body %q is not a JSON error", apiErr.Body)
			}
		})
	}
}

func isStatus(err error, status int) bool {
	var apiErr *APIError
	return errors.As(err, &apiErr) && apiErr.Status == status
}
