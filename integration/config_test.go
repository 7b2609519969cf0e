package integration

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/store"
	"github.com/clover-sched/clover/internal/testenv"
)

// `clover config apply --watch` keeps a running cluster's jobs in step with a job file: a change becomes
// job additions, updates and deletions; an invalid change is refused as a whole and the jobs in force
// stay; jobs made by others are never touched.
func TestConfigApplyWatchAddsUpdatesAndDeletesJobs(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	c := StartCluster(t, Options{Servers: 1})
	c.CreateJob(job.Spec{Name: "mine", Schedule: "@every 1h", Handler: "noop"}) // made through the API

	dir := t.TempDir()
	path := filepath.Join(dir, "etl.yaml")
	write := func(content string) {
		t.Helper()
		// Editors save by writing a new file and renaming it over the old one.
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	write(`
defaults:
  timeout: 5m
jobs:
  - name: extract
    schedule: "0 0 1 * * ?"
    command: echo extract
  - name: load
    schedule: "0 0 2 * * ?"
    command: echo load
`)
	logPath := filepath.Join(c.Dir, "config-apply.log")
	proc := testenv.StartProcess(t, "config-apply", logPath, append(c.commonEnv(), "CLOVER_API=http://"+c.AnyServer().API, "CLOVER_TOKEN="+c.Tokens.Admin),
		c.Bin, "config", "apply", path, "--watch")
	t.Cleanup(func() { proc.Stop(5 * time.Second) })

	job := func(name string) (job.Spec, bool) {
		spec, err := c.Store().GetJob(t.Context(), name)
		if errors.Is(err, store.ErrNotFound) {
			return spec, false
		}
		if err != nil {
			t.Fatal(err)
		}
		return spec, true
	}
	wait := func(what string, cond func() bool) {
		t.Helper()
		if !testenv.Poll(30*time.Second, cond) {
			t.Fatalf("%s: not within 30s\n%s", what, testenv.TailFile(logPath, 30))
		}
	}
	wait("the file's jobs created", func() bool {
		e, ok1 := job("extract")
		_, ok2 := job("load")
		return ok1 && ok2 && e.Source == "config:etl" && time.Duration(e.Timeout) == 5*time.Minute
	})

	write(`
defaults:
  timeout: 5m
jobs:
  - name: extract
    schedule: "0 30 1 * * ?"
    command: echo extract
  - name: report
    schedule: "0 0 7 * * ?"
    command: echo report
`)
	wait("extract updated, load deleted, report added", func() bool {
		e, _ := job("extract")
		_, hasLoad := job("load")
		_, hasReport := job("report")
		return e.Schedule == "0 30 1 * * ?" && e.Version == 2 && !hasLoad && hasReport
	})
	if _, ok := job("mine"); !ok {
		t.Fatal("the API's job was deleted by config apply")
	}

	// Invalid: a bad cron and a misspelt key. Nothing changes, and the log names the file, line and key.
	write(`
jobs:
  - name: extract
    schedule: "0 99 1 * * ?"
    command: echo extract
  - name: report
    schedule: "0 0 7 * * ?"
    comand: echo report
`)
	wait("the invalid file refused", func() bool {
		log := testenv.TailFile(logPath, 50)
		return strings.Contains(log, "etl.yaml:4: job extract") && strings.Contains(log, "etl.yaml:8: job report: key comand")
	})
	if e, _ := job("extract"); e.Schedule != "0 30 1 * * ?" {
		t.Fatalf("extract changed to %q by a refused file", e.Schedule)
	}
	if _, ok := job("report"); !ok {
		t.Fatal("report deleted by a refused file")
	}

	// Valid again: the watch goes on from the jobs in force.
	write(`
jobs:
  - name: extract
    schedule: "0 30 1 * * ?"
    command: echo extract
    timeout: 5m
  - name: report
    schedule: "0 0 7 * * ?"
    command: echo report
    timeout: 5m
  - name: archive
    schedule: "0 0 3 * * ?"
    command: echo archive
`)
	wait("archive added after the refused change", func() bool {
		_, ok := job("archive")
		return ok
	})
	if e, _ := job("extract"); e.Version != 2 {
		t.Errorf("extract at version %d, want 2: an unchanged job was written again", e.Version)
	}
}
