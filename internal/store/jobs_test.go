package store

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clover-sched/clover/internal/job"
)

func spec(name string) job.Spec {
	created := t0.Add(123456789 * time.Nanosecond) // loses its sub-millisecond part when stored
	return job.Spec{
		Name: name, Schedule: "@every 10s", Handler: job.HandlerShell,
		Params: map[string]string{"command": "echo hi"}, Timeout: job.Duration(90 * time.Second),
		Contacts: []string{"ops@example.com"}, Source: "api", Version: 1,
		CreatedAt: created, UpdatedAt: created, // ActiveSince left zero: it must come back zero
	}
}

func TestJobs(t *testing.T) {
	t.Parallel()
	s := testStore(t)
	ctx := t.Context()

	a := spec("a")
	if err := s.CreateJob(ctx, a); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateJob(ctx, spec("b")); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateJob(ctx, a); !errors.Is(err, ErrExists) {
		t.Errorf("second CreateJob(a) = %v, want ErrExists", err)
	}

	got, err := s.GetJob(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if want := storedSpec(a); !reflect.DeepEqual(got, want) {
		t.Errorf("GetJob(a) =\n%+v\nwant\n%+v", got, want)
	}
	if !got.ActiveSince.IsZero() {
		t.Errorf("zero ActiveSince came back as %v", got.ActiveSince)
	}

	changed := got
	changed.Paused, changed.UpdatedAt = true, t0.Add(time.Hour)
	if err := s.ReplaceJob(ctx, changed, 1); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetJob(ctx, "a"); err != nil || !got.Paused || got.Version != 2 {
		t.Errorf("after ReplaceJob: %+v, %v; want paused at version 2", got, err)
	}
	if err := s.ReplaceJob(ctx, changed, 1); !errors.Is(err, ErrConflict) {
		t.Errorf("ReplaceJob expecting stale version 1 = %v, want ErrConflict", err)
	}
	if err := s.ReplaceJob(ctx, spec("nope"), 1); !errors.Is(err, ErrNotFound) {
		t.Errorf("ReplaceJob(nope) = %v, want ErrNotFound", err)
	}

	jobs, err := s.ListJobs(ctx)
	if err != nil || len(jobs) != 2 || jobs[0].Name != "a" || jobs[1].Name != "b" {
		t.Errorf("ListJobs = %+v, %v; want a, b", jobs, err)
	}

	if err := s.DeleteJob(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteJob(ctx, "a"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second DeleteJob(a) = %v, want ErrNotFound", err)
	}
	if _, err := s.GetJob(ctx, "a"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetJob(a) after delete = %v, want ErrNotFound", err)
	}
	if jobs, err := s.ListJobs(ctx); err != nil || len(jobs) != 1 {
		t.Errorf("ListJobs after delete = %+v, %v; want b", jobs, err)
	}
}

func TestJobsArePagedByNameWithFilters(t *testing.T) {
	t.Parallel()
	s := testStore(t)
	ctx := t.Context()
	for i := range 25 {
		sp := spec(fmt.Sprintf("etl-%02d", i))
		sp.Paused = i%5 == 0
		if i == 7 {
			sp.Name, sp.Handler, sp.Params = "report.Weekly", "report", nil
		}
		if err := s.CreateJob(ctx, sp); err != nil {
			t.Fatal(err)
		}
	}
	var names []string
	after := ""
	for pages := 0; ; pages++ {
		page, err := s.ListJobsPage(ctx, JobPage{After: after, Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		if pages > 3 || len(page) > 10 {
			t.Fatalf("page %d has %d jobs", pages, len(page))
		}
		for _, j := range page {
			names = append(names, j.Name)
		}
		after = page[len(page)-1].Name
	}
	if len(names) != 25 || !slices.IsSorted(names) {
		t.Fatalf("pages of 10 gave %d names, sorted %v: %v", len(names), slices.IsSorted(names), names)
	}
	paused := true
	got, err := s.ListJobsPage(ctx, JobPage{Paused: &paused, Limit: 100})
	if err != nil || len(got) != 5 {
		t.Fatalf("paused: %d jobs (%v), want 5", len(got), err)
	}
	for _, text := range []string{"weekly", "REPORT", "tl-1"} {
		got, err = s.ListJobsPage(ctx, JobPage{Text: text, Limit: 100})
		want := 1
		if text == "tl-1" {
			want = 10
		}
		if err != nil || len(got) != want {
			t.Errorf("text %q: %d jobs (%v), want %d", text, len(got), err, want)
		}
	}
	if got, err = s.ListJobsPage(ctx, JobPage{Text: "etl-.*", Limit: 100}); err != nil || len(got) != 0 {
		t.Errorf("text %q is not a pattern: %d jobs (%v), want 0", "etl-.*", len(got), err)
	}
}

func TestJobsAreFilteredByHandlerSourceClientLabelAndContact(t *testing.T) {
	t.Parallel()
	s := testStore(t)
	ctx := t.Context()
	a := spec("pinned")
	a.Routing.Clients, a.Routing.Labels, a.Contacts, a.Source = []string{"client-a", "client-b"}, map[string]string{"zone": "eu"}, []string{"ops", "dba"}, "client:client-a"
	b := spec("anywhere")
	b.Handler, b.Params, b.Contacts, b.Source = "report", nil, []string{"ops"}, "api"
	for _, sp := range []job.Spec{a, b, spec("plain")} {
		if err := s.CreateJob(ctx, sp); err != nil {
			t.Fatal(err)
		}
	}
	for name, tc := range map[string]struct {
		page JobPage
		want string
	}{
		"handler":              {JobPage{Handler: "report"}, "anywhere"},
		"source":               {JobPage{Source: "client:client-a"}, "pinned"},
		"pinned to a client":   {JobPage{Client: "client-b"}, "pinned"},
		"pinned to no such":    {JobPage{Client: "client-z"}, ""},
		"label":                {JobPage{Label: "zone=eu"}, "pinned"},
		"label of other value": {JobPage{Label: "zone=us"}, ""},
		"contact":              {JobPage{Contact: "ops"}, "anywhere,pinned"},
		"contact and handler":  {JobPage{Contact: "ops", Handler: "report"}, "anywhere"},
	} {
		tc.page.Limit = 100
		got, err := s.ListJobsPage(ctx, tc.page)
		var names []string
		for _, j := range got {
			names = append(names, j.Name)
		}
		if err != nil || strings.Join(names, ",") != tc.want {
			t.Errorf("%s: %v (%v), want %q", name, names, err, tc.want)
		}
	}
}
