// Package jobdiff compares two versions of a job's definition field by field, for people: the CLI's
// `clover job diff`, the API's diff route and the console's history tab.
package jobdiff

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/clover-sched/clover/internal/job"
)

// Change is one field that differs. Field is its path as the API names it ("retry.max",
// "params.command"); Before or After is empty when the field is not set on that side.
type Change struct {
	Field  string `json:"field"`
	Before string `json:"before,omitempty"`
	After  string `json:"after,omitempty"`
}

// bookkeeping are the fields the server keeps, not the definition: a change of them alone is no change.
var bookkeeping = []string{"version", "created_at", "updated_at", "active_since", "paused_at", "stats"}

// Diff returns the fields that differ between a and b, in field order.
func Diff(a, b job.Spec) []Change {
	fa, fb := flatten(a), flatten(b)
	var out []Change
	for _, k := range slices.Sorted(maps.Keys(union(fa, fb))) {
		if fa[k] != fb[k] {
			out = append(out, Change{Field: k, Before: fa[k], After: fb[k]})
		}
	}
	return out
}

// Format writes changes as lines: "~ field: before → after", "+ field: after", "- field: before".
func Format(changes []Change) string {
	var b strings.Builder
	for _, c := range changes {
		switch {
		case c.Before == "":
			fmt.Fprintf(&b, "+ %s: %s\n", c.Field, c.After)
		case c.After == "":
			fmt.Fprintf(&b, "- %s: %s\n", c.Field, c.Before)
		default:
			fmt.Fprintf(&b, "~ %s: %s → %s\n", c.Field, c.Before, c.After)
		}
	}
	return b.String()
}

func union(a, b map[string]string) map[string]string {
	out := maps.Clone(a)
	maps.Copy(out, b)
	return out
}

// flatten is spec's JSON as path → value: objects are walked, anything else (a list, a string, a number)
// is a value, written as JSON except strings, which are written as they are.
func flatten(spec job.Spec) map[string]string {
	raw, err := json.Marshal(spec)
	if err != nil {
		return map[string]string{"definition": err.Error()}
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return map[string]string{"definition": err.Error()}
	}
	for _, k := range bookkeeping {
		delete(m, k)
	}
	out := map[string]string{}
	walk("", m, out)
	return out
}

func walk(prefix string, v any, out map[string]string) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			path := k
			if prefix != "" {
				path = prefix + "." + k
			}
			walk(path, e, out)
		}
	case string:
		if x != "" {
			out[prefix] = x
		}
	case nil:
	case bool:
		if x {
			out[prefix] = "true"
		}
	default:
		b, _ := json.Marshal(x)
		if s := string(b); s != "0" && s != "[]" {
			out[prefix] = s
		}
	}
}
