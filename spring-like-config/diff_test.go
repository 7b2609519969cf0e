package springconfig

import (
	"reflect"
	"testing"
	"time"

	"github.com/clover-sched/clover/internal/job"
)

type jobSpec = job.Spec

func TestDiff(t *testing.T) {
	a := job.Spec{Name: "a", Schedule: "@daily", Handler: "x"}
	b := job.Spec{Name: "b", Schedule: "@daily", Handler: "x", Params: map[string]string{"k": "v"}}
	c := job.Spec{Name: "c", Schedule: "@daily", Handler: "x"}
	stored := func(s job.Spec) job.Spec { // as the API returns it
		s.Version, s.Source, s.Paused = 7, "config:jobs", true
		s.CreatedAt, s.UpdatedAt, s.ActiveSince = time.Unix(1, 0), time.Unix(2, 0), time.Unix(3, 0)
		s.Stats = &job.Stats{Misfires: 2}
		return s
	}
	b2 := b
	b2.Params = map[string]string{"k": "w"}
	emptyA := a
	emptyA.Params, emptyA.Contacts = map[string]string{}, []string{}

	tests := map[string]struct {
		// spec
		old, new []job.Spec
		// expectations
		want Changes
	}{
		"nothing":             {},
		"all new":             {new: []job.Spec{c, a}, want: Changes{Adds: []job.Spec{a, c}}},
		"all gone":            {old: []job.Spec{a, b}, want: Changes{Deletes: []job.Spec{a, b}}},
		"bookkeeping ignored": {old: []job.Spec{stored(a), stored(b)}, new: []job.Spec{a, b}},
		"empty is missing":    {old: []job.Spec{stored(a)}, new: []job.Spec{emptyA}},
		"mixed": {
			old:  []job.Spec{stored(a), stored(b)},
			new:  []job.Spec{b2, c},
			want: Changes{Adds: []job.Spec{c}, Updates: []job.Spec{b2}, Deletes: []job.Spec{stored(a)}},
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got := Diff(tt.old, tt.new)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
			if got.Empty() != tt.want.Empty() {
				t.Errorf("Empty() = %v", got.Empty())
			}
		})
	}
	if s := Diff([]job.Spec{a, b}, []job.Spec{b2, c}).String(); s != "add c; update b; delete a" {
		t.Errorf("String() = %q", s)
	}
}
