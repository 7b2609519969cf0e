package notify

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/clover-sched/clover/internal/store"
)

// AlertView is what a message says about an alert.
type AlertView struct {
	Kind     string // store.NotifyProblem, NotifyReminder or NotifyRecovery
	Alert    string // the alert's key, e.g. "client-down/client-1"
	What     string // one line: what is wrong
	Where    string // which member, job or execution
	Since    time.Time
	WhatToDo string
	Cluster  string
	// ClearedAt is when a recovered problem cleared; zero means Now.
	ClearedAt time.Time
	// Now is when the message is written, for "for 3m"; zero means time.Now().
	Now time.Time
}

func (a AlertView) now() time.Time {
	if a.Now.IsZero() {
		return time.Now()
	}
	return a.Now
}

func (a AlertView) clearedAt() time.Time {
	if a.ClearedAt.IsZero() {
		return a.now()
	}
	return a.ClearedAt
}

// RenderAlert writes the mail about a: a subject line, and a plain-text body that says what is wrong,
// where, since when (in UTC, and for how long), and what to do; a recovery says when it cleared and how
// long it lasted.
func RenderAlert(a AlertView) (subject, body string) {
	what := oneLine(a.What)
	if what == "" {
		what = a.Alert
	}
	cluster := oneLine(a.Cluster)
	if cluster == "" {
		cluster = "clover"
	}
	var head, opening string
	switch a.Kind {
	case store.NotifyRecovery:
		head, opening = "RECOVERED", "This problem has cleared"
	case store.NotifyReminder:
		head, opening = "STILL OPEN", "This problem is still open"
	default:
		head, opening = "PROBLEM", "A problem was found"
	}
	subject = fmt.Sprintf("[%s] %s: %s", cluster, head, what)
	if where := oneLine(a.Where); where != "" && !strings.Contains(what, where) {
		subject += " (" + where + ")"
	}
	subject = truncate(subject, 200)

	var b strings.Builder
	fmt.Fprintf(&b, "%s on the Clover cluster %q.\n\n", opening, cluster)
	line := func(label, value string) {
		if value != "" {
			fmt.Fprintf(&b, "%-10s %s\n", label+":", value)
		}
	}
	line("What", a.What)
	line("Where", a.Where)
	since := ""
	if !a.Since.IsZero() {
		since = a.Since.UTC().Format("2006-01-02 15:04:05 UTC")
	}
	if a.Kind == store.NotifyRecovery {
		cleared := a.clearedAt()
		line("Started", since)
		if a.Since.IsZero() {
			line("Cleared", cleared.UTC().Format("2006-01-02 15:04:05 UTC"))
		} else {
			line("Cleared", fmt.Sprintf("%s (lasted %s)", cleared.UTC().Format("2006-01-02 15:04:05 UTC"), humanDuration(cleared.Sub(a.Since))))
		}
	} else if since != "" {
		line("Since", fmt.Sprintf("%s (for %s)", since, humanDuration(a.now().Sub(a.Since))))
	}
	line("Alert", a.Alert)
	switch {
	case a.Kind == store.NotifyRecovery:
		b.WriteString("\nNothing more to do. If you acted on this problem, check that what you changed can stay as it is.\n")
	case strings.TrimSpace(a.WhatToDo) != "":
		b.WriteString("\nWhat to do:\n")
		for l := range strings.SplitSeq(strings.TrimSpace(a.WhatToDo), "\n") {
			b.WriteString("  " + strings.TrimRight(l, " \t\r") + "\n")
		}
	}
	b.WriteString("\n-- \nSent by the Clover monitor.")
	if a.Kind != store.NotifyRecovery {
		b.WriteString(" Reminders follow while the problem stays open, and a message when it clears.")
	}
	b.WriteString("\n")
	return subject, b.String()
}

// webhookPayload is the JSON of a webhook notification. Its fields are in a fixed order, and new ones are
// only ever added.
type webhookPayload struct {
	Kind      string    `json:"kind"`
	Alert     string    `json:"alert"`
	Cluster   string    `json:"cluster"`
	What      string    `json:"what"`
	Where     string    `json:"where,omitempty"`
	Since     time.Time `json:"since,omitzero"`
	Seconds   int64     `json:"duration_seconds"` // open so far, or lasted (recovery)
	WhatToDo  string    `json:"what_to_do,omitempty"`
	ClearedAt time.Time `json:"cleared_at,omitzero"` // recovery only
	// Text is the mail's subject line: chat webhooks (Slack, Mattermost) show it as it is.
	Text string `json:"text"`
}

// WebhookPayload is the JSON posted to a webhook about a: {"kind", "alert", "cluster", "what", "where",
// "since", "duration_seconds", "what_to_do", "cleared_at" (recoveries), "text"}, times in UTC RFC 3339.
func WebhookPayload(a AlertView) []byte {
	subject, _ := RenderAlert(a)
	p := webhookPayload{
		Kind: a.Kind, Alert: a.Alert, Cluster: a.Cluster, What: a.What, Where: a.Where,
		WhatToDo: a.WhatToDo, Text: subject,
	}
	if p.Kind == "" {
		p.Kind = store.NotifyProblem
	}
	end := a.now()
	if a.Kind == store.NotifyRecovery {
		end = a.clearedAt()
		p.ClearedAt = end.UTC().Truncate(time.Second)
	}
	if !a.Since.IsZero() {
		p.Since = a.Since.UTC().Truncate(time.Second)
		p.Seconds = int64(end.Sub(a.Since).Seconds())
	}
	out, err := json.Marshal(p)
	if err != nil {
		panic(fmt.Sprintf("notify: marshal webhook payload: %v", err)) // strings and times always marshal
	}
	return out
}

// humanDuration is d for people: 45s, 3m, 2h5m, 3d4h.
func humanDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 24*time.Hour:
		h, m := int(d.Hours()), int(d.Minutes())%60
		if m == 0 {
			return fmt.Sprintf("%dh", h)
		}
		return fmt.Sprintf("%dh%dm", h, m)
	default:
		days, h := int(d.Hours())/24, int(d.Hours())%24
		if h == 0 {
			return fmt.Sprintf("%dd", days)
		}
		return fmt.Sprintf("%dd%dh", days, h)
	}
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
