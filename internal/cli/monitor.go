package cli

import (
	"github.com/spf13/cobra"

	"github.com/clover-sched/clover/monitor"
)

func newMonitorCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "monitor",
		Short: "Run a Clover monitor: detect what died or hangs, and mail the people responsible",
		Long: "Run a Clover monitor. Several may run; the one elected through ZooKeeper checks the cluster (members,\n" +
			"leader, jobs without a client, failed, orphaned, overdue and waiting executions, the fallback queue) and\n" +
			"mails the contacts of each problem, with reminders and a recovery message. Every monitor delivers queued\n" +
			"mails. SMTP settings: smtp.host, smtp.port, smtp.username, smtp.password, smtp.from, smtp.starttls\n" +
			"(CLOVER_SMTP_HOST, ...).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg := monitor.DefaultConfig()
			logger, err := loadMemberConfig(cmd, &cfg, &cfg.LogLevel)
			if err != nil {
				return err
			}
			m, err := monitor.New(cfg, monitor.WithLogger(logger))
			if err != nil {
				return err
			}
			ctx, stop := signalContext()
			defer stop()
			return m.Run(ctx)
		},
	}
	addMemberFlags(cmd, true)
	cmd.Flags().Lookup("listen").Usage = "HTTP address for /metrics and /healthz, host:port"
	cmd.Flags().StringSlice("operators", nil, "contacts told of cluster problems: names or email addresses")
	return cmd
}
