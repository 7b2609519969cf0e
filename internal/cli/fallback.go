package cli

import (
	"fmt"
	"maps"
	"slices"
	"time"

	apiv1 "github.com/clover-sched/clover/api"

	"github.com/spf13/cobra"
)

func newFallbackCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "fallback", Short: "Inspect the fallback queue: reports clients kept while no server took them"}
	addAPIFlags(cmd)
	cmd.AddCommand(&cobra.Command{
		Use:   "status",
		Short: "Show what waits in the fallback queue and how the leader's replay goes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			var st apiv1.FallbackStatus
			if err := api.do(cmd.Context(), "GET", "/api/v1/fallback", nil, &st); err != nil {
				return err
			}
			if wantJSON(cmd) {
				return printJSON(cmd.OutOrStdout(), st)
			}
			w := table(cmd.OutOrStdout())
			if st.Waiting == 0 {
				fmt.Fprintf(w, "waiting:\t0\n")
			} else {
				fmt.Fprintf(w, "waiting:\t%d, the oldest since %s (%s ago)\n", st.Waiting,
					st.OldestWaiting.Local().Format(time.RFC3339), time.Since(st.OldestWaiting).Round(time.Second))
				for _, c := range slices.Sorted(maps.Keys(st.WaitingByClient)) {
					fmt.Fprintf(w, "  from %s:\t%d\n", c, st.WaitingByClient[c])
				}
			}
			fmt.Fprintf(w, "applied:\t%d\n", st.Applied)
			fmt.Fprintf(w, "rejected:\t%d\n", st.Rejected)
			if !st.LastAppliedAt.IsZero() {
				fmt.Fprintf(w, "last applied:\t%s by %s\n", st.LastAppliedAt.Local().Format(time.RFC3339), st.LastAppliedBy)
			}
			switch {
			case st.Replay != nil:
				p := st.Replay
				fmt.Fprintf(w, "replay:\tby %s (epoch %d): %d applied, %d rejected this term", p.Leader, p.Epoch, p.Applied, p.Rejected)
				if !p.LastPassAt.IsZero() {
					fmt.Fprintf(w, "; last pass %s ago", time.Since(p.LastPassAt).Round(time.Second))
				}
				fmt.Fprintln(w)
				if p.LastError != "" {
					fmt.Fprintf(w, "last error:\t%s\n", p.LastError)
				}
			case st.Leader != "":
				fmt.Fprintf(w, "replay:\tby the leader %s (ask its API with --api for its progress)\n", st.Leader)
			default:
				fmt.Fprintf(w, "replay:\tnone: no leader is elected\n")
			}
			return w.Flush()
		},
	})
	return cmd
}
