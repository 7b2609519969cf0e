package main

import (
	"fmt"
	"io"
	"slices"
	"syscall"
	"time"

	"github.com/clover-sched/clover/integration"
	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/testenv"
)

// runFailover: 2 servers and 1 client running a few jobs. The leader is stopped, by SIGKILL (its
// ZooKeeper session must expire) or by SIGTERM (it resigns), and the time until the other server reports
// itself leading is measured; the stopped server is started again as the standby of the next round.
func runFailover(t *T, s settings, out io.Writer) {
	c := startCluster(t, integration.Options{Servers: 2, Clients: 1})
	for i := range 3 {
		c.CreateJob(job.Spec{Name: fmt.Sprintf("tick-%d", i+1), Schedule: "@every 1s", Handler: "noop", Overlap: job.OverlapAllow})
	}
	measure := func(sig syscall.Signal) []time.Duration {
		var took []time.Duration
		for r := range s.rounds {
			d := failoverOnce(t, c, sig)
			t.Progressf("%s round %d: the standby led after %s", sig, r+1, d.Round(time.Millisecond))
			took = append(took, d)
		}
		slices.Sort(took)
		return took
	}
	killed := measure(syscall.SIGKILL)
	stopped := measure(syscall.SIGTERM)

	tb := newTable(fmt.Sprintf("failover: 2 servers + 1 client, %d rounds each, ZooKeeper session timeout %s", s.rounds, sessionTimeout),
		"leader stopped by", "min", "median", "max", "aim")
	row := func(what string, d []time.Duration, aim string) {
		tb.add(what, fmtDur(d[0]), fmtDur(d[len(d)/2]), fmtDur(d[len(d)-1]), aim)
	}
	row("SIGKILL (session expires)", killed, fmt.Sprintf("≤ session timeout + 1 s (%s)", sessionTimeout+time.Second))
	row("SIGTERM (resigns first)", stopped, "far below SIGKILL")
	tb.note("time from the signal until the other server's /metrics shows clover_server_is_leader 1 (polled every 10 ms)")
	emit(out, tb)
}

// failoverOnce stops the current leader with sig, measures until the other server leads, then starts the
// stopped server again and waits until it is a ready standby.
func failoverOnce(t *T, c *integration.Cluster, sig syscall.Signal) time.Duration {
	old, _ := c.WaitLeader(30 * time.Second)
	var standby *integration.Member
	for _, m := range c.Servers {
		if m != old {
			standby = m
		}
	}
	start := time.Now()
	if sig == syscall.SIGKILL {
		old.Kill()
	} else if err := old.Signal(sig); err != nil {
		t.Fatalf("signal %s to %s: %v", sig, old.ID, err)
	}
	leads := func() bool { v, err := c.Metric(standby, "clover_server_is_leader"); return err == nil && v == 1 }
	for !leads() {
		if time.Since(start) > 30*time.Second {
			t.Fatalf("%s did not lead within 30s of %s to %s\n%s", standby.ID, sig, old.ID, c.Logs(30))
		}
		time.Sleep(10 * time.Millisecond)
	}
	took := time.Since(start)

	if !old.Proc.Wait(15 * time.Second) {
		t.Logf("%s did not stop within 15s of %s; killing it", old.ID, sig)
		old.Kill()
	}
	c.Start(old)
	ready := testenv.Poll(30*time.Second, func() bool {
		v, err := c.Metric(old, "clover_server_is_leader")
		if err != nil || v != 0 {
			return false
		}
		st, err := c.Status(standby)
		return err == nil && len(st.Servers) == len(c.Servers)
	})
	if !ready {
		t.Fatalf("%s did not come back as a standby within 30s\n%s", old.ID, c.Logs(30))
	}
	return took
}
