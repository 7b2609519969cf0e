package cli

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	apiv1 "github.com/clover-sched/clover/api"
	"github.com/clover-sched/clover/internal/store"
	"github.com/clover-sched/clover/internal/workflow"
)

// A batch's versions: show one, diff two, roll back to one, tag one (clover batch history lists them).

// batchRevisions reads a batch's revisions and returns the one of version v (the newest for 0).
func batchRevision(cmd *cobra.Command, api *apiClient, name string, v int64) (store.BatchRevision, []store.BatchRevision, error) {
	var revs []store.BatchRevision
	if err := api.do(cmd.Context(), "GET", batchPath(name, "revisions"), nil, &revs); err != nil {
		return store.BatchRevision{}, nil, err
	}
	for _, r := range revs {
		if v == 0 && r.Action != store.RevisionDeleted || r.Version == v {
			return r, revs, nil
		}
	}
	return store.BatchRevision{}, revs, fmt.Errorf("batch %s has no version %d", name, v)
}

func batchShowCmd() *cobra.Command {
	c := &cobra.Command{
		Use: "show NAME [--version V]", Short: "A batch's definition at a version (JSON)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			v, _ := cmd.Flags().GetInt64("version")
			r, _, err := batchRevision(cmd, api, args[0], v)
			if err != nil {
				return err
			}
			r.Definition.Version = r.Version
			return printJSON(cmd.OutOrStdout(), r.Definition)
		},
	}
	c.Flags().Int64("version", 0, "the version (default: the newest)")
	return c
}

func batchDiffCmd() *cobra.Command {
	c := &cobra.Command{
		Use: "diff NAME [--from A] [--to B]", Short: "What changed in a batch between two versions: nodes and edges", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			to, _ := cmd.Flags().GetInt64("to")
			newer, _, err := batchRevision(cmd, api, args[0], to)
			if err != nil {
				return err
			}
			from, _ := cmd.Flags().GetInt64("from")
			if from == 0 {
				from = newer.Version - 1
			}
			if from < 1 {
				return fmt.Errorf("batch %s: version %d is the first; there is nothing before it", args[0], newer.Version)
			}
			older, _, err := batchRevision(cmd, api, args[0], from)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "batch %s, version %d → %d\n", args[0], older.Version, newer.Version)
			for _, l := range diffBatches(older.Definition, newer.Definition) {
				fmt.Fprintln(cmd.OutOrStdout(), l)
			}
			return nil
		},
	}
	c.Flags().Int64("from", 0, "the older version (default: the one before --to)")
	c.Flags().Int64("to", 0, "the newer version (default: the newest)")
	return c
}

// diffBatches lists what changed from a to b: the batch's own fields, then nodes and edges added (+),
// removed (-) and changed (~).
func diffBatches(a, b workflow.Definition) []string {
	js := func(v any) string { out, _ := json.Marshal(v); return string(out) }
	var out []string
	a.Version, b.Version = 0, 0
	ha, hb := a, b
	ha.Nodes, ha.Edges, hb.Nodes, hb.Edges = nil, nil, nil, nil
	if js(ha) != js(hb) {
		out = append(out, "~ batch "+js(ha)+" → "+js(hb))
	}
	nodes := func(d workflow.Definition) map[string]string {
		m := map[string]string{}
		for _, n := range d.Nodes {
			m[n.Name] = js(n)
		}
		return m
	}
	na, nb := nodes(a), nodes(b)
	for _, name := range slices.Sorted(maps.Keys(na)) {
		switch nb[name] {
		case "":
			out = append(out, "- node "+na[name])
		case na[name]:
		default:
			out = append(out, "~ node "+na[name]+" → "+nb[name])
		}
	}
	for _, name := range slices.Sorted(maps.Keys(nb)) {
		if na[name] == "" {
			out = append(out, "+ node "+nb[name])
		}
	}
	edges := func(d workflow.Definition) map[string]bool {
		m := map[string]bool{}
		for _, e := range d.Edges {
			m[fmt.Sprintf("%s → %s (%s)", e.From, e.To, cmp.Or(e.Flag, workflow.OnSuccess))] = true
		}
		return m
	}
	ea, eb := edges(a), edges(b)
	for _, e := range slices.Sorted(maps.Keys(ea)) {
		if !eb[e] {
			out = append(out, "- edge "+e)
		}
	}
	for _, e := range slices.Sorted(maps.Keys(eb)) {
		if !ea[e] {
			out = append(out, "+ edge "+e)
		}
	}
	if len(out) == 0 {
		out = append(out, "(no change)")
	}
	return out
}

func batchRollbackCmd() *cobra.Command {
	c := &cobra.Command{
		Use: "rollback NAME --to V", Short: "Make a new version of a batch equal to an earlier one (runs under way keep theirs)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			to, _ := cmd.Flags().GetInt64("to")
			if to < 1 {
				return fmt.Errorf("give the version to go back to: --to V")
			}
			api, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			old, revs, err := batchRevision(cmd, api, args[0], to)
			if err != nil {
				return err
			}
			d := old.Definition
			d.Version = 0
			if len(revs) > 0 && revs[0].Action != store.RevisionDeleted {
				d.Version = revs[0].Version // the newest: the write is refused if someone changed it since
			}
			if !cmd.Flags().Changed("message") {
				_ = cmd.Flags().Set("message", fmt.Sprintf("rolled back to version %d", to))
			}
			var out workflow.Definition
			if err := api.do(cmd.Context(), "PUT", withMessage(cmd, batchPath(args[0])), d, &out); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "batch %s is version %d, equal to version %d\n", out.Name, out.Version, to)
			return nil
		},
	}
	c.Flags().Int64("to", 0, "the version whose definition becomes the newest")
	addMessageFlag(c)
	return c
}

func batchTagCmd() *cobra.Command {
	return tagCmd("batch", "Tag a version of a batch (or remove the tag)", func(name string, v int64) string {
		return batchPath(name, "revisions", fmt.Sprint(v), "tags")
	})
}

// tagCmd is `clover job|batch tag NAME VERSION TAG [--remove]`; tagsPath is the route of a revision's tags.
func tagCmd(kind, short string, tagsPath func(name string, v int64) string) *cobra.Command {
	c := &cobra.Command{
		Use: "tag NAME VERSION TAG [--remove]", Short: short, Args: cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := parseVersion(args[1])
			if err != nil {
				return err
			}
			api, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			path := tagsPath(args[0], v)
			var rev struct {
				Tags []string `json:"tags"`
			}
			if remove, _ := cmd.Flags().GetBool("remove"); remove {
				err = api.do(cmd.Context(), "DELETE", path+"/"+url.PathEscape(args[2]), nil, &rev)
			} else {
				err = api.do(cmd.Context(), "POST", path, apiv1.TagRequest{Tag: args[2]}, &rev)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s %s version %d: tags [%s]\n", kind, args[0], v, strings.Join(rev.Tags, " "))
			return nil
		},
	}
	c.Flags().Bool("remove", false, "remove the tag instead")
	return c
}
