package cli

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	apiv1 "github.com/clover-sched/clover/api"
	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/store"
	"github.com/clover-sched/clover/internal/workflow"
)

// clover batch: batch workflows (graphs of jobs run for a cycle), the design's batch_manage.

func newBatchCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "batch", Short: "Batch workflows: define graphs of jobs, run them for a cycle, and operate the runs"}
	addAPIFlags(cmd)
	cmd.AddCommand(batchListCmd(), batchGetCmd(), batchApplyCmd(), batchDeleteCmd(), batchHistoryCmd(),
		batchRunCmd(), batchRunsCmd(), batchStatusCmd(), batchSkipCmd(), batchShowCmd(), batchDiffCmd(), batchRollbackCmd(), batchTagCmd())
	for _, op := range []struct{ name, short string }{
		{"pause", "Pause a run: no node starts; those running finish"},
		{"resume", "Resume a paused run"},
		{"stop", "Stop a run: its running executions are stopped and nothing more starts"},
		{"rerun", "Rerun a run from the point of failure: what succeeded is not repeated"},
		{"reset", "Put every node of a run back to not started (nothing may run); resume starts it again"},
	} {
		cmd.AddCommand(batchOpCmd(op.name, op.short))
	}
	return cmd
}

func batchPath(name string, rest ...string) string {
	p := "/api/v1/batches/" + url.PathEscape(name)
	for _, r := range rest {
		p += "/" + url.PathEscape(r)
	}
	return p
}

func batchListCmd() *cobra.Command {
	return &cobra.Command{
		Use: "list", Short: "List the batches", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			var out []store.Batch
			if err := api.do(cmd.Context(), "GET", "/api/v1/batches", nil, &out); err != nil {
				return err
			}
			if wantJSON(cmd) {
				return printJSON(cmd.OutOrStdout(), out)
			}
			w := table(cmd.OutOrStdout())
			fmt.Fprintln(w, "NAME\tVERSION\tNODES\tEDGES\tUPDATED\tBY")
			for _, b := range out {
				fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%s\t%s\n", b.Name, b.Version, len(b.Definition.Nodes), len(b.Definition.Edges), b.UpdatedAt.Format(time.RFC3339), b.UpdatedBy)
			}
			return w.Flush()
		},
	}
}

func batchGetCmd() *cobra.Command {
	return &cobra.Command{
		Use: "get NAME", Short: "Show a batch's definition (JSON, ready for apply)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			var d workflow.Definition
			if err := api.do(cmd.Context(), "GET", batchPath(args[0]), nil, &d); err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), d)
		},
	}
}

// readBatchFile reads batch definitions from a JSON or YAML file: one definition, or a list of them.
// Fields are checked strictly (a misspelt field is an error, not ignored) and the graph's rules before
// anything is sent.
func readBatchFile(file string) ([]workflow.Definition, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	if trimmed := bytes.TrimSpace(data); len(trimmed) == 0 || (trimmed[0] != '{' && trimmed[0] != '[') {
		var v any
		if err := yaml.Unmarshal(data, &v); err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		if data, err = json.Marshal(v); err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
	}
	var defs []workflow.Definition
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if bytes.HasPrefix(bytes.TrimSpace(data), []byte("[")) {
		err = dec.Decode(&defs)
	} else {
		var d workflow.Definition
		err = dec.Decode(&d)
		defs = []workflow.Definition{d}
	}
	if err != nil && err != io.EOF {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	for i, d := range defs {
		if err := d.Validate(); err != nil {
			return nil, fmt.Errorf("%s: batch %d: %w", file, i+1, err)
		}
	}
	return defs, nil
}

func batchApplyCmd() *cobra.Command {
	c := &cobra.Command{
		Use: "apply -f FILE", Short: "Create or update batches from a JSON or YAML file (one definition or a list)", Args: cobra.NoArgs,
		Example: "  clover batch apply -f examples/batches/year-end.yaml -m \"add the branch reports\"",
		RunE: func(cmd *cobra.Command, args []string) error {
			file, _ := cmd.Flags().GetString("file")
			if file == "" {
				return fmt.Errorf("give the file: -f FILE")
			}
			defs, err := readBatchFile(file)
			if err != nil {
				return err
			}
			api, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			var have []store.Batch
			if err := api.do(cmd.Context(), "GET", "/api/v1/batches", nil, &have); err != nil {
				return err
			}
			version := map[string]int64{}
			for _, b := range have {
				version[b.Name] = b.Version
			}
			for _, d := range defs {
				d.Version = version[d.Name]
				var out workflow.Definition
				if err := api.do(cmd.Context(), "PUT", withMessage(cmd, batchPath(d.Name)), d, &out); err != nil {
					return fmt.Errorf("batch %s: %w", d.Name, err)
				}
				verb := "created"
				if d.Version != 0 {
					verb = "updated"
				}
				fmt.Fprintf(cmd.OutOrStdout(), "batch %s %s (version %d)\n", out.Name, verb, out.Version)
			}
			return nil
		},
	}
	c.Flags().StringP("file", "f", "", "the file: JSON or YAML")
	addMessageFlag(c)
	return c
}

func batchDeleteCmd() *cobra.Command {
	c := &cobra.Command{
		Use: "delete NAME", Short: "Delete a batch (its history and runs are kept)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			if err := api.do(cmd.Context(), "DELETE", withMessage(cmd, batchPath(args[0])), nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "batch %s deleted\n", args[0])
			return nil
		},
	}
	addMessageFlag(c)
	return c
}

func batchHistoryCmd() *cobra.Command {
	return &cobra.Command{
		Use: "history NAME", Short: "A batch's versions, newest first", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			var revs []store.BatchRevision
			if err := api.do(cmd.Context(), "GET", batchPath(args[0], "revisions"), nil, &revs); err != nil {
				return err
			}
			if wantJSON(cmd) {
				return printJSON(cmd.OutOrStdout(), revs)
			}
			w := table(cmd.OutOrStdout())
			fmt.Fprintln(w, "VERSION\tACTION\tAT\tWHO\tNODES\tTAGS\tMESSAGE")
			for _, r := range revs {
				fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%d\t%s\t%s\n", r.Version, r.Action, r.At.Format(time.RFC3339), r.Who, len(r.Definition.Nodes), strings.Join(r.Tags, ","), r.Message)
			}
			return w.Flush()
		},
	}
}

func batchRunCmd() *cobra.Command {
	c := &cobra.Command{
		Use: "run NAME --cycle CYCLE", Short: "Start a run of a batch for a cycle (a business date)", Args: cobra.ExactArgs(1),
		Example: "  clover batch run year-end --cycle 2026-12-31 --frequency Y --param txdate=20261231",
		RunE: func(cmd *cobra.Command, args []string) error {
			cycle, _ := cmd.Flags().GetString("cycle")
			if err := workflow.ValidName("--cycle", cycle); err != nil {
				return err
			}
			params, err := paramsFlag(cmd)
			if err != nil {
				return err
			}
			req := apiv1.BatchRunRequest{Cycle: cycle, Params: params}
			req.Frequency, _ = cmd.Flags().GetString("frequency")
			req.Rerun, _ = cmd.Flags().GetBool("rerun")
			req.Why, _ = cmd.Flags().GetString("why")
			api, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			var run store.BatchRun
			if err := api.do(cmd.Context(), "POST", batchPath(args[0], "runs"), req, &run); err != nil {
				return err
			}
			if wantJSON(cmd) {
				return printJSON(cmd.OutOrStdout(), run)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "batch run %s %s (round %d, version %d)\n", run.ID, run.State, run.Round, run.Version)
			return nil
		},
	}
	c.Flags().String("cycle", "", "the cycle the run is for (a business date, 2026-12-15): a batch runs once per cycle")
	c.Flags().String("frequency", "", "the run's frequency (D, W, M, or any name nodes list): nodes that list others do not run")
	c.Flags().StringArray("param", nil, "parameter NAME=VALUE given to every node's job (repeatable)")
	c.Flags().Bool("rerun", false, "if the cycle has a run, rerun it from the point of failure")
	c.Flags().String("why", "", "recorded with the run's start")
	return c
}

func batchRunsCmd() *cobra.Command {
	c := &cobra.Command{
		Use: "runs NAME", Short: "A batch's runs, newest first", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			limit, _ := cmd.Flags().GetInt("limit")
			var runs []store.BatchRun
			if err := api.do(cmd.Context(), "GET", batchPath(args[0], "runs")+fmt.Sprintf("?limit=%d", limit), nil, &runs); err != nil {
				return err
			}
			if wantJSON(cmd) {
				return printJSON(cmd.OutOrStdout(), runs)
			}
			w := table(cmd.OutOrStdout())
			fmt.Fprintln(w, "CYCLE\tSTATE\tROUND\tFREQUENCY\tSTARTED\tENDED\tBY\tREASON")
			for _, r := range runs {
				ended := ""
				if !r.EndedAt.IsZero() {
					ended = r.EndedAt.Format(time.RFC3339)
				}
				fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", r.Cycle, r.State, r.Round, r.Frequency, r.StartedAt.Format(time.RFC3339), ended, r.By, r.Reason)
			}
			return w.Flush()
		},
	}
	c.Flags().Int("limit", 20, "at most this many")
	return c
}

func batchStatusCmd() *cobra.Command {
	c := &cobra.Command{
		Use: "status NAME CYCLE", Short: "Where each node of a run stands (--exceptions: its failed executions and why)", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			var st apiv1.BatchRunStatus
			if err := api.do(cmd.Context(), "GET", batchPath(args[0], "runs", args[1]), nil, &st); err != nil {
				return err
			}
			var failed []job.Execution
			if ex, _ := cmd.Flags().GetBool("exceptions"); ex {
				if err := api.do(cmd.Context(), "GET", batchPath(args[0], "runs", args[1], "executions")+"?state=failed", nil, &failed); err != nil {
					return err
				}
			}
			if wantJSON(cmd) {
				if failed != nil {
					return printJSON(cmd.OutOrStdout(), failed)
				}
				return printJSON(cmd.OutOrStdout(), st)
			}
			printBatchStatus(cmd.OutOrStdout(), st)
			if len(failed) > 0 {
				w := table(cmd.OutOrStdout())
				fmt.Fprintln(w, "FAILED EXECUTION\tCLIENT\tEXIT\tERROR")
				for _, e := range failed {
					exit, msg := "", ""
					if e.Result != nil {
						exit, msg = fmt.Sprint(e.Result.ExitCode), e.Result.Error
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", e.ID, e.Client, exit, msg)
				}
				return w.Flush()
			}
			return nil
		},
	}
	c.Flags().Bool("exceptions", false, "also list the run's failed executions, with their exit codes and errors")
	return c
}

func printBatchStatus(out io.Writer, st apiv1.BatchRunStatus) {
	r := st.Run
	fmt.Fprintf(out, "run %s: %s, round %d, version %d, frequency %q, started %s by %s\n", r.ID, r.State, r.Round, r.Version, r.Frequency, r.StartedAt.Format(time.RFC3339), r.By)
	if r.Reason != "" {
		fmt.Fprintf(out, "  %s\n", r.Reason)
	}
	w := table(out)
	fmt.Fprintln(w, "NODE\tJOB\tGROUP\tSTATE\tPARTITIONS\tNOTE")
	for _, n := range st.Nodes {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", n.Name, n.Job, cmp.Or(n.Group, "-"), n.State, partitionSummary(n), noteOf(n))
	}
	_ = w.Flush()
	if st.Running > 0 {
		fmt.Fprintf(out, "%d executions under way\n", st.Running)
	}
	for _, w := range st.Waiting {
		fmt.Fprintf(out, "  %s\n", w)
	}
}

// partitionSummary says how a node's partitions stand: "3 of 3 succeeded", "1 of 3 failed (B)".
func partitionSummary(n workflow.NodeStatus) string {
	total := 0
	for _, c := range n.Partitions {
		total += c
	}
	if total == 0 {
		return ""
	}
	var parts []string
	for _, s := range slices.Sorted(maps.Keys(n.Partitions)) {
		parts = append(parts, fmt.Sprintf("%d %s", n.Partitions[s], s))
	}
	out := fmt.Sprintf("%d: %s", total, strings.Join(parts, ", "))
	if len(n.Failed) > 0 {
		out += " (failed: " + strings.Join(n.Failed, " ") + ")"
	}
	return out
}

func noteOf(n workflow.NodeStatus) string { return n.Reason }

func batchOpCmd(op, short string) *cobra.Command {
	c := &cobra.Command{
		Use: op + " NAME CYCLE", Short: short, Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			why, _ := cmd.Flags().GetString("why")
			return batchOperation(cmd, batchPath(args[0], "runs", args[1], op), why)
		},
	}
	c.Flags().String("why", "", "recorded with the operation")
	return c
}

func batchSkipCmd() *cobra.Command {
	c := &cobra.Command{
		Use: "skip NAME CYCLE NODE --why TEXT", Short: "Mark a node of a run succeeded by hand (not running): the nodes after it go on", Args: cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			why, _ := cmd.Flags().GetString("why")
			if strings.TrimSpace(why) == "" {
				return fmt.Errorf("say why: --why TEXT (recorded with who marked it)")
			}
			return batchOperation(cmd, batchPath(args[0], "runs", args[1], "nodes", args[2], "skip"), why)
		},
	}
	c.Flags().String("why", "", "why the node may count as succeeded (required)")
	return c
}

func batchOperation(cmd *cobra.Command, path, why string) error {
	api, err := newAPIClient(cmd)
	if err != nil {
		return err
	}
	var run store.BatchRun
	if err := api.do(cmd.Context(), "POST", path, apiv1.BatchOperationRequest{Why: why}, &run); err != nil {
		return err
	}
	if wantJSON(cmd) {
		return printJSON(cmd.OutOrStdout(), run)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "batch run %s %s (round %d)\n", run.ID, run.State, run.Round)
	return nil
}
