package cli

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	apiv1 "github.com/clover-sched/clover/api"
	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/jobdiff"
	"github.com/clover-sched/clover/internal/store"
)

// addMessageFlag adds --message to a command that changes a job: it is recorded with the revision.
func addMessageFlag(c *cobra.Command) {
	c.Flags().StringP("message", "m", "", "why: recorded with the job's new revision (clover job history)")
}

// withMessage adds the command's --message to an API path.
func withMessage(cmd *cobra.Command, path string) string {
	m, _ := cmd.Flags().GetString("message")
	if m == "" {
		return path
	}
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	return path + sep + "message=" + url.QueryEscape(m)
}

func parseVersion(s string) (int64, error) {
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 1 {
		return 0, fmt.Errorf("version %q: want a number, 1 or more", s)
	}
	return v, nil
}

// newJobHistoryCmds are the definition history's commands: history, show, diff, rollback, tag, restore.
func newJobHistoryCmds() []*cobra.Command {
	history := &cobra.Command{
		Use: "history NAME", Short: "List a job's revisions, newest first: version, what changed it, who, when, why", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			q := url.Values{}
			limit, _ := cmd.Flags().GetInt("limit")
			q.Set("limit", strconv.Itoa(limit))
			if b, _ := cmd.Flags().GetInt64("before"); b > 0 {
				q.Set("before", strconv.FormatInt(b, 10))
			}
			if tagged, _ := cmd.Flags().GetBool("tagged"); tagged {
				q.Set("tagged", "true")
			}
			var page apiv1.RevisionPage
			if err := api.do(cmd.Context(), "GET", "/api/v1/jobs/"+url.PathEscape(args[0])+"/revisions?"+q.Encode(), nil, &page); err != nil {
				return err
			}
			if wantJSON(cmd) {
				return printJSON(cmd.OutOrStdout(), page)
			}
			if page.Deleted {
				fmt.Fprintf(cmd.OutOrStdout(), "%s is deleted (version %d); `clover job restore %s` brings it back\n", page.Job, page.Latest, page.Job)
			}
			w := table(cmd.OutOrStdout())
			fmt.Fprintln(w, "VERSION\tACTION\tWHO\tVIA\tAT\tTAGS\tMESSAGE")
			for _, r := range page.Revisions {
				action := r.Action
				if r.From > 0 {
					action = fmt.Sprintf("%s (from %d)", action, r.From)
				}
				fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Version, action, r.Who, orDash(r.Via), r.At.UTC().Format(time.RFC3339),
					orDash(strings.Join(r.Tags, ",")), r.Message)
			}
			if err := w.Flush(); err != nil {
				return err
			}
			if page.Next > 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "older: --before %d\n", page.Next)
			}
			return nil
		},
	}
	history.Flags().Int("limit", 20, "how many versions a page spans (1-1000)")
	history.Flags().Int64("before", 0, "versions before this one (the next page)")
	history.Flags().Bool("tagged", false, "only the tagged revisions")

	show := &cobra.Command{
		Use: "show NAME", Short: "Show a job's definition: now, or at --version", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			v, _ := cmd.Flags().GetInt64("version")
			if v == 0 {
				var spec job.Spec
				if err := api.do(cmd.Context(), "GET", "/api/v1/jobs/"+url.PathEscape(args[0]), nil, &spec); err != nil {
					return err
				}
				return printJSON(cmd.OutOrStdout(), spec)
			}
			var rev store.Revision
			if err := api.do(cmd.Context(), "GET", fmt.Sprintf("/api/v1/jobs/%s/revisions/%d", url.PathEscape(args[0]), v), nil, &rev); err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), rev)
		},
	}
	show.Flags().Int64("version", 0, "the version to show (its revision: definition, who, when, why)")

	diff := &cobra.Command{
		Use: "diff NAME [FROM [TO]]", Short: "What changed between two versions, field by field (default: the last change)", Args: cobra.RangeArgs(1, 3),
		Example: "  clover job diff backup        # the last change\n  clover job diff backup 3 5",
		RunE: func(cmd *cobra.Command, args []string) error {
			q := url.Values{}
			for i, key := range []string{"from", "to"} {
				if len(args) > i+1 {
					v, err := parseVersion(args[i+1])
					if err != nil {
						return err
					}
					q.Set(key, strconv.FormatInt(v, 10))
				}
			}
			api, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			var d apiv1.JobDiff
			if err := api.do(cmd.Context(), "GET", "/api/v1/jobs/"+url.PathEscape(args[0])+"/diff?"+q.Encode(), nil, &d); err != nil {
				return err
			}
			if wantJSON(cmd) {
				return printJSON(cmd.OutOrStdout(), d)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: version %d → %d\n", d.Job, d.From, d.To)
			if len(d.Changes) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "  no change to the definition")
				return nil
			}
			fmt.Fprint(cmd.OutOrStdout(), jobdiff.Format(d.Changes))
			return nil
		},
	}

	rollback := &cobra.Command{
		Use: "rollback NAME VERSION", Short: "Make a new version equal to VERSION, if nobody changed the job since you looked", Args: cobra.ExactArgs(2),
		Long: "Make a new version of the job whose definition is VERSION's. It is conditional on the job's current version:\n" +
			"--expect names the version you saw (the newest line of `clover job history`); without it, the version read just before.\n" +
			"If someone changed the job in between, nothing is rolled back and the error says so.",
		RunE: func(cmd *cobra.Command, args []string) error {
			v, err := parseVersion(args[1])
			if err != nil {
				return err
			}
			api, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			expect, _ := cmd.Flags().GetInt64("expect")
			if expect == 0 {
				var cur job.Spec
				if err := api.do(cmd.Context(), "GET", "/api/v1/jobs/"+url.PathEscape(args[0]), nil, &cur); err != nil {
					return err
				}
				expect = cur.Version
			}
			msg, _ := cmd.Flags().GetString("message")
			var out job.Spec
			body := apiv1.RollbackRequest{Version: v, Expect: expect, Message: msg}
			if err := api.do(cmd.Context(), "POST", "/api/v1/jobs/"+url.PathEscape(args[0])+"/rollback", body, &out); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: version %d is version %d's definition\n", out.Name, out.Version, v)
			return nil
		},
	}
	rollback.Flags().Int64("expect", 0, "the job's version you saw: refused if it changed since")
	addMessageFlag(rollback)

	tag := tagCmd("job", "Tag a revision (tagged revisions are never pruned); --remove takes the tag off", func(name string, v int64) string {
		return fmt.Sprintf("/api/v1/jobs/%s/revisions/%d/tags", url.PathEscape(name), v)
	})

	restore := &cobra.Command{
		Use: "restore NAME", Short: "Bring a deleted job back as it was deleted", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			msg, _ := cmd.Flags().GetString("message")
			var out job.Spec
			if err := api.do(cmd.Context(), "POST", "/api/v1/jobs/"+url.PathEscape(args[0])+"/restore", apiv1.RestoreRequest{Message: msg}, &out); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "restored %s (version %d)\n", out.Name, out.Version)
			return nil
		},
	}
	addMessageFlag(restore)
	return []*cobra.Command{history, show, diff, rollback, tag, restore}
}
