package admin

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/clover-sched/clover/api"
	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/keyring"
)

// jobsPerPage is how many jobs one page of the list shows.
const jobsPerPage = 50

// jobsData is a page of the job list.
type jobsData struct {
	Query   string
	State   string // "", "active" or "paused"
	Jobs    []job.Spec
	Total   int // matching the filter
	Page    int // from 1
	Pages   int
	PrevURL string
	NextURL string
}

// jobs lists the jobs a page at a time, filtered by text (name, handler, source, schedule) and state.
// The API answers every job at once for now, so this page still reads them all on the server; the
// browser gets one page (the cursor paging in the API is still to do).
func (c *Console) jobs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	d := jobsData{Query: strings.TrimSpace(q.Get("q")), State: q.Get("state")}
	var all []job.Spec
	if err := c.get(r, "/api/v1/jobs", &all); err != nil {
		c.fail(w, r, http.StatusBadGateway, err)
		return
	}
	needle := strings.ToLower(d.Query)
	var match []job.Spec
	for _, s := range all {
		switch {
		case d.State == "paused" && !s.Paused, d.State == "active" && s.Paused:
			continue
		case needle != "" && !strings.Contains(strings.ToLower(s.Name+" "+s.Handler+" "+s.Source+" "+s.Schedule), needle):
			continue
		}
		match = append(match, s)
	}
	slices.SortFunc(match, func(a, b job.Spec) int { return strings.Compare(a.Name, b.Name) })
	d.Total = len(match)
	d.Pages = max(1, (d.Total+jobsPerPage-1)/jobsPerPage)
	d.Page, _ = strconv.Atoi(q.Get("page"))
	d.Page = min(max(d.Page, 1), d.Pages)
	from := (d.Page - 1) * jobsPerPage
	d.Jobs = match[from:min(from+jobsPerPage, len(match))]
	link := func(p int) string {
		v := url.Values{"page": {strconv.Itoa(p)}}
		if d.Query != "" {
			v.Set("q", d.Query)
		}
		if d.State != "" {
			v.Set("state", d.State)
		}
		return "/ui/jobs?" + v.Encode()
	}
	if d.Page > 1 {
		d.PrevURL = link(d.Page - 1)
	}
	if d.Page < d.Pages {
		d.NextURL = link(d.Page + 1)
	}
	c.render(w, r, http.StatusOK, "jobs", d)
}

// jobData is a job's page.
type jobData struct {
	Job        job.Spec
	Next       []api.NextFires
	NextErr    string
	Executions []job.Execution
	ExecErr    string
	Message    string // what an action just did
}

func (c *Console) jobPage(w http.ResponseWriter, r *http.Request) {
	c.renderJob(w, r, http.StatusOK, r.PathValue("name"), r.URL.Query().Get("done"))
}

func (c *Console) renderJob(w http.ResponseWriter, r *http.Request, status int, name, message string) {
	d := jobData{Message: message}
	esc := url.PathEscape(name)
	if err := c.get(r, "/api/v1/jobs/"+esc, &d.Job); err != nil {
		c.fail(w, r, http.StatusBadGateway, err)
		return
	}
	var next api.NextFires
	if err := c.get(r, "/api/v1/jobs/"+esc+"/next?n=5", &next); err != nil {
		d.NextErr = err.Error()
	} else {
		d.Next = []api.NextFires{next}
	}
	if err := c.get(r, "/api/v1/executions?limit=20&job="+url.QueryEscape(name), &d.Executions); err != nil {
		d.ExecErr = err.Error()
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
		var out api.TriggerResponse
		if err := c.call(r, http.MethodPost, path+"trigger", api.TriggerRequest{}, &out); err != nil {
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
