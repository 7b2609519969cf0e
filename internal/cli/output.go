package cli

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	apiv1 "github.com/clover-sched/clover/api"
)

// newExecOutputCmd prints a run's output, by byte offsets: from the start (or --offset), or its end with
// --tail; --follow goes on while the run writes, as `tail -f` does.
func newExecOutputCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "output ID",
		Short: "Print a run's output (from its client while it runs, its stored tail after); --follow to go on as it is written",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			follow, _ := cmd.Flags().GetBool("follow")
			run, _ := cmd.Flags().GetInt("run")
			offset, _ := cmd.Flags().GetInt64("offset")
			if tail, _ := cmd.Flags().GetBool("tail"); tail {
				offset = -1
			}
			out := cmd.OutOrStdout()
			for {
				q := url.Values{}
				if offset >= 0 {
					q.Set("offset", strconv.FormatInt(offset, 10))
				}
				if run > 0 {
					q.Set("run", strconv.Itoa(run))
				}
				var chunk apiv1.OutputChunk
				if err := api.do(cmd.Context(), "GET", "/api/v1/executions/"+url.PathEscape(args[0])+"/output?"+q.Encode(), nil, &chunk); err != nil {
					return err
				}
				run = chunk.Run
				if offset >= 0 && chunk.Offset > offset {
					fmt.Fprintf(cmd.ErrOrStderr(), "[... %d bytes no longer kept ...]\n", chunk.Offset-offset)
				}
				fmt.Fprint(out, chunk.Text)
				moved := chunk.Next > offset || offset < 0
				offset = chunk.Next
				switch {
				case chunk.Next < chunk.End && moved:
					continue // more is there already
				case !follow || chunk.Ended:
					return nil
				}
				select {
				case <-cmd.Context().Done():
					return context.Cause(cmd.Context())
				case <-time.After(time.Second):
				}
			}
		},
	}
	c.Flags().BoolP("follow", "f", false, "keep printing what the run writes until it ends")
	c.Flags().Bool("tail", false, "start from the last 64 KiB instead of the start")
	c.Flags().Int("run", 0, "which run (default: the newest)")
	c.Flags().Int64("offset", 0, "start from this byte offset")
	return c
}
