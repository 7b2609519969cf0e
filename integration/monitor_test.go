package integration

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/store"
	"github.com/clover-sched/clover/internal/testenv"
)

// waitMail waits for exactly one mail to to that contains every word, and returns it.
func waitMail(t *testing.T, c *Cluster, sink *smtpSink, timeout time.Duration, to string, words ...string) mail {
	t.Helper()
	if !testenv.Poll(timeout, func() bool { return len(sink.matching(to, words...)) > 0 }) {
		var got []string
		for _, m := range sink.Mails() {
			got = append(got, fmt.Sprintf("%v: %s", m.To, m.subject()))
		}
		t.Fatalf("no mail to %s with %q within %s; got %d:\n  %s\n%s", to, words, timeout, len(got), strings.Join(got, "\n  "), c.Logs(40))
	}
	return sink.matching(to, words...)[0]
}

// Two monitors watch a cluster and mail through a real SMTP server: a job with no client, an overdue run,
// a client killed, the leader killed, and the mail server down for a while. Each problem is mailed once,
// to the job's contact or the operators, and says what, where, since when and what to do; a recovery
// follows when the problem clears.
func TestMonitorMailsWhatDiesAndHangs(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	c := StartCluster(t, Options{Servers: 2, Clients: 2})
	sink := startSMTPSink(t)
	host, port, _ := net.SplitHostPort(sink.Addr)
	env := []string{
		"CLOVER_SMTP_HOST=" + host, "CLOVER_SMTP_PORT=" + port, "CLOVER_SMTP_FROM=clover@example.com",
		"CLOVER_SMTP_STARTTLS=never", "CLOVER_OPERATORS=ops@example.com", "CLOVER_INTERVAL=500ms",
		"CLOVER_UNRESPONSIVE=5s", "CLOVER_CLUSTER=test-cluster", "CLOVER_NO_CLIENT=2s",
	}
	monitors := []*Member{c.AddMonitor("monitor-1", env...), c.AddMonitor("monitor-2", env...)}
	testenv.WaitFor(t, 30*time.Second, "one active monitor", func() bool {
		active := 0.0
		for _, m := range monitors {
			v, err := c.Metric(m, "clover_monitor_active")
			if err != nil {
				return false
			}
			active += v
		}
		return active == 1
	})
	if err := c.Call(c.AnyServer(), "POST", "/api/v1/contacts", map[string]string{"name": "owner", "email": "owner@example.com"}, nil); err != nil {
		t.Fatalf("add contact: %v", err)
	}

	// A job no client can run: its owner hears of it before it is due.
	c.CreateJob(job.Spec{Name: "lonely", Schedule: "@every 1h", Handler: "nobody-serves-this", Contacts: []string{"owner"}})
	m := waitMail(t, c, sink, 30*time.Second, "owner@example.com", "lonely", "no live client")
	if _, text := m.parsed(); !strings.Contains(text, "nobody-serves-this") || !strings.Contains(text, "next firing") {
		t.Errorf("mail about the lonely job does not say what to do or when it is due:\n%s", text)
	}

	// A run past its overdue limit.
	c.CreateJob(job.Spec{Name: "slow", Schedule: "@every 1h", Handler: job.HandlerShell, Params: map[string]string{"command": "sleep 6"},
		Overdue: job.Overdue{After: job.Duration(time.Second)}, Contacts: []string{"owner"}})
	if err := c.Call(c.AnyServer(), "POST", "/api/v1/jobs/slow/trigger", nil, nil); err != nil {
		t.Fatal(err)
	}
	waitMail(t, c, sink, 30*time.Second, "owner@example.com", "slow", "overdue")

	// A client killed.
	victim := c.Clients[1]
	victim.Kill()
	m = waitMail(t, c, sink, 30*time.Second, "ops@example.com", "client "+victim.ID+" left the cluster")
	if _, text := m.parsed(); !strings.Contains(text, "test-cluster") || !strings.Contains(text, "Since:") || !strings.Contains(text, "What to do") {
		t.Errorf("mail about %s lacks the cluster or since when:\n%s", victim.ID, text)
	}
	c.Start(victim)
	waitMail(t, c, sink, 30*time.Second, "ops@example.com", "client "+victim.ID, "cleared")

	// The leader killed.
	leader, _ := c.WaitLeader(10 * time.Second)
	leader.Kill()
	waitMail(t, c, sink, 30*time.Second, "ops@example.com", "server "+leader.ID+" left the cluster")
	// Removed on purpose: an operator clears the alert; the recovery goes out, and it is not raised again.
	if err := c.Call(c.AnyServer(), "POST", "/api/v1/alerts/clear?key=server-down/"+leader.ID, nil, nil); err != nil {
		t.Fatalf("clear alert: %v", err)
	}
	waitMail(t, c, sink, 30*time.Second, "ops@example.com", "server "+leader.ID, "RECOVERED")
	testenv.Poll(2*time.Second, func() bool { return false }) // a few checks
	if a, err := c.Store().GetAlert(t.Context(), "server-down/"+leader.ID); err != nil || a.State != store.AlertCleared {
		t.Fatalf("alert of the removed server %+v, %v: want it to stay cleared", a, err)
	}

	// The mail server down: the problem is recorded, and mailed once it is back.
	sink.Stop()
	c.CreateJob(job.Spec{Name: "lonely-2", Schedule: "@every 1h", Handler: "nobody-serves-this", Contacts: []string{"owner"}})
	testenv.WaitFor(t, 30*time.Second, "the alert recorded", func() bool {
		a, err := c.Store().GetAlert(t.Context(), "job-no-client/lonely-2")
		return err == nil && a.State == store.AlertOpen
	})
	testenv.Poll(3*time.Second, func() bool { return false }) // the monitors try, and fail, meanwhile
	sink.Start()
	waitMail(t, c, sink, 60*time.Second, "owner@example.com", "lonely-2")

	// Entries waiting in the fallback queue: the leader raises the alert (raised here as a server would);
	// the monitor mails the operators, and the recovery once the server clears it.
	if _, err := c.Store().RaiseAlert(t.Context(), store.Alert{
		Key: "fallback-queue", Kind: "fallback", Summary: "3 entries wait in the fallback queue since 2026-11-23T10:00:00Z, from clients app-1",
		Since: time.Now().Add(-time.Minute), RaisedBy: "server-1",
	}, time.Now()); err != nil {
		t.Fatal(err)
	}
	waitMail(t, c, sink, 30*time.Second, "ops@example.com", "3 entries wait in the fallback queue")
	if _, err := c.Store().ClearAlert(t.Context(), "fallback-queue", time.Now()); err != nil {
		t.Fatal(err)
	}
	waitMail(t, c, sink, 30*time.Second, "ops@example.com", "fallback", "cleared")

	// Every mail went out once, though two monitors ran and the mail server was down.
	testenv.Poll(3*time.Second, func() bool { return false })
	seen := map[string]int{}
	for _, m := range sink.Mails() {
		seen[strings.Join(m.To, ",")+" | "+m.subject()]++
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("mail %q sent %d times, want once", k, n)
		}
	}
}
