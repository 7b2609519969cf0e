package admin

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/clover-sched/clover/api"
	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/keyring"
)

// execsPerPage is how many executions one page of the list shows.
const execsPerPage = 50

// executionsData is a page of executions, newest first.
type executionsData struct {
	Job, State string
	Client     string
	Hours      int // only those scheduled within the last Hours (0: any time; a client filter needs one)
	Archived   bool
	States     []job.State
	Executions []job.Execution
	OlderURL   string // the next page (the API's cursor: before, before_id); "" on the last
	NewestURL  string // back to the first page, when this is not it
}

var listedStates = []job.State{job.StatePending, job.StateRunning, job.StateRetrying, job.StateOrphaned, job.StateSucceeded, job.StateFailed, job.StateSkipped}

// executions lists executions newest first, filtered by job and state, a page at a time with the API's
// own cursor (the last one shown), so that no page reads more than it shows.
func (c *Console) executions(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	d := executionsData{Job: q.Get("job"), State: q.Get("state"), Archived: q.Get("archived") == "true", States: listedStates}
	filter := url.Values{}
	if d.Job != "" {
		filter.Set("job", d.Job)
	}
	if d.State != "" {
		filter.Set("state", d.State)
	}
	if d.Archived {
		filter.Set("archived", "true")
	}
	d.Client = strings.TrimSpace(q.Get("client"))
	d.Hours, _ = strconv.Atoi(q.Get("hours"))
	if !slices.Contains(logsHours, d.Hours) {
		d.Hours = 0
	}
	if d.Client != "" {
		filter.Set("client", d.Client)
		if d.Hours == 0 {
			d.Hours = 24 // the API reads a client's executions within a window only
		}
	}
	if d.Hours > 0 {
		filter.Set("hours", strconv.Itoa(d.Hours))
	}
	read := url.Values{}
	for k, v := range filter {
		read[k] = v
	}
	if d.Hours > 0 {
		// A window from now: each page of it reads the same one (the cursor bounds its other end).
		read.Del("hours")
		since := c.now().Add(-time.Duration(d.Hours) * time.Hour).Truncate(time.Minute)
		read.Set("since", since.UTC().Format(time.RFC3339))
	}
	read.Set("limit", fmt.Sprint(execsPerPage+1)) // one more says whether an older page exists
	if b := q.Get("before"); b != "" {
		read.Set("before", b)
		read.Set("before_id", q.Get("before_id"))
		d.NewestURL = "/ui/executions?" + filter.Encode()
	}
	var execs []job.Execution
	if err := c.get(r, "/api/v1/executions?"+read.Encode(), &execs); err != nil {
		c.fail(w, r, http.StatusBadGateway, err)
		return
	}
	if len(execs) > execsPerPage {
		execs = execs[:execsPerPage]
		last := execs[len(execs)-1]
		older := url.Values{}
		for k, v := range filter {
			older[k] = v
		}
		older.Set("before", last.ScheduledAt.UTC().Format(time.RFC3339Nano))
		older.Set("before_id", last.ID)
		d.OlderURL = "/ui/executions?" + older.Encode()
	}
	d.Executions = execs
	c.render(w, r, http.StatusOK, "executions", d)
}

// executionData is an execution's page.
type executionData struct {
	E       job.Execution
	Open    bool // not ended: stop applies
	Message string
	Out     *outputData   // the last outputPage bytes of the newest run's output; nil when unreadable
	Live    *api.InFlight // the leader's view of it while it is open (status, progress); nil otherwise
}

func (c *Console) executionPage(w http.ResponseWriter, r *http.Request) {
	var d executionData
	if err := c.get(r, "/api/v1/executions/"+url.PathEscape(r.PathValue("id")), &d.E); err != nil {
		c.fail(w, r, http.StatusBadGateway, err)
		return
	}
	d.Open = !d.E.State.Terminal()
	d.Message = r.URL.Query().Get("done")
	if d.Open {
		var open []api.InFlight
		if c.get(r, "/api/v1/inflight?"+url.Values{"job": {d.E.Job}, "limit": {"1000"}}.Encode(), &open) == nil {
			for i := range open {
				if open[i].ID == d.E.ID {
					d.Live = &open[i]
				}
			}
		}
	}
	if chunk, err := c.readOutput(r, d.E.ID, 0, -1); err == nil && (chunk.Text != "" || !chunk.Ended) {
		out := newOutputData(d.E.ID, chunk)
		d.Out = &out
	}
	c.render(w, r, http.StatusOK, "execution", d)
}

// executionAction stops an execution, or reruns or closes an orphaned one, then shows it again.
func (c *Console) executionAction(w http.ResponseWriter, r *http.Request) {
	id, action := r.PathValue("id"), r.PathValue("action")
	v := viewerOf(r.Context())
	if !v.may(keyring.RoleOperator) {
		c.fail(w, r, http.StatusForbidden, fmt.Errorf("%s needs the operator role", action))
		return
	}
	body := api.ExecActionRequest{Note: v.Name + " (console)"}
	switch action {
	case "stop", "rerun":
	case "succeeded", "failed": // done, with the outcome a person decided
		body.Status = job.State(action)
		action = "done"
	default:
		http.NotFound(w, r)
		return
	}
	if err := c.call(r, http.MethodPost, "/api/v1/executions/"+url.PathEscape(id)+"/"+action, body, nil); err != nil {
		c.fail(w, r, http.StatusBadGateway, err)
		return
	}
	http.Redirect(w, r, "/ui/executions/"+url.PathEscape(id)+"?done="+url.QueryEscape(action+" asked"), http.StatusSeeOther)
}
