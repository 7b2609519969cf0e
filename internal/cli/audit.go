package cli

import (
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/clover-sched/clover/internal/store"
)

func newAuditCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Read the audit log: every write made through the API (admins only)"}
	addAPIFlags(cmd)
	list := &cobra.Command{
		Use: "list", Short: "List audit entries, newest first", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			q := url.Values{}
			if who, _ := cmd.Flags().GetString("who"); who != "" {
				q.Set("who", who)
			}
			limit, _ := cmd.Flags().GetInt("limit")
			q.Set("limit", strconv.Itoa(limit))
			var entries []store.AuditEntry
			if err := api.do(cmd.Context(), "GET", "/api/v1/audit?"+q.Encode(), nil, &entries); err != nil {
				return err
			}
			if wantJSON(cmd) {
				return printJSON(cmd.OutOrStdout(), entries)
			}
			w := table(cmd.OutOrStdout())
			fmt.Fprintln(w, "AT\tWHO\tROLE\tACTION\tTARGET\tSTATUS\tVERSION")
			for _, e := range entries {
				version := ""
				if e.Before != 0 || e.After != 0 {
					version = fmt.Sprintf("%d -> %d", e.Before, e.After)
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", e.At.Local().Format(time.RFC3339), e.Who, e.Role, e.Action, e.Target, e.Status, version)
			}
			return w.Flush()
		},
	}
	list.Flags().String("who", "", "only this caller's entries")
	list.Flags().Int("limit", 50, "how many (1-1000)")
	cmd.AddCommand(list)
	return cmd
}
