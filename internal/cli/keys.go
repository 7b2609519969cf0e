package cli

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/clover-sched/clover/internal/config"
	"github.com/clover-sched/clover/internal/keyring"
	"github.com/clover-sched/clover/internal/zkacl"
	"github.com/clover-sched/clover/internal/zksession"
)

func newKeysCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Make the keys and tokens a secure cluster runs with",
		Long: "A key directory holds, for each role, the files it needs:\n\n" +
			"  server.pub         the servers' CURVE public key           every process\n" +
			"  server.key         the servers' CURVE keypair              servers\n" +
			"  cluster.secret     signs forwarded API calls; ZooKeeper    servers, monitor\n" +
			"  clients.secret     lets clients register in ZooKeeper      clients\n" +
			"  clients/ID.pub     admits client ID (the allowlist)        servers\n" +
			"  clients/ID.key     client ID's keypair                     that client\n" +
			"  tokens             API tokens, hashed                      servers\n\n" +
			"Copy to each host only the files of its role.",
	}
	cmd.AddCommand(newKeysGenCmd(), newKeysTokenCmd(), newKeysZooKeeperCmd())
	return cmd
}

func newKeysGenCmd() *cobra.Command {
	var dir string
	var clients []string
	cmd := &cobra.Command{
		Use:   "gen --dir DIR [--client ID]...",
		Short: "Make the cluster's keys, and a keypair per client; existing files are kept",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if dir == "" {
				return fmt.Errorf("--dir: required")
			}
			wrote, err := keyring.GenerateCluster(dir)
			for _, id := range clients {
				if err != nil {
					break
				}
				var w []string
				w, err = keyring.GenerateClient(dir, id)
				wrote = append(wrote, w...)
			}
			for _, p := range wrote {
				fmt.Fprintln(cmd.OutOrStdout(), "wrote", p)
			}
			if err == nil && len(wrote) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "nothing to do: every key exists")
			}
			return err
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "key directory (created 0700)")
	cmd.Flags().StringSliceVar(&clients, "client", nil, "make a keypair for this client id (repeatable)")
	return cmd
}

func newKeysTokenCmd() *cobra.Command {
	var dir, name, role string
	cmd := &cobra.Command{
		Use:   "token --dir DIR --name NAME --role viewer|operator|admin",
		Short: "Make an API token; it is printed once, and only its hash is kept",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if dir == "" {
				return fmt.Errorf("--dir: required")
			}
			token, err := keyring.AddToken(dir, name, role)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), token)
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "key directory")
	cmd.Flags().StringVar(&name, "name", "", "who holds the token, as the audit log names them")
	cmd.Flags().StringVar(&role, "role", keyring.RoleViewer, "viewer, operator or admin")
	return cmd
}

func newKeysZooKeeperCmd() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:   "secure-zookeeper --dir DIR",
		Short: "Set Clover's ACLs on an existing ZooKeeper tree (made before the cluster was secure)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			zkc := config.DefaultZooKeeper()
			if err := config.Load("", cmd.Flags(), memberFlagKeys, &struct {
				ZooKeeper *config.ZooKeeper `mapstructure:"zookeeper"`
			}{&zkc}); err != nil {
				return err
			}
			keys, err := keyring.LoadMonitor(dir)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			sess, err := zksession.Connect(ctx, zkc.Servers, zkc.Root, zkc.SessionTimeout, slog.New(slog.DiscardHandler),
				zksession.WithAccess(zkacl.Servers(zkc.Root, keys.Cluster)))
			if err != nil {
				return err
			}
			defer sess.Close()
			changed, err := zkacl.Secure(sess)
			for _, p := range changed {
				fmt.Fprintln(cmd.OutOrStdout(), "secured", p)
			}
			return err
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "key directory (cluster.secret)")
	cmd.Flags().StringSlice("zookeeper", nil, "ZooKeeper servers, host:port,...")
	cmd.Flags().String("zk-root", "", "root znode of this cluster (default /clover)")
	return cmd
}
