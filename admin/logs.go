package admin

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/store"
)

// logsData is the logs page (the design's log management): executions whose error or output mentions a
// text, by job, client and time; the alerts, and the notifications sent for them.
type logsData struct {
	Text, Job, Client string
	Hours             int // how far back the search reads
	Searched          bool
	Executions        []job.Execution
	Alerts            []store.Alert
	Notifications     []store.Notification
}

// logsLimit bounds one search's answer.
const logsLimit = 100

// logsHours are the lookbacks offered: a search for rare text reads every history bucket in its range.
var logsHours = []int{1, 6, 24, 24 * 7, 24 * 30}

func (c *Console) logs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	d := logsData{Text: strings.TrimSpace(q.Get("text")), Job: strings.TrimSpace(q.Get("job")), Client: strings.TrimSpace(q.Get("client")), Hours: 24}
	fmt.Sscan(q.Get("hours"), &d.Hours)
	if d.Hours < 1 || d.Hours > 24*30 {
		d.Hours = 24
	}
	if d.Text != "" || d.Job != "" || d.Client != "" {
		d.Searched = true
		v := url.Values{"limit": {fmt.Sprint(logsLimit)}, "since": {c.now().Add(-time.Duration(d.Hours) * time.Hour).UTC().Format(time.RFC3339Nano)}}
		for k, x := range map[string]string{"text": d.Text, "job": d.Job, "client": d.Client} {
			if x != "" {
				v.Set(k, x)
			}
		}
		if d.Text == "" {
			v.Set("state", string(job.StateFailed)) // without a text: the failures
		}
		if err := c.get(r, "/api/v1/executions?"+v.Encode(), &d.Executions); err != nil {
			c.fail(w, r, http.StatusBadGateway, err)
			return
		}
	}
	_ = c.get(r, "/api/v1/alerts?state=all", &d.Alerts)
	_ = c.get(r, "/api/v1/notifications?limit=20", &d.Notifications)
	c.render(w, r, http.StatusOK, "logs", d)
}

// excerpt is the part of s around the first match of text (any case), at most about 240 bytes, cut at
// character boundaries. The match is found in s itself: lowercasing changes some characters' lengths,
// and an index into the lowercased text may lie past the end of s.
func excerpt(s, text string) string {
	const around = 120
	var loc []int
	if text != "" {
		loc = regexp.MustCompile("(?i)" + regexp.QuoteMeta(text)).FindStringIndex(s)
	}
	if loc == nil {
		if len(s) > 2*around {
			return "…" + s[runeStart(s, len(s)-2*around):]
		}
		return s
	}
	from, to := runeStart(s, max(0, loc[0]-around)), runeStart(s, min(len(s), loc[1]+around))
	out := s[from:to]
	if from > 0 {
		out = "…" + out
	}
	if to < len(s) {
		out += "…"
	}
	return out
}

// runeStart moves i back to the start of the character it falls in.
func runeStart(s string, i int) int {
	for i > 0 && i < len(s) && !utf8.RuneStart(s[i]) {
		i--
	}
	return i
}
