package cli

import (
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	apiv1 "github.com/clover-sched/clover/api"
	"github.com/clover-sched/clover/internal/job"
)

func newExecCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "exec", Short: "Inspect and operate executions: list, get, output, live, stop, rerun, done"}
	addAPIFlags(cmd)
	list := &cobra.Command{
		Use: "list", Short: "List executions, newest first", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			q := url.Values{}
			for _, k := range []string{"job", "state", "before", "before-id"} {
				if v, _ := cmd.Flags().GetString(k); v != "" {
					q.Set(strings.ReplaceAll(k, "-", "_"), v)
				}
			}
			if archived, _ := cmd.Flags().GetBool("archived"); archived {
				q.Set("archived", "true")
			}
			limit, _ := cmd.Flags().GetInt("limit")
			q.Set("limit", fmt.Sprint(limit))
			var execs []job.Execution
			if err := api.do(cmd.Context(), "GET", "/api/v1/executions?"+q.Encode(), nil, &execs); err != nil {
				return err
			}
			if wantJSON(cmd) {
				return printJSON(cmd.OutOrStdout(), execs)
			}
			w := table(cmd.OutOrStdout())
			fmt.Fprintln(w, "ID\tSTATE\tTRIGGER\tCLIENT\tDURATION\tEXIT")
			for _, e := range execs {
				dur, exit := "", ""
				if e.Result != nil {
					dur, exit = time.Duration(e.Result.Duration).Round(time.Millisecond).String(), fmt.Sprint(e.Result.ExitCode)
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", e.ID, e.State, e.Trigger, e.Client, dur, exit)
			}
			if err := w.Flush(); err != nil {
				return err
			}
			if len(execs) == limit {
				// The next page: what was scheduled before the last one shown.
				last := execs[len(execs)-1]
				fmt.Fprintf(cmd.OutOrStdout(), "more: --before %s --before-id %s\n", last.ScheduledAt.UTC().Format(time.RFC3339Nano), last.ID)
			}
			return nil
		},
	}
	list.Flags().String("before", "", "only executions scheduled before this RFC 3339 time (the next page)")
	list.Flags().String("before-id", "", "with --before: also those scheduled at that time whose id sorts before this one")
	list.Flags().Bool("archived", false, "list the archive (executions older than the servers' history.keep)")
	list.Flags().String("job", "", "only this job")
	list.Flags().String("state", "", "only this state: pending, running, retrying, orphaned, succeeded, failed, skipped")
	list.Flags().Int("limit", 20, "at most this many")
	cmd.AddCommand(list)
	cmd.AddCommand(&cobra.Command{
		Use: "get ID", Short: "Show one execution with its result and output tail", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			var e job.Execution
			if err := api.do(cmd.Context(), "GET", "/api/v1/executions/"+url.PathEscape(args[0]), nil, &e); err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), e)
		},
	})
	cmd.AddCommand(newExecOutputCmd())
	live := &cobra.Command{
		Use: "live", Short: "Show what the leader tracks as open now: waiting, queued, running, retrying, orphaned...", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			q := url.Values{}
			if j, _ := cmd.Flags().GetString("job"); j != "" {
				q.Set("job", j)
			}
			limit, _ := cmd.Flags().GetInt("limit")
			q.Set("limit", strconv.Itoa(limit))
			var out []map[string]any
			if err := api.do(cmd.Context(), "GET", "/api/v1/inflight?"+q.Encode(), nil, &out); err != nil {
				return err
			}
			if wantJSON(cmd) {
				return printJSON(cmd.OutOrStdout(), out)
			}
			var b apiv1.Backlog
			if err := api.do(cmd.Context(), "GET", "/api/v1/backlog", nil, &b); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), backlogLine(b, len(out)))
			w := table(cmd.OutOrStdout())
			fmt.Fprintln(w, "ID\tSTATUS\tCLIENT\tRUN\tATTEMPT\tOVERDUE\tPROGRESS")
			for _, v := range out {
				progress := "-"
				if p, ok := v["progress"].(map[string]any); ok {
					progress = fmt.Sprintf("%v%% %v", p["percent"], p["message"])
				}
				fmt.Fprintf(w, "%v\t%v\t%v\t%v\t%v\t%v\t%s\n", v["id"], v["status"], orDash(v["client"]), v["run"], v["attempt"], v["overdue"] == true, progress)
			}
			return w.Flush()
		},
	}
	live.Flags().String("job", "", "only this job")
	live.Flags().Int("limit", 100, "show the oldest this many (at most 10000)")
	cmd.AddCommand(live)
	for _, a := range []struct{ use, short string }{
		{"stop ID", "Stop a run: its client kills it (a shell job's whole process group); a waiting one ends at once"},
		{"rerun ID", "Run an orphaned execution again (its client vanished mid-run; be sure it did not complete)"},
		{"done ID", "Close an orphaned execution as succeeded (or --status failed) after checking what it did"},
	} {
		action, _, _ := strings.Cut(a.use, " ")
		c := &cobra.Command{
			Use: a.use, Short: a.short, Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				api, err := newAPIClient(cmd)
				if err != nil {
					return err
				}
				body := map[string]string{}
				if n, _ := cmd.Flags().GetString("note"); n != "" {
					body["note"] = n
				}
				if action == "done" {
					body["status"], _ = cmd.Flags().GetString("status")
				}
				var out map[string]string
				if err := api.do(cmd.Context(), "POST", "/api/v1/executions/"+url.PathEscape(args[0])+"/"+action, body, &out); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: %s requested\n", args[0], action)
				return nil
			},
		}
		c.Flags().String("note", "", "who acts, and why (recorded with the execution)")
		if action == "done" {
			c.Flags().String("status", "succeeded", "succeeded or failed")
		}
		cmd.AddCommand(c)
	}
	return cmd
}

// backlogLine summarizes the leader's backlog above the live table.
func backlogLine(b apiv1.Backlog, shown int) string {
	statuses := slices.Sorted(maps.Keys(b.ByStatus))
	parts := make([]string, 0, len(statuses))
	for _, st := range statuses {
		parts = append(parts, fmt.Sprintf("%s %d", st, b.ByStatus[st]))
	}
	full := ""
	if b.Full {
		full = " FULL: scheduled firings wait, their times go to the misfire policies;"
	}
	return fmt.Sprintf("open %d (%s); backlog %d of %d, %.1f of %d MiB;%s misfired while waiting (this term) %d; insert batch %d; showing the oldest %d",
		b.Open, strings.Join(parts, ", "), b.Waiting, b.Limit, float64(b.Bytes)/(1<<20), b.LimitMiB, full, b.Misfired, b.InsertBatch, shown)
}
