package monitor

import (
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/registry"
	"github.com/clover-sched/clover/internal/store"
)

var t0 = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

func TestLeaderWatchSaysSinceWhenNoneLeadsAndCountsChanges(t *testing.T) {
	var w leaderWatch
	w.observe("s1", t0)
	w.observe("", t0.Add(time.Second))
	if id, none, changes, known := w.get(t0.Add(2*time.Second), time.Minute); id != "" || !none.Equal(t0.Add(time.Second)) || changes != 0 || !known {
		t.Fatalf("get = %q, %s, %d, %v; want no leader since t0+1s, no change counted", id, none, changes, known)
	}
	w.observe("s2", t0.Add(3*time.Second))
	w.observe("s1", t0.Add(4*time.Second))
	if _, none, changes, _ := w.get(t0.Add(5*time.Second), time.Minute); !none.IsZero() || changes != 2 {
		t.Fatalf("after two changes: none since %s, %d changes", none, changes)
	}
	if _, _, changes, _ := w.get(t0.Add(2*time.Minute), time.Minute); changes != 0 {
		t.Fatalf("changes older than the window still counted: %d", changes)
	}
}

func TestCanRunMirrorsTheLeadersEligibility(t *testing.T) {
	shell := registry.Member{ID: "c1", Handlers: []string{"shell"}, Labels: map[string]string{"zone": "a"}}
	declares := registry.Member{ID: "c2", Jobs: []string{"report"}}
	tests := map[string]struct {
		spec job.Spec
		m    registry.Member
		want bool
	}{
		"by handler":                        {spec: job.Spec{Name: "x", Handler: "shell"}, m: shell, want: true},
		"by name":                           {spec: job.Spec{Name: "report", Handler: "go"}, m: declares, want: true},
		"neither":                           {spec: job.Spec{Name: "x", Handler: "go"}, m: shell, want: false},
		"labels fit":                        {spec: job.Spec{Name: "x", Handler: "shell", Routing: job.Routing{Labels: map[string]string{"zone": "a"}}}, m: shell, want: true},
		"labels do not fit":                 {spec: job.Spec{Name: "x", Handler: "shell", Routing: job.Routing{Labels: map[string]string{"zone": "b"}}}, m: shell, want: false},
		"pinned elsewhere":                  {spec: job.Spec{Name: "x", Handler: "shell", Routing: job.Routing{Clients: []string{"c9"}}}, m: shell, want: false},
		"local job by handler is not fired": {spec: job.Spec{Name: "x", Handler: "shell", Mode: job.ModeLocal}, m: shell, want: false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := canRun(tc.m, tc.spec); got != tc.want {
				t.Errorf("canRun = %v, want %v", got, tc.want)
			}
		})
	}
}

type nopSender struct{}

func (nopSender) Send(context.Context, store.Notification) error { return nil }

func TestNotificationsGoToContactsOrOperatorsOnceAnEpisode(t *testing.T) {
	cfg := DefaultConfig()
	cfg.KeysDir, cfg.TokenFile = "/etc/clover/keys", "/etc/clover/monitor.token"
	cfg.Operators = []string{"ops@example.com", "oncall"}
	m, err := New(cfg, WithLogger(slog.New(slog.DiscardHandler)), WithClock(func() time.Time { return t0 }), WithSender("email", nopSender{}))
	if err != nil {
		t.Fatal(err)
	}
	book := map[string]store.Contact{
		"owner":  {Name: "owner", Email: "owner@example.com", Webhook: "https://hooks.example.com/x"},
		"oncall": {Name: "oncall", Email: "oncall@example.com"},
	}
	p := problem(kindJobNoClient, "lonely")
	p.What, p.Contacts = "job lonely has no live client", []string{"owner", "ghost"}
	got := m.notify(p, t0, store.NotifyProblem, 0, book)
	var to []string
	for _, n := range got {
		to = append(to, n.Channel+":"+n.To)
	}
	if !slices.Equal(to, []string{"email:owner@example.com", "webhook:https://hooks.example.com/x"}) {
		t.Fatalf("recipients %v", to)
	}
	again := m.notify(p, t0, store.NotifyProblem, 0, book)
	if got[0].ID != again[0].ID {
		t.Fatalf("the same message has two ids: %s, %s", got[0].ID, again[0].ID)
	}
	if next := m.notify(p, t0.Add(time.Hour), store.NotifyProblem, 0, book); next[0].ID == got[0].ID {
		t.Fatal("a new episode (raised again) reuses the id of the last one: it would never be mailed")
	}
	if r := m.notify(p, t0, store.NotifyReminder, 2, book); r[0].ID == got[0].ID || r[0].Kind != store.NotifyReminder {
		t.Fatalf("reminder %+v", r[0])
	}
	if got[0].Subject == "" || got[0].Body == "" || len(got[1].Payload) == 0 {
		t.Fatalf("message not rendered: %+v", got)
	}
	p.Contacts = nil // a cluster problem: the operators, by address and by contact name
	to = nil
	for _, n := range m.notify(p, t0, store.NotifyProblem, 0, book) {
		to = append(to, n.To)
	}
	if !slices.Equal(to, []string{"ops@example.com", "oncall@example.com"}) && !slices.Equal(to, []string{"oncall@example.com", "ops@example.com"}) {
		t.Fatalf("operators %v", to)
	}
	delete(m.senders, "email") // no mail server: only the webhooks
	p.Contacts = []string{"owner"}
	if got := m.notify(p, t0, store.NotifyProblem, 0, book); len(got) != 1 || got[0].Channel != "webhook" {
		t.Fatalf("without a mail server: %+v, want the webhook only", got)
	}
}
