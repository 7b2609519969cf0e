package notify

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/clover-sched/clover/internal/store"
)

func TestRenderAlert(t *testing.T) {
	t.Parallel()
	since := time.Date(2030, 1, 2, 9, 4, 5, 0, time.FixedZone("CET", 3600)) // 08:04:05 UTC
	base := AlertView{
		Alert: "client-down/worker-7", What: "client worker-7 is down", Where: "client worker-7", Since: since,
		WhatToDo: "Check the host of worker-7.\nStart the client again: systemctl start clover-client", Cluster: "prod",
		Now: since.Add(3*time.Minute + 20*time.Second),
	}
	tests := map[string]struct {
		kind, wantSubject string
		want, notWant     []string
	}{
		"problem": {
			kind: store.NotifyProblem, wantSubject: "[prod] PROBLEM: client worker-7 is down",
			want: []string{
				"A problem was found on the Clover cluster \"prod\".",
				"What:      client worker-7 is down\n", "Where:     client worker-7\n",
				"Since:     2030-01-02 08:04:05 UTC (for 3m)\n", "Alert:     client-down/worker-7\n",
				"What to do:\n  Check the host of worker-7.\n  Start the client again: systemctl start clover-client\n",
				"Reminders follow",
			},
			notWant: []string{"Cleared"},
		},
		"reminder": {
			kind: store.NotifyReminder, wantSubject: "[prod] STILL OPEN: client worker-7 is down",
			want: []string{"This problem is still open", "Since:     2030-01-02 08:04:05 UTC (for 3m)\n", "What to do:"},
		},
		"recovery": {
			kind: store.NotifyRecovery, wantSubject: "[prod] RECOVERED: client worker-7 is down",
			want: []string{
				"This problem has cleared", "Started:   2030-01-02 08:04:05 UTC\n",
				"Cleared:   2030-01-02 08:07:25 UTC (lasted 3m)\n",
			},
			notWant: []string{"What to do:", "Since:", "Reminders follow"},
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			a := base
			a.Kind = tt.kind
			subject, body := RenderAlert(a)
			if subject != tt.wantSubject {
				t.Errorf("subject %q, want %q", subject, tt.wantSubject)
			}
			for _, w := range tt.want {
				if !strings.Contains(body, w) {
					t.Errorf("body lacks %q:\n%s", w, body)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(body, w) {
					t.Errorf("body has %q:\n%s", w, body)
				}
			}
		})
	}
}

func TestRenderAlertOneLineSubject(t *testing.T) {
	t.Parallel()
	subject, _ := RenderAlert(AlertView{Kind: store.NotifyProblem, What: "two\nlines\r\nBcc: x@example.com", Where: strings.Repeat("w", 300)})
	if strings.ContainsAny(subject, "\r\n") || len([]rune(subject)) > 200 {
		t.Errorf("subject %q is not one short line", subject)
	}
}

func TestHumanDuration(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{
		-time.Second: "0s", 0: "0s", 45 * time.Second: "45s", 3*time.Minute + 59*time.Second: "3m",
		2 * time.Hour: "2h", 2*time.Hour + 5*time.Minute: "2h5m", 26 * time.Hour: "1d2h", 48 * time.Hour: "2d",
	} {
		if got := humanDuration(d); got != want {
			t.Errorf("humanDuration(%s) = %q, want %q", d, got, want)
		}
	}
}

func TestWebhookPayload(t *testing.T) {
	t.Parallel()
	since := time.Date(2030, 1, 2, 8, 4, 5, 0, time.UTC)
	a := AlertView{
		Kind: store.NotifyRecovery, Alert: "job-no-client/report", What: "no client can run job report", Where: "job report",
		Since: since, WhatToDo: "Start a client.", Cluster: "prod", ClearedAt: since.Add(90 * time.Second), Now: since.Add(time.Hour),
	}
	want := `{"kind":"recovery","alert":"job-no-client/report","cluster":"prod","what":"no client can run job report",` +
		`"where":"job report","since":"2030-01-02T08:04:05Z","duration_seconds":90,"what_to_do":"Start a client.",` +
		`"cleared_at":"2030-01-02T08:05:35Z","text":"[prod] RECOVERED: no client can run job report"}`
	if got := string(WebhookPayload(a)); got != want {
		t.Errorf("WebhookPayload =\n%s\nwant\n%s", got, want)
	}

	a.Kind, a.ClearedAt = store.NotifyProblem, time.Time{}
	var p map[string]any
	if err := json.Unmarshal(WebhookPayload(a), &p); err != nil {
		t.Fatal(err)
	}
	if _, ok := p["cleared_at"]; ok || p["duration_seconds"] != float64(3600) || p["kind"] != "problem" {
		t.Errorf("problem payload %v", p)
	}
}
