package admin

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/clover-sched/clover/api"
	"github.com/clover-sched/clover/internal/jobdiff"
	"github.com/clover-sched/clover/internal/keyring"
)

// A job's history tab: its revisions a page at a time, what each changed (the diff with the version
// before it), and for admins a rollback to any of them, conditional on the version the page showed, and
// a restore once the job is deleted.

// historyData is the history tab.
type historyData struct {
	Job     string
	Page    api.RevisionPage
	Diff    *api.JobDiff // the change the page shows (?from=&to=), or the newest
	DiffErr string
	Older   string // the next page
	Message string
	Error   string
}

func (c *Console) historyPage(w http.ResponseWriter, r *http.Request) {
	c.renderHistory(w, r, http.StatusOK, historyData{Message: r.URL.Query().Get("done")})
}

func (c *Console) renderHistory(w http.ResponseWriter, r *http.Request, status int, d historyData) {
	name := r.PathValue("name")
	d.Job = name
	q := r.URL.Query()
	read := url.Values{"limit": {"20"}}
	if b := q.Get("before"); b != "" {
		read.Set("before", b)
	}
	if err := c.get(r, "/api/v1/jobs/"+url.PathEscape(name)+"/revisions?"+read.Encode(), &d.Page); err != nil {
		c.fail(w, r, http.StatusBadGateway, err)
		return
	}
	if d.Page.Next > 0 {
		d.Older = "/ui/jobs/" + url.PathEscape(name) + "/history?before=" + strconv.FormatInt(d.Page.Next, 10)
	}
	diffQ := url.Values{}
	for _, k := range []string{"from", "to"} {
		if v := q.Get(k); v != "" {
			diffQ.Set(k, v)
		}
	}
	if d.Page.Latest > 1 || diffQ.Has("from") {
		var diff api.JobDiff
		if err := c.get(r, "/api/v1/jobs/"+url.PathEscape(name)+"/diff?"+diffQ.Encode(), &diff); err != nil {
			d.DiffErr = err.Error()
		} else {
			d.Diff = &diff
		}
	}
	c.render(w, r, status, "history", d)
}

// historyAction rolls a job back to a version, or restores a deleted job, then shows its history again.
func (c *Console) historyAction(w http.ResponseWriter, r *http.Request) {
	name, action := r.PathValue("name"), r.PathValue("action")
	if !viewerOf(r.Context()).may(keyring.RoleAdmin) {
		c.fail(w, r, http.StatusForbidden, fmt.Errorf("%s needs the admin role", action))
		return
	}
	msg := r.PostFormValue("message")
	var (
		err  error
		done string
	)
	switch action {
	case "rollback":
		var body api.RollbackRequest
		body.Version, _ = strconv.ParseInt(r.PostFormValue("version"), 10, 64)
		body.Expect, _ = strconv.ParseInt(r.PostFormValue("expect"), 10, 64)
		body.Message = msg
		err = c.call(r, http.MethodPost, "/api/v1/jobs/"+url.PathEscape(name)+"/rollback", body, nil)
		done = fmt.Sprintf("rolled back to version %d", body.Version)
	case "restore":
		err = c.call(r, http.MethodPost, "/api/v1/jobs/"+url.PathEscape(name)+"/restore", api.RestoreRequest{Message: msg}, nil)
		done = "restored"
	default:
		http.NotFound(w, r)
		return
	}
	var ae *apiError
	switch {
	case err == nil:
		http.Redirect(w, r, "/ui/jobs/"+url.PathEscape(name)+"/history?done="+url.QueryEscape(done), http.StatusSeeOther)
	case errors.As(err, &ae) && ae.status < 500:
		// A conflict (changed since the page showed it) and other refusals are shown on the tab.
		c.renderHistory(w, r, ae.status, historyData{Error: ae.msg})
	default:
		c.fail(w, r, http.StatusBadGateway, err)
	}
}

// diffLines are a diff's changes as the page shows them.
func diffLines(changes []jobdiff.Change) string { return jobdiff.Format(changes) }
