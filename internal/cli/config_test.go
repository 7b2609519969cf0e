package cli

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/clover-sched/clover/internal/job"
)

// fakeAPI serves the job routes of the REST API from a map. keepSource says whether it keeps the source a
// request gives, as `clover config apply` needs, or stamps "api" as the server does today.
type fakeAPI struct {
	mu         sync.Mutex
	jobs       map[string]job.Spec
	keepSource bool
	calls      []string
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	name := strings.TrimPrefix(r.URL.Path, "/api/v1/jobs/")
	var spec job.Spec
	if r.Body != nil {
		_ = json.NewDecoder(r.Body).Decode(&spec)
	}
	switch r.Method {
	case "POST":
		f.calls = append(f.calls, "POST "+spec.Name)
	case "PUT", "DELETE":
		f.calls = append(f.calls, r.Method+" "+name)
	}
	if !f.keepSource {
		spec.Source = "api"
	}
	switch {
	case r.Method == "GET" && r.URL.Path == "/api/v1/jobs":
		var all []job.Spec
		for _, j := range f.jobs {
			all = append(all, j)
		}
		_ = json.NewEncoder(w).Encode(all)
	case r.Method == "POST":
		spec.Version = 1
		f.jobs[spec.Name] = spec
		_ = json.NewEncoder(w).Encode(spec)
	case r.Method == "PUT":
		cur := f.jobs[name]
		if spec.Version != cur.Version {
			w.WriteHeader(http.StatusConflict)
			return
		}
		spec.Version = cur.Version + 1
		f.jobs[name] = spec
		_ = json.NewEncoder(w).Encode(spec)
	case r.Method == "DELETE":
		delete(f.jobs, name)
		w.WriteHeader(http.StatusNoContent)
	}
}

func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	root := NewRoot(&out, &out)
	root.AddCommand(newConfigCmd()) // until root.go adds it
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigValidate(t *testing.T) {
	out, err := runCLI(t, "config", "validate", "../../examples/jobs.yaml", "../../examples/jobs.xml", "--profile", "prod")
	// The two files declare the same jobs: each is a duplicate.
	if err == nil || !strings.Contains(out, "jobs.xml:24: job etl-orders: declared twice (first at ../../examples/jobs.yaml:30)") {
		t.Fatalf("out %q err %v", out, err)
	}
	out, err = runCLI(t, "config", "validate", "../../examples/jobs.yaml", "--profile", "dev")
	if err != nil || out != "ok: 1 files, 3 jobs, 0 batches\n" {
		t.Fatalf("out %q err %v", out, err)
	}
	bad := writeFile(t, t.TempDir(), "bad.yaml", "jobs:\n  - name: a\n    schedule: \"@daily\"\n    retry: {jiter: 1}\n")
	out, err = runCLI(t, "config", "validate", bad)
	want := bad + ":2: job a: key handler: is required\n" + bad + ":4: job a: key retry.jiter: unknown key (did you mean retry.jitter?)\n"
	if err == nil || err.Error() != "2 problems found" || out != want {
		t.Fatalf("out %q err %v", out, err)
	}
}

func TestConfigApply(t *testing.T) {
	tests := map[string]struct {
		// environment
		keepSource bool
		// expectations
		second  []string // calls of the second apply
		remains []string
	}{
		"server keeps the source": {
			keepSource: true,
			second:     []string{"POST c", "PUT a", "DELETE b"},
			remains:    []string{"a", "c", "manual", "mine"},
		},
		"server stamps api": { // nothing can be told apart: nothing is deleted
			second:  []string{"PUT a", "POST c"},
			remains: []string{"a", "b", "c", "manual", "mine"},
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			api := &fakeAPI{keepSource: tt.keepSource, jobs: map[string]job.Spec{
				"manual": {Name: "manual", Schedule: "@daily", Handler: "x", Source: "api", Version: 3},
				"mine":   {Name: "mine", Schedule: "@daily", Handler: "x", Source: "client:c1", Version: 1},
			}}
			srv := httptest.NewServer(api)
			defer srv.Close()
			dir := t.TempDir()
			f := writeFile(t, dir, "etl.yaml", "jobs:\n  - {name: a, schedule: \"@daily\", handler: x}\n  - {name: b, schedule: \"@daily\", handler: x}\n")
			if _, err := runCLI(t, "config", "apply", f, "--api", srv.URL); err != nil {
				t.Fatal(err)
			}
			if got := api.calls; !slices.Equal(got, []string{"POST a", "POST b"}) {
				t.Fatalf("first apply: %v", got)
			}
			if tt.keepSource && api.jobs["a"].Source != "config:etl" {
				t.Fatalf("source %q", api.jobs["a"].Source)
			}
			api.calls = nil
			writeFile(t, dir, "etl.yaml", "jobs:\n  - {name: a, schedule: \"@hourly\", handler: x}\n  - {name: c, schedule: \"@daily\", handler: x}\n")
			out, err := runCLI(t, "config", "apply", f, "--api", srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(api.calls, tt.second) {
				t.Errorf("second apply: %v, want %v\n%s", api.calls, tt.second, out)
			}
			var names []string
			for n := range api.jobs {
				names = append(names, n)
			}
			slices.Sort(names)
			if !slices.Equal(names, tt.remains) {
				t.Errorf("jobs left %v, want %v", names, tt.remains)
			}
		})
	}
}

func TestConfigApplyConflict(t *testing.T) {
	api := &fakeAPI{keepSource: true, jobs: map[string]job.Spec{
		"mine": {Name: "mine", Schedule: "@daily", Handler: "x", Source: "client:c1", Version: 1},
	}}
	srv := httptest.NewServer(api)
	defer srv.Close()
	f := writeFile(t, t.TempDir(), "etl.yaml", "jobs:\n  - {name: mine, schedule: \"@hourly\", handler: x}\n")
	_, err := runCLI(t, "config", "apply", f, "--api", srv.URL)
	if err == nil || err.Error() != "job mine: exists with source client:c1: remove it there, or rename it in the files" {
		t.Fatalf("got %v", err)
	}
	if len(api.calls) != 0 {
		t.Errorf("calls %v", api.calls)
	}
}
