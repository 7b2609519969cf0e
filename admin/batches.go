package admin

import (
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strings"

	"github.com/clover-sched/clover/api"
	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/keyring"
	"github.com/clover-sched/clover/internal/store"
	"github.com/clover-sched/clover/internal/workflow"
)

// The batch pages: the batches, one batch (its graph, its runs, a form to start one), and one run (its
// graph colored by state, a Gantt of its executions, the operations as buttons by role).

type batchesData struct {
	Batches []store.Batch
}

func (c *Console) batches(w http.ResponseWriter, r *http.Request) {
	var d batchesData
	if err := c.get(r, "/api/v1/batches", &d.Batches); err != nil {
		c.fail(w, r, http.StatusBadGateway, err)
		return
	}
	c.render(w, r, http.StatusOK, "batches", d)
}

type batchData struct {
	Def     workflow.Definition
	Graph   template.HTML
	TooBig  bool
	Runs    []store.BatchRun
	Error   string
	Form    api.BatchRunRequest
	Params  string
	Message string
}

func batchAPI(name string, rest ...string) string {
	p := "/api/v1/batches/" + url.PathEscape(name)
	for _, s := range rest {
		p += "/" + url.PathEscape(s)
	}
	return p
}

func (c *Console) batchPage(w http.ResponseWriter, r *http.Request) {
	c.renderBatch(w, r, http.StatusOK, batchData{Message: r.URL.Query().Get("done")})
}

func (c *Console) renderBatch(w http.ResponseWriter, r *http.Request, status int, d batchData) {
	name := r.PathValue("name")
	if err := c.get(r, batchAPI(name), &d.Def); err != nil {
		c.fail(w, r, http.StatusBadGateway, err)
		return
	}
	if err := c.get(r, batchAPI(name, "runs")+"?limit=50", &d.Runs); err != nil {
		c.fail(w, r, http.StatusBadGateway, err)
		return
	}
	nodes := make([]workflow.NodeStatus, len(d.Def.Nodes))
	for i, n := range d.Def.Nodes {
		nodes[i] = workflow.NodeStatus{Name: n.Name, Job: n.Job, Group: n.Group}
	}
	d.Graph, d.TooBig = drawGraph(nodes, d.Def.Edges), len(nodes) > maxDrawnNodes
	c.render(w, r, status, "batch", d)
}

// startRun starts a run from the batch page's form (operators); a refusal is shown on the form.
func (c *Console) startRun(w http.ResponseWriter, r *http.Request) {
	if !viewerOf(r.Context()).may(keyring.RoleOperator) {
		c.fail(w, r, http.StatusForbidden, fmt.Errorf("starting a run needs the operator role"))
		return
	}
	name := r.PathValue("name")
	req := api.BatchRunRequest{Cycle: strings.TrimSpace(r.PostFormValue("cycle")), Frequency: strings.TrimSpace(r.PostFormValue("frequency")),
		Rerun: r.PostFormValue("rerun") == "on", Why: strings.TrimSpace(r.PostFormValue("why"))}
	params := r.PostFormValue("params")
	for _, line := range strings.Split(params, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || strings.TrimSpace(k) == "" {
			c.renderBatch(w, r, http.StatusBadRequest, batchData{Form: req, Params: params, Error: fmt.Sprintf("parameter %q: want NAME=VALUE, one a line", line)})
			return
		}
		if req.Params == nil {
			req.Params = map[string]string{}
		}
		req.Params[strings.TrimSpace(k)] = v
	}
	var run store.BatchRun
	if err := c.call(r, http.MethodPost, batchAPI(name, "runs"), req, &run); err != nil {
		status := http.StatusBadGateway
		if ae, ok := err.(*apiError); ok {
			status = ae.status
		}
		c.renderBatch(w, r, status, batchData{Form: req, Params: params, Error: err.Error()})
		return
	}
	http.Redirect(w, r, "/ui/batches/"+url.PathEscape(name)+"/runs/"+url.PathEscape(run.Cycle)+"?done="+url.QueryEscape("run started"), http.StatusSeeOther)
}

type batchRunData struct {
	St      api.BatchRunStatus
	Batch   string
	Graph   template.HTML
	Gantt   template.HTML
	Execs   []job.Execution
	Failed  map[string]bool // nodes a person may mark succeeded
	Message string
	Error   string
}

func (c *Console) batchRunPage(w http.ResponseWriter, r *http.Request) {
	name, cycle := r.PathValue("name"), r.PathValue("cycle")
	d := batchRunData{Batch: name, Message: r.URL.Query().Get("done"), Failed: map[string]bool{}}
	if err := c.get(r, batchAPI(name, "runs", cycle), &d.St); err != nil {
		c.fail(w, r, http.StatusBadGateway, err)
		return
	}
	if err := c.get(r, batchAPI(name, "runs", cycle, "executions"), &d.Execs); err != nil {
		d.Error = "the run's executions could not be read: " + err.Error()
	}
	d.Graph = drawGraph(d.St.Nodes, d.St.Edges)
	d.Gantt = drawGantt(d.Execs, c.now())
	for _, n := range d.St.Nodes {
		switch n.State {
		case workflow.Failed, workflow.Blocked, workflow.Ready, workflow.Waiting:
			d.Failed[n.Name] = true
		}
	}
	c.render(w, r, http.StatusOK, "batchrun", d)
}

// batchRunAction applies an operation from the run page's buttons (operators).
func (c *Console) batchRunAction(w http.ResponseWriter, r *http.Request) {
	name, cycle, action := r.PathValue("name"), r.PathValue("cycle"), r.PathValue("action")
	v := viewerOf(r.Context())
	if !v.may(keyring.RoleOperator) {
		c.fail(w, r, http.StatusForbidden, fmt.Errorf("%s needs the operator role", action))
		return
	}
	path := batchAPI(name, "runs", cycle, action)
	switch action {
	case "pause", "resume", "stop", "rerun", "reset":
	case "skip":
		node := r.PostFormValue("node")
		if node == "" {
			c.fail(w, r, http.StatusBadRequest, fmt.Errorf("skip: which node?"))
			return
		}
		path = batchAPI(name, "runs", cycle, "nodes", node, "skip")
	default:
		http.NotFound(w, r)
		return
	}
	why := strings.TrimSpace(r.PostFormValue("why"))
	if why == "" {
		why = "from the console"
	}
	if err := c.call(r, http.MethodPost, path, api.BatchOperationRequest{Why: why}, nil); err != nil {
		c.fail(w, r, http.StatusBadGateway, err)
		return
	}
	http.Redirect(w, r, "/ui/batches/"+url.PathEscape(name)+"/runs/"+url.PathEscape(cycle)+"?done="+url.QueryEscape(action+" done"), http.StatusSeeOther)
}
