package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/clover-sched/clover/client"
	"github.com/clover-sched/clover/internal/config"
	"github.com/clover-sched/clover/server"
	springconfig "github.com/clover-sched/clover/spring-like-config"
)

// Flags shared by members, mapped to their config keys.
var memberFlagKeys = map[string]string{
	"zookeeper":       "zookeeper.servers",
	"zk-root":         "zookeeper.root",
	"session-timeout": "zookeeper.session_timeout",
	"mongo-uri":       "mongo.uri",
	"mongo-database":  "mongo.database",
	"log-level":       "log_level",
	"api-listen":      "api.listen",
}

func addMemberFlags(cmd *cobra.Command, mongo bool) {
	f := cmd.Flags()
	f.String("config", "", "config file (YAML, TOML or JSON)")
	f.String("id", "", "member id, unique in the cluster (default <kind>-<host>-<pid>)")
	f.String("listen", "", "ZeroMQ endpoint to bind, tcp://host:port")
	f.StringSlice("zookeeper", nil, "ZooKeeper servers, host:port,...")
	f.String("zk-root", "", "root znode of this cluster (default /clover)")
	f.Duration("session-timeout", 0, "ZooKeeper session timeout")
	f.String("log-level", "", "debug, info, warn or error")
	if mongo {
		f.String("mongo-uri", "", "MongoDB URI")
		f.String("mongo-database", "", "MongoDB database")
	}
}

// loadMemberConfig fills cfg (holding its defaults) from --config, the environment and the flags, and
// builds the logger at the level it names.
func loadMemberConfig(cmd *cobra.Command, cfg any, level *string) (*slog.Logger, error) {
	file, _ := cmd.Flags().GetString("config")
	if err := config.Load(file, cmd.Flags(), memberFlagKeys, cfg); err != nil {
		return nil, err
	}
	return newLogger(*level, cmd.ErrOrStderr())
}

func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

func newServerCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run a Clover server (one member of the HA cluster)",
		Long: "Run a Clover server. Servers elect one leader through ZooKeeper; the leader fires jobs and dispatches\n" +
			"them to clients, the others stand by. Every server serves the REST API and records client reports.\n\n" +
			"Config comes from --config, then CLOVER_* environment variables (CLOVER_MONGO_URI, ...), then flags.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg := server.DefaultConfig()
			logger, err := loadMemberConfig(cmd, &cfg, &cfg.LogLevel)
			if err != nil {
				return err
			}
			reg := prometheus.NewRegistry()
			reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
			srv, err := server.New(cfg, server.WithLogger(logger), server.WithRegistry(reg))
			if err != nil {
				return err
			}
			ctx, stop := signalContext()
			defer stop()
			return srv.Run(ctx)
		},
	}
	addMemberFlags(cmd, true)
	cmd.Flags().String("api-listen", "", "REST API listen address, host:port")
	cmd.AddCommand(newSplitStoreCmd())
	return cmd
}

func newSplitStoreCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "split-store",
		Short: "Move the open set, audit log and revisions of a store made by an earlier version to databases of their own",
		Long: "Move the open set, the audit log and the revisions of a store made by a version before they had\n" +
			"databases of their own (<database>_open, _audit, _revisions; a new store has them from the start).\n" +
			"With every server stopped: it refuses while any is registered in ZooKeeper. Run it with the servers'\n" +
			"config; running it again finishes a split cut short and does nothing to a split store.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg := server.DefaultConfig()
			logger, err := loadMemberConfig(cmd, &cfg, &cfg.LogLevel)
			if err != nil {
				return err
			}
			srv, err := server.New(cfg, server.WithLogger(logger))
			if err != nil {
				return err
			}
			ctx, stop := signalContext()
			defer stop()
			moved, err := srv.SplitStore(ctx)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "store %s split: %d documents moved to %s_open, _audit and _revisions\n", cfg.Mongo.Database, moved, cfg.Mongo.Database)
			return nil
		},
	}
	addMemberFlags(cmd, true)
	return cmd
}

func newClientCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "client",
		Short: "Run a Clover client (a worker that serves jobs)",
		Long: "Run a Clover client. It registers in ZooKeeper with the jobs declared in its config and the handlers it\n" +
			"offers, runs what the leader dispatches to it and reports results to any live server.\n\n" +
			"Built-in handlers: shell (when listed in handlers), noop, sleep (params.duration), fail.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg := client.DefaultConfig()
			logger, err := loadMemberConfig(cmd, &cfg, &cfg.LogLevel)
			if err != nil {
				return err
			}
			c, err := client.New(cfg, client.WithLogger(logger))
			if err != nil {
				return err
			}
			registerBuiltins(c)
			ctx, stop := signalContext()
			defer stop()
			if files, _ := cmd.Flags().GetStringSlice("job-file"); len(files) > 0 {
				// Declared like the config's jobs: list, merged with it (a job in both is an error).
				if err := springconfig.Register(ctx, c, springconfig.Files(files, loadOptions(cmd))); err != nil {
					return printLoadErrors(cmd.ErrOrStderr(), err)
				}
			}
			return c.Run(ctx)
		},
	}
	addMemberFlags(cmd, false)
	cmd.Flags().Int("capacity", 0, "executions run at once (0: derived from the CPUs, see the start log)")
	cmd.Flags().StringSlice("handlers", nil, "generic handlers offered, e.g. shell")
	cmd.Flags().StringSlice("job-file", nil, "job files (YAML, JSON, TOML, XML) whose jobs this client declares and serves")
	cmd.Flags().String("profile", "", "profile of the job files (default $CLOVER_PROFILE)")
	return cmd
}

// registerBuiltins adds the Go handlers every `clover client` offers: useful for trying Clover out and for
// the benchmarks.
func registerBuiltins(c *client.Client) {
	c.Handle("noop", func(ctx context.Context, jc client.JobContext) error { return nil })
	c.Handle("sleep", func(ctx context.Context, jc client.JobContext) error {
		d, err := time.ParseDuration(jc.Params["duration"])
		if err != nil {
			return fmt.Errorf("sleep: params.duration: %w", err)
		}
		select {
		case <-time.After(d):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	c.Handle("fail", func(ctx context.Context, jc client.JobContext) error {
		return fmt.Errorf("fail: failing on purpose (%s)", jc.Params["reason"])
	})
	c.Handle("hello", func(ctx context.Context, jc client.JobContext) error {
		jc.Logger.Info("hello from a Go handler", "job", jc.Job, "scheduled_at", jc.ScheduledAt)
		return nil
	})
}
