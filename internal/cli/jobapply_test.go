package cli

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	apiv1 "github.com/clover-sched/clover/api"
	"github.com/clover-sched/clover/internal/job"
)

// fakeBulkAPI serves GET /api/v1/jobs and POST /api/v1/jobs:batch from a map, refusing the operations on
// the jobs named in refuse, and records the requests.
type fakeBulkAPI struct {
	mu       sync.Mutex
	jobs     map[string]job.Spec
	refuse   map[string]bool
	requests [][]apiv1.BatchOp
}

func (f *fakeBulkAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch r.Method + " " + r.URL.Path {
	case "GET /api/v1/jobs":
		all := []job.Spec{}
		for _, j := range f.jobs {
			all = append(all, j)
		}
		_ = json.NewEncoder(w).Encode(all)
	case "POST /api/v1/jobs:batch":
		var req apiv1.BatchRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		f.requests = append(f.requests, req.Ops)
		var resp apiv1.BatchResponse
		for _, op := range req.Ops {
			res := apiv1.BatchResult{Op: op.Op, Name: op.Job.Name, Status: http.StatusCreated}
			cur, exists := f.jobs[op.Job.Name]
			switch {
			case f.refuse[op.Job.Name]:
				res.Status, res.Error = http.StatusBadRequest, "refused"
			case op.Op == apiv1.BatchUpdate && (!exists || cur.Version != op.Version):
				res.Status, res.Error = http.StatusConflict, "version"
			default:
				spec := *op.Job
				spec.Version = cur.Version + 1
				f.jobs[spec.Name] = spec
				res.Version = spec.Version
			}
			resp.Results = append(resp.Results, res)
		}
		_ = json.NewEncoder(w).Encode(resp)
	default:
		http.NotFound(w, r)
	}
}

// The files' jobs the cluster lacks are created, those it holds differently updated at the version read,
// the same ones left alone, in requests of --chunk; a refused one is reported and fails the command.
func TestJobApply(t *testing.T) {
	api := &fakeBulkAPI{
		jobs: map[string]job.Spec{
			"same":    {Name: "same", Schedule: "@daily", Handler: "x", Source: "api", Version: 4},
			"changed": {Name: "changed", Schedule: "@daily", Handler: "x", Source: "client:c1", Version: 2},
			"other":   {Name: "other", Schedule: "@daily", Handler: "x", Version: 1},
		},
		refuse: map[string]bool{"bad": true},
	}
	srv := httptest.NewServer(api)
	defer srv.Close()
	dir := t.TempDir()
	yaml := writeFile(t, dir, "jobs.yaml", "defaults: {handler: x}\njobs:\n"+
		"  - {name: same, schedule: \"@daily\"}\n  - {name: changed, schedule: \"@hourly\"}\n  - {name: new, schedule: \"@daily\"}\n")
	// As `clover job list -o json` prints them: the bookkeeping is ignored.
	list := writeFile(t, dir, "more.json", `[{"name":"bad","schedule":"@daily","handler":"x","version":9,"source":"config:y","created_at":"2026-01-01T00:00:00Z"},
		{"name":"exported","schedule":"@daily","handler":"x","version":3}]`)

	out, err := runCLI(t, "job", "apply", "-f", yaml, "-f", list, "--chunk", "2", "--api", srv.URL)
	if err == nil || err.Error() != "1 of 5 jobs not applied" {
		t.Fatalf("err %v, want 1 of 5 jobs not applied\n%s", err, out)
	}
	for _, want := range []string{"FAILED create bad: refused (HTTP 400)", "applied: 2 created, 1 updated, 1 unchanged, 1 failed"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	var sent []string
	for _, req := range api.requests {
		if len(req) > 2 {
			t.Errorf("a request of %d operations, --chunk 2", len(req))
		}
		for _, op := range req {
			sent = append(sent, fmt.Sprintf("%s %s v%d/%d", op.Op, op.Job.Name, op.Version, op.Job.Version))
		}
	}
	want := "[create bad v0/0 update changed v2/0 create exported v0/0 create new v0/0]"
	if fmt.Sprint(sent) != want {
		t.Errorf("sent %v, want %s", sent, want)
	}
	if api.jobs["changed"].Schedule != "@hourly" || api.jobs["exported"].Source != "" {
		t.Errorf("after apply: %+v, %+v", api.jobs["changed"], api.jobs["exported"])
	}

	// A file with problems sends nothing.
	api.requests = nil
	bad := writeFile(t, dir, "bad.yaml", "jobs:\n  - {name: a, schedule: \"@daily\", handler: x, retry: {jiter: 1}}\n")
	out, err = runCLI(t, "job", "apply", "-f", bad, "-f", list, "--api", srv.URL)
	if err == nil || !strings.Contains(out, "unknown key (did you mean retry.jitter?)") || len(api.requests) != 0 {
		t.Fatalf("a file with an unknown key: err %v, %d requests\n%s", err, len(api.requests), out)
	}
}
