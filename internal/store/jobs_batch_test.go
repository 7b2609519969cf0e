package store

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/clover-sched/clover/internal/job"
)

// modes runs a test with the writes made as for FerretDB (the version checked by a read) and as for
// MongoDB (the version in the write's filter), both against the test's server: the outcomes must agree.
func modes(t *testing.T, test func(t *testing.T, s *Store)) {
	for name, ferret := range map[string]bool{"ferretdb": true, "mongodb": false} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := testStore(t)
			s.ferret = ferret
			test(t, s)
		})
	}
}

func TestUpdateAndDeleteOneJob(t *testing.T) {
	t.Parallel()
	modes(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		if err := s.CreateJob(ctx, spec("a")); err != nil {
			t.Fatal(err)
		}
		later := t0.Add(time.Hour + 123456789)
		got, err := s.UpdateJob(ctx, "a", func(cur job.Spec) (job.Spec, error) {
			cur.Params = map[string]string{}
			cur.UpdatedAt = later
			return cur, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		read, err := s.GetJob(ctx, "a")
		if err != nil || !reflect.DeepEqual(got, read) || got.Version != 2 || !got.UpdatedAt.Equal(storedTime(later)) {
			t.Errorf("UpdateJob returned\n%+v\nthe store holds\n%+v (%v); want them equal, at version 2", got, read, err)
		}
		refused := errors.New("no")
		if _, err := s.UpdateJob(ctx, "a", func(job.Spec) (job.Spec, error) { return job.Spec{}, refused }); err != refused {
			t.Errorf("UpdateJob with a change that fails = %v, want its error", err)
		}
		if _, err := s.UpdateJob(ctx, "nope", func(c job.Spec) (job.Spec, error) { return c, nil }); !errors.Is(err, ErrNotFound) {
			t.Errorf("UpdateJob(nope) = %v, want ErrNotFound", err)
		}

		if _, err := s.DeleteJobAt(ctx, "a", 1); !errors.Is(err, ErrConflict) {
			t.Errorf("DeleteJobAt(a, 1) of version 2 = %v, want ErrConflict", err)
		}
		old, err := s.DeleteJobAt(ctx, "a", 2)
		if err != nil || old.Version != 2 {
			t.Errorf("DeleteJobAt(a, 2) = %+v, %v; want the job at version 2", old, err)
		}
		if _, err := s.DeleteJobAt(ctx, "a", 0); !errors.Is(err, ErrNotFound) {
			t.Errorf("DeleteJobAt of a deleted job = %v, want ErrNotFound", err)
		}
		if err := s.CreateJob(ctx, spec("b")); err != nil {
			t.Fatal(err)
		}
		if old, err := s.DeleteJobAt(ctx, "b", 0); err != nil || old.Name != "b" {
			t.Errorf("DeleteJobAt(b, 0) = %+v, %v", old, err)
		}
	})
}

// A job answered by AsStored equals the job read back: what the API answers and hands the leader.
func TestAsStoredIsWhatAReadReturns(t *testing.T) {
	t.Parallel()
	s := testStore(t)
	in := spec("a")
	in.Params, in.Contacts = map[string]string{}, []string{}
	in.PausedAt = t0.Add(987654321)
	in.Stats = &job.Stats{}
	if err := s.CreateJob(t.Context(), in); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetJob(t.Context(), "a")
	if err != nil {
		t.Fatal(err)
	}
	if as := AsStored(in); !reflect.DeepEqual(as, got) {
		t.Errorf("AsStored =\n%+v\nread back\n%+v", as, got)
	}
}

func TestBulkJobWrites(t *testing.T) {
	t.Parallel()
	modes(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		if err := s.CreateJob(ctx, spec("j-001")); err != nil {
			t.Fatal(err)
		}
		// More jobs than GetJobs reads one by one, so that both ways of reading are used below.
		var specs []job.Spec
		for i := range 2 * perNameReads {
			specs = append(specs, spec(fmt.Sprintf("j-%03d", i)))
		}
		errs := s.CreateJobs(ctx, specs)
		for i, err := range errs {
			if want := i == 1; errors.Is(err, ErrExists) != want || (!want && err != nil) {
				t.Errorf("CreateJobs: %s: %v (existed before: %v)", specs[i].Name, err, want)
			}
		}
		for _, n := range []int{3, len(specs)} {
			var names []string
			for _, sp := range specs[:n] {
				names = append(names, sp.Name)
			}
			got, err := s.GetJobs(ctx, append(names, "nope"))
			if err != nil || len(got) != n || got[names[n-1]].Name != names[n-1] {
				t.Errorf("GetJobs of %d names and one missing: %d jobs, %v", n, len(got), err)
			}
		}

		// j-002 is changed behind the update's back: that one conflicts, the others are written.
		names := []string{"j-000", "j-002", "j-003", "nope"}
		later := t0.Add(time.Hour)
		out, errs := s.UpdateJobs(ctx, names, func(i int, cur job.Spec) (job.Spec, error) {
			switch names[i] {
			case "j-002":
				if err := s.ReplaceJob(ctx, cur, cur.Version); err != nil {
					t.Fatal(err)
				}
			case "j-003":
				return job.Spec{}, errors.New("refused")
			}
			cur.Paused, cur.UpdatedAt = true, later
			return cur, nil
		})
		if errs[0] != nil || out[0].Version != 2 || !out[0].Paused {
			t.Errorf("UpdateJobs j-000: %+v, %v; want paused at version 2", out[0], errs[0])
		}
		if got, _ := s.GetJob(ctx, "j-000"); !reflect.DeepEqual(got, out[0]) {
			t.Errorf("UpdateJobs returned\n%+v\nthe store holds\n%+v", out[0], got)
		}
		// On FerretDB the check is the read (the server serializes its writes of a job), so the write
		// made in between is overwritten there; MongoDB refuses it.
		if s.ferret {
			if errs[1] != nil {
				t.Errorf("UpdateJobs j-002 (ferretdb) = %v, want written", errs[1])
			}
		} else if !errors.Is(errs[1], ErrConflict) {
			t.Errorf("UpdateJobs j-002 changed meanwhile = %v, want ErrConflict", errs[1])
		}
		if errs[2] == nil || errs[2].Error() != "refused" {
			t.Errorf("UpdateJobs j-003 = %v, want the change's error", errs[2])
		}
		if !errors.Is(errs[3], ErrNotFound) {
			t.Errorf("UpdateJobs nope = %v, want ErrNotFound", errs[3])
		}

		names = []string{"j-000", "j-003", "j-004", "nope", "j-005"}
		old, errs := s.DeleteJobs(ctx, names, []int64{2, 0, 7, 0, 1})
		for i, want := range []error{nil, nil, ErrConflict, ErrNotFound, nil} {
			if (want == nil && errs[i] != nil) || (want != nil && !errors.Is(errs[i], want)) {
				t.Errorf("DeleteJobs %s: %v, want %v", names[i], errs[i], want)
			}
		}
		if old[0].Version != 2 || old[1].Name != "j-003" {
			t.Errorf("DeleteJobs returned %+v, %+v; want the jobs as they were", old[0], old[1])
		}
		left, err := s.GetJobs(ctx, names)
		if _, ok := left["j-004"]; err != nil || len(left) != 1 || !ok {
			t.Errorf("after DeleteJobs: %v left (%v); want j-004 only", left, err)
		}
	})
}

// The store knows FerretDB when it runs on one (the suite's default), and takes a MongoDB for what it is.
func TestFerretDBIsRecognised(t *testing.T) {
	t.Parallel()
	want := os.Getenv(mongoURIEnv) == ""
	if s := testStore(t); s.ferret != want {
		t.Errorf("ferret = %v against %s, want %v", s.ferret, map[bool]string{true: "FerretDB", false: mongoURIEnv}[want], want)
	}
}
