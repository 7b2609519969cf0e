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
	before := map[string]job.Spec{}
	for _, s := range old {
		before[s.Name] = s
	}
	var c Changes
	after := map[string]bool{}
	for _, s := range new {
		after[s.Name] = true
		prev, ok := before[s.Name]
		switch {
		case !ok:
			c.Adds = append(c.Adds, s)
		case !Equal(prev, s):
			c.Updates = append(c.Updates, s)
		}
	}
	for _, s := range old {
		if !after[s.Name] {
			c.Deletes = append(c.Deletes, s)
		}
	}
	for _, l := range [][]job.Spec{c.Adds, c.Updates, c.Deletes} {
		slices.SortFunc(l, func(a, b job.Spec) int { return strings.Compare(a.Name, b.Name) })
	}
	return c
}

// DiffSets returns what turns old into new, jobs and batches.
func DiffSets(oldJobs, newJobs []job.Spec, oldBatches, newBatches []workflow.Definition) Changes {
	c := Diff(oldJobs, newJobs)
	before := map[string]workflow.Definition{}
	for _, d := range oldBatches {
		before[d.Name] = d
	}
	after := map[string]bool{}
	for _, d := range newBatches {
		after[d.Name] = true
		prev, ok := before[d.Name]
		switch {
		case !ok:
			c.BatchAdds = append(c.BatchAdds, d)
		case !BatchEqual(prev, d):
			c.BatchUpdates = append(c.BatchUpdates, d)
		}
	}
	for _, d := range oldBatches {
		if !after[d.Name] {
			c.BatchDeletes = append(c.BatchDeletes, d)
		}
	}
	for _, l := range [][]workflow.Definition{c.BatchAdds, c.BatchUpdates, c.BatchDeletes} {
		slices.SortFunc(l, func(a, b workflow.Definition) int { return strings.Compare(a.Name, b.Name) })
	}
	return c
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
