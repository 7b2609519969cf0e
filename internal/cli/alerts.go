package cli

import (
	"fmt"
	"net/url"
	"time"

	"github.com/spf13/cobra"

	"github.com/clover-sched/clover/internal/store"
)

func newAlertCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "alert", Short: "Show the problems the monitor and the servers raised"}
	addAPIFlags(cmd)
	list := &cobra.Command{
		Use: "list", Short: "List alerts: open ones, or --state cleared|all", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			state, _ := cmd.Flags().GetString("state")
			var alerts []store.Alert
			if err := api.do(cmd.Context(), "GET", "/api/v1/alerts?state="+url.QueryEscape(state), nil, &alerts); err != nil {
				return err
			}
			if wantJSON(cmd) {
				return printJSON(cmd.OutOrStdout(), alerts)
			}
			w := table(cmd.OutOrStdout())
			fmt.Fprintln(w, "ALERT\tSTATE\tSINCE\tWHAT")
			for _, a := range alerts {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", a.Key, a.State, a.Since.Local().Format(time.RFC3339), a.Summary)
			}
			return w.Flush()
		},
	}
	list.Flags().String("state", "", "open (default), cleared or all")
	cmd.AddCommand(list, &cobra.Command{
		Use: "clear KEY", Short: "Clear an open alert whose problem is dealt with (e.g. a member removed on purpose)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			if err := api.do(cmd.Context(), "POST", "/api/v1/alerts/clear?key="+url.QueryEscape(args[0]), nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "cleared %s\n", args[0])
			return nil
		},
	})
	return cmd
}
