package integration

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/testenv"
)

// ledger is a file that every run of a ledger job appends one line to: "<execution id> <client id>". It
// records what actually ran, which is what "never twice, never lost" is about, not what was recorded.
type ledger struct {
	path string
}

func newLedger(t *testing.T) *ledger {
	return &ledger{path: filepath.Join(t.TempDir(), "ledger.txt")}
}

// job returns a shell job that appends to the ledger on every run.
func (l *ledger) job(name, schedule string) job.Spec {
	return job.Spec{
		Name: name, Schedule: schedule, Handler: job.HandlerShell,
		Params: map[string]string{"command": fmt.Sprintf(`echo "$CLOVER_EXECUTION $CLOVER_CLIENT" >> %s`, l.path)},
		// These tests count firings: each must run whatever the previous one is doing (a failover holds an
		// inherited execution for a few seconds, which forbid would turn into skipped firings).
		Overlap: job.OverlapAllow,
	}
}

type run struct {
	execID    string
	client    string
	scheduled time.Time // zero for manual runs
}

func (l *ledger) runs(t *testing.T) []run {
	t.Helper()
	f, err := os.Open(l.path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []run
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		id, client, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			t.Fatalf("ledger line %q is not '<execution> <client>'", sc.Text())
		}
		r := run{execID: id, client: client}
		if _, at, ok := strings.Cut(id, "@"); ok {
			r.scheduled, _ = time.Parse(time.RFC3339Nano, at)
		}
		out = append(out, r)
	}
	return out
}

// bySecond groups the runs of scheduled executions by scheduled time, in Unix seconds (time.Time values
// are not comparable map keys across locations).
func bySecond(runs []run) map[int64][]run {
	m := map[int64][]run{}
	for _, r := range runs {
		if !r.scheduled.IsZero() {
			m[r.scheduled.Unix()] = append(m[r.scheduled.Unix()], r)
		}
	}
	return m
}

// waitComplete waits until every second in [from, to] has run (late runs included), then checks that each
// ran exactly once.
func (l *ledger) waitComplete(t *testing.T, c *Cluster, from, to time.Time, timeout time.Duration) {
	t.Helper()
	testenv.Poll(timeout, func() bool {
		seconds := bySecond(l.runs(t))
		for s := from.Truncate(time.Second); !s.After(to); s = s.Add(time.Second) {
			if len(seconds[s.Unix()]) == 0 {
				return false
			}
		}
		return true
	})
	checkEverySecondOnce(t, l.runs(t), from, to)
}

// checkEverySecondOnce fails unless every second in [from, to] ran exactly once, and no second at all ran
// twice.
func checkEverySecondOnce(t *testing.T, runs []run, from, to time.Time) {
	t.Helper()
	seconds := bySecond(runs)
	var problems []string
	for s, rs := range seconds {
		if len(rs) > 1 {
			problems = append(problems, fmt.Sprintf("%s ran %d times: %v", time.Unix(s, 0).Format(time.TimeOnly), len(rs), rs))
		}
	}
	for s := from.Truncate(time.Second); !s.After(to); s = s.Add(time.Second) {
		if len(seconds[s.Unix()]) == 0 {
			problems = append(problems, fmt.Sprintf("%s never ran", s.Format(time.TimeOnly)))
		}
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		t.Fatalf("%d problems between %s and %s:\n  %s", len(problems), from.Format(time.TimeOnly), to.Format(time.TimeOnly), strings.Join(problems, "\n  "))
	}
}

// waitRunAfter waits until the ledger holds a run scheduled at or after at.
func (l *ledger) waitRunAfter(t *testing.T, c *Cluster, at time.Time, timeout time.Duration) {
	t.Helper()
	if testenv.Poll(timeout, func() bool {
		return slices.ContainsFunc(l.runs(t), func(r run) bool { return !r.scheduled.Before(at) })
	}) {
		return
	}
	t.Fatalf("no run scheduled at or after %s within %s\n%s", at.Format(time.TimeOnly), timeout, c.Logs(30))
}

func firstScheduled(runs []run) time.Time {
	var first time.Time
	for _, r := range runs {
		if !r.scheduled.IsZero() && (first.IsZero() || r.scheduled.Before(first)) {
			first = r.scheduled
		}
	}
	return first
}

// startTicking starts a cluster with a job "tick" firing every second into a ledger, and waits until it
// has run for a couple of seconds. It returns the first second that every later check may count on.
func startTicking(t *testing.T, opts Options) (*Cluster, *ledger, time.Time) {
	t.Helper()
	c := StartCluster(t, opts)
	l := newLedger(t)
	c.CreateJob(l.job("tick", "@every 1s"))
	start := time.Now().Add(2 * time.Second).Truncate(time.Second)
	l.waitRunAfter(t, c, start.Add(time.Second), 30*time.Second)
	return c, l, start
}

// otherServer returns a server other than m.
func (c *Cluster) otherServer(m *Member) *Member {
	for _, s := range c.Servers {
		if s != m {
			return s
		}
	}
	return nil
}
