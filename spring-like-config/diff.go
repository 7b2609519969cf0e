package springconfig

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"

	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/workflow"
)

// Changes turn one set of job and batch definitions into another. Each list is sorted by name.
type Changes struct {
	Adds    []job.Spec // in the new set only
	Updates []job.Spec // in both and different: the new definition
	Deletes []job.Spec // in the old set only: the old definition

	BatchAdds    []workflow.Definition
	BatchUpdates []workflow.Definition
	BatchDeletes []workflow.Definition
}

// Empty reports whether nothing changes.
func (c Changes) Empty() bool {
	return len(c.Adds)+len(c.Updates)+len(c.Deletes)+len(c.BatchAdds)+len(c.BatchUpdates)+len(c.BatchDeletes) == 0
}

func (c Changes) String() string {
	var parts []string
	for _, g := range []struct {
		verb  string
		specs []job.Spec
	}{{"add", c.Adds}, {"update", c.Updates}, {"delete", c.Deletes}} {
		if len(g.specs) > 0 {
			names := make([]string, len(g.specs))
			for i, s := range g.specs {
				names[i] = s.Name
			}
			parts = append(parts, fmt.Sprintf("%s %s", g.verb, strings.Join(names, ",")))
		}
	}
	for _, g := range []struct {
		verb string
		defs []workflow.Definition
	}{{"add batch", c.BatchAdds}, {"update batch", c.BatchUpdates}, {"delete batch", c.BatchDeletes}} {
		if len(g.defs) > 0 {
			names := make([]string, len(g.defs))
			for i, d := range g.defs {
				names[i] = d.Name
			}
			parts = append(parts, fmt.Sprintf("%s %s", g.verb, strings.Join(names, ",")))
		}
	}
	if len(parts) == 0 {
		return "no change"
	}
	return strings.Join(parts, "; ")
}

// Diff returns what turns old into new. Definitions are compared without what the cluster keeps about a
// job (version, times, source, stats, paused): see Equal.
func Diff(old, new []job.Spec) Changes {
	var c Changes
	c.Adds, c.Updates, c.Deletes = diffNamed(old, new, func(s job.Spec) string { return s.Name }, Equal)
	return c
}

// DiffSets returns what turns old into new, jobs and batches.
func DiffSets(oldJobs, newJobs []job.Spec, oldBatches, newBatches []workflow.Definition) Changes {
	c := Diff(oldJobs, newJobs)
	c.BatchAdds, c.BatchUpdates, c.BatchDeletes = diffNamed(oldBatches, newBatches, func(d workflow.Definition) string { return d.Name }, BatchEqual)
	return c
}

// diffNamed returns what is only in new, what is in both and differs (as new has it), and what is only
// in old, each sorted by name.
func diffNamed[T any](old, new []T, name func(T) string, equal func(a, b T) bool) (adds, updates, deletes []T) {
	before := map[string]T{}
	for _, x := range old {
		before[name(x)] = x
	}
	after := map[string]bool{}
	for _, x := range new {
		after[name(x)] = true
		prev, ok := before[name(x)]
		switch {
		case !ok:
			adds = append(adds, x)
		case !equal(prev, x):
			updates = append(updates, x)
		}
	}
	for _, x := range old {
		if !after[name(x)] {
			deletes = append(deletes, x)
		}
	}
	for _, l := range [][]T{adds, updates, deletes} {
		slices.SortFunc(l, func(a, b T) int { return strings.Compare(name(a), name(b)) })
	}
	return adds, updates, deletes
}

// BatchEqual reports whether a and b define the same batch: what the cluster keeps about it (Version,
// Source) is ignored, and so is the difference between an empty and a missing map or list, as the API's
// JSON has it.
func BatchEqual(a, b workflow.Definition) bool { return workflow.Same(a, b) }

// Batches returns the definitions of ds.
func Batches(ds []BatchDeclaration) []workflow.Definition {
	out := make([]workflow.Definition, len(ds))
	for i, d := range ds {
		out[i] = d.Definition
	}
	return out
}

// Equal reports whether a and b define the same job: bookkeeping (Version, CreatedAt, UpdatedAt,
// ActiveSince, PausedAt, Source, Stats, Paused) is ignored, and so is the difference between an empty
// and a missing map or list, which a JSON round trip through the API does not keep.
func Equal(a, b job.Spec) bool {
	return reflect.DeepEqual(definition(a), definition(b))
}

func definition(s job.Spec) job.Spec {
	return job.Spec{
		Name: s.Name, Schedule: s.Schedule, TimeZone: s.TimeZone, Handler: s.Handler,
		Params: nilIfEmpty(s.Params), Timeout: s.Timeout, Contacts: slices.Clip(nilIfNone(s.Contacts)),
		Mode: s.Mode, Misfire: s.Misfire, Overlap: s.Overlap,
		Routing: job.Routing{
			Strategy: s.Routing.Strategy, HashKey: s.Routing.HashKey, Labels: nilIfEmpty(s.Routing.Labels),
			Clients: nilIfNone(s.Routing.Clients), Width: s.Routing.Width, Shards: s.Routing.Shards,
			ShardItems: nilIfNone(s.Routing.ShardItems),
		},
		Retry: s.Retry, Overdue: s.Overdue, Rerunnable: s.Rerunnable,
	}
}

func nilIfEmpty(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return maps.Clone(m)
}

func nilIfNone(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}
