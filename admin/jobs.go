package admin

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/clover-sched/clover/api"
	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/keyring"
)

// jobsPerPage is how many jobs one page of the list shows.
const jobsPerPage = 50

// jobsData is a page of the job list.
type jobsData struct {
	Query string
	State string // "", "active" or "paused"
	// Exact filters, by the API's names: handler, source, client, label, contact.
	Exact    map[string]string
	Jobs     []job.Spec
	After    string // where this page starts ("" on the first)
	FirstURL string // back to the first page, when this is not it
	NextURL  string
}

// jobFilters are the job list's exact filters, by the API's names.
var jobFilters = []string{"handler", "client", "label", "source", "contact"}

// jobs lists the jobs a page at a time in name order, filtered by text (name, handler, source) and state,
// with the API's cursor (the last name shown): a page reads what it shows, however many jobs there are.
func (c *Console) jobs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	d := jobsData{Query: strings.TrimSpace(q.Get("q")), State: q.Get("state"), After: q.Get("after")}
	filter := url.Values{}
	if d.Query != "" {
		filter.Set("q", d.Query)
	}
	if d.State == "paused" || d.State == "active" {
		filter.Set("state", d.State)
	}
	d.Exact = map[string]string{}
	for _, k := range jobFilters {
		if v := strings.TrimSpace(q.Get(k)); v != "" {
			filter.Set(k, v)
			d.Exact[k] = v
		}
	}
	read := url.Values{"limit": {strconv.Itoa(jobsPerPage + 1)}} // one more says whether a next page exists
	for k, v := range filter {
		read[k] = v
	}
	if d.After != "" {
		read.Set("after", d.After)
		d.FirstURL = "/ui/jobs?" + filter.Encode()
	}
	var page []job.Spec
	if err := c.get(r, "/api/v1/jobs?"+read.Encode(), &page); err != nil {
		c.fail(w, r, http.StatusBadGateway, err)
		return
	}
	if len(page) > jobsPerPage {
		page = page[:jobsPerPage]
		next := url.Values{"after": {page[len(page)-1].Name}}
		for k, v := range filter {
			next[k] = v
		}
		d.NextURL = "/ui/jobs?" + next.Encode()
	}
	d.Jobs = page
	c.render(w, r, http.StatusOK, "jobs", d)
}

// jobData is a job's page.
type jobData struct {
	Job        job.Spec
	Next       []nextFire
	NextErr    string
	Executions []job.Execution
	ExecErr    string
	Message    string // what an action just did
	// Ended, Failed count the ended executions among Executions: the recent failure rate.
	Ended, Failed int
}

// nextFire is a next fire time in the job's zone; Shift says the zone's offset changed since the time
// before it (a daylight-saving change: a wall-clock time may be skipped or come twice).
type nextFire struct {
	At    time.Time
	Shift string
}

// nextFires puts times in the zone named tz (UTC when empty or unknown) and marks offset changes,
// counting from now.
func nextFires(times []time.Time, tz string, now time.Time) []nextFire {
	loc, err := time.LoadLocation(tz)
	if err != nil || tz == "" {
		loc = time.UTC
	}
	_, prev := now.In(loc).Zone()
	var out []nextFire
	for _, t := range times {
		t = t.In(loc)
		f := nextFire{At: t}
		if _, off := t.Zone(); off != prev {
			f.Shift = fmt.Sprintf("the offset changes from %s to %s before it", utcOffset(prev), utcOffset(off))
			prev = off
		}
		out = append(out, f)
	}
	return out
}

func utcOffset(seconds int) string {
	sign := "+"
	if seconds < 0 {
		sign, seconds = "-", -seconds
	}
	return fmt.Sprintf("UTC%s%02d:%02d", sign, seconds/3600, seconds%3600/60)
}

func (c *Console) jobPage(w http.ResponseWriter, r *http.Request) {
	c.renderJob(w, r, http.StatusOK, r.PathValue("name"), r.URL.Query().Get("done"))
}

func (c *Console) renderJob(w http.ResponseWriter, r *http.Request, status int, name, message string) {
	d := jobData{Message: message}
	esc := url.PathEscape(name)
	if err := c.get(r, "/api/v1/jobs/"+esc, &d.Job); err != nil {
		var ae *apiError
		var page api.RevisionPage
		if errors.As(err, &ae) && ae.status == http.StatusNotFound &&
			c.get(r, "/api/v1/jobs/"+esc+"/revisions?limit=1", &page) == nil && page.Deleted {
			// Deleted: its history says when, by whom, and restores it.
			http.Redirect(w, r, "/ui/jobs/"+esc+"/history", http.StatusSeeOther)
			return
		}
		c.fail(w, r, http.StatusBadGateway, err)
		return
	}
	var next api.NextFires
	if err := c.get(r, "/api/v1/jobs/"+esc+"/next?n=8", &next); err != nil {
		d.NextErr = err.Error()
	} else {
		d.Next = nextFires(next.Next, d.Job.TimeZone, c.now())
	}
	if err := c.get(r, "/api/v1/executions?limit=20&job="+url.QueryEscape(name), &d.Executions); err != nil {
		d.ExecErr = err.Error()
	}
	for _, e := range d.Executions {
		switch e.State {
		case job.StateSucceeded:
			d.Ended++
		case job.StateFailed:
			d.Ended++
			d.Failed++
		}
	}
	c.render(w, r, status, "job", d)
}

// jobAction pauses, resumes or triggers a job, then shows its page again (after a redirect, so that a
// reload does not repeat the action).
func (c *Console) jobAction(w http.ResponseWriter, r *http.Request) {
	name, action := r.PathValue("name"), r.PathValue("action")
	if !viewerOf(r.Context()).may(keyring.RoleOperator) {
		// The API refuses it too; saying so here avoids a request that is sure to fail.
		c.fail(w, r, http.StatusForbidden, fmt.Errorf("%s needs the operator role", action))
		return
	}
	path := "/api/v1/jobs/" + url.PathEscape(name) + "/"
	var done string
	switch action {
	case "pause", "resume":
		if err := c.call(r, http.MethodPost, path+action, nil, nil); err != nil {
			c.fail(w, r, http.StatusBadGateway, err)
			return
		}
		done = action + "d"
	case "trigger":
		params, err := parsePairs(r.PostFormValue("params"))
		if err != nil {
			c.fail(w, r, http.StatusBadRequest, fmt.Errorf("parameters: %w", err))
			return
		}
		var out api.TriggerResponse
		if err := c.call(r, http.MethodPost, path+"trigger", api.TriggerRequest{Params: params}, &out); err != nil {
			c.fail(w, r, http.StatusBadGateway, err)
			return
		}
		done = "triggered: " + out.Execution
	default:
		http.NotFound(w, r)
		return
	}
	http.Redirect(w, r, "/ui/jobs/"+url.PathEscape(name)+"?done="+url.QueryEscape(done), http.StatusSeeOther)
}
