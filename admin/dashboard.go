package admin

import (
	"net/http"
	"slices"
	"time"

	"github.com/clover-sched/clover/api"
	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/registry"
	"github.com/clover-sched/clover/internal/store"
)

// dashboardData is the main page: who leads, who works, what waits, what is wrong.
type dashboardData struct {
	Cluster     api.ClusterStatus
	ClusterErr  string
	Backlog     *api.Backlog
	BacklogErr  string
	Clients     []clientLoad
	Alerts      []store.Alert
	AlertsErr   string
	Failures    []job.Execution
	FailuresErr string
	Fallback    *api.FallbackStatus
	FallbackErr string
	// Hour and Day chart the leader's activity, per minute and per 15 minutes.
	Hour, Day     *chart
	ActivitySince time.Time
	ActivityErr   string
}

// clientLoad is a client and what it holds now, as the leader counts it.
type clientLoad struct {
	registry.Member
	Running int
}

// dashboardFailures is how many of the newest failed executions the dashboard lists.
const dashboardFailures = 10

func (c *Console) dashboard(w http.ResponseWriter, r *http.Request) {
	c.render(w, r, http.StatusOK, "dashboard", c.dashboardData(r))
}

// dashboardPanels is what the dashboard reloads every few seconds (htmx).
func (c *Console) dashboardPanels(w http.ResponseWriter, r *http.Request) {
	c.renderBlock(w, r, http.StatusOK, "dashboard", "panels-body", c.dashboardData(r))
}

// dashboardData reads each panel's figures on its own: a panel whose read fails shows why, and the others
// still show (a cluster with no leader still has clients and alerts to look at).
func (c *Console) dashboardData(r *http.Request) dashboardData {
	var d dashboardData
	if err := c.get(r, "/api/v1/cluster", &d.Cluster); err != nil {
		d.ClusterErr = err.Error()
	}
	var b api.Backlog
	if err := c.get(r, "/api/v1/backlog", &b); err != nil {
		d.BacklogErr = err.Error()
	} else {
		d.Backlog = &b
	}
	var inflight []api.InFlight
	if d.Backlog != nil && d.Backlog.Open > 0 {
		_ = c.get(r, "/api/v1/inflight?limit=10000", &inflight) // the load column only; absent, it shows 0
	}
	running := map[string]int{}
	for _, f := range inflight {
		if f.Client != "" && (f.Status == "running" || f.Status == "dispatched" || f.Status == "stopping") {
			running[f.Client]++
		}
	}
	for _, m := range d.Cluster.Clients {
		d.Clients = append(d.Clients, clientLoad{Member: m, Running: running[m.ID]})
	}
	slices.SortFunc(d.Clients, func(a, b clientLoad) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	if err := c.get(r, "/api/v1/alerts", &d.Alerts); err != nil {
		d.AlertsErr = err.Error()
	}
	if err := c.get(r, "/api/v1/executions?state=failed&limit=10", &d.Failures); err != nil {
		d.FailuresErr = err.Error()
	}
	var act api.Activity
	if err := c.get(r, "/api/v1/activity?minutes=1440", &act); err != nil {
		d.ActivityErr = err.Error()
	} else {
		hour, day := chartOf(act.Minutes[max(len(act.Minutes)-60, 0):], time.Minute), chartOf(act.Minutes, 15*time.Minute)
		d.Hour, d.Day, d.ActivitySince = &hour, &day, act.Since
	}
	var fb api.FallbackStatus
	if err := c.get(r, "/api/v1/fallback", &fb); err != nil {
		d.FallbackErr = err.Error()
	} else {
		d.Fallback = &fb
	}
	return d
}
