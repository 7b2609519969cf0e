// Command tagged is a client that declares two jobs in Go, with tagged handler fields, and a batch of them,
// and serves the Go handlers the jobs of examples/jobs.yaml name (report, settle). With -files it declares those jobs too,
// merged with the code's into one set (a job in both is an error at start):
//
//	go run ./examples/tagged -zookeeper 127.0.0.1:2181 [-files examples/jobs.yaml]
//
// `make run` runs it beside `clover config apply examples/jobs.yaml --watch`, which declares the file's jobs
// through the API instead.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/clover-sched/clover/client"
	springconfig "github.com/clover-sched/clover/spring-like-config"
)

// jobs declares its jobs the way Spring's @Scheduled annotates methods: one tagged handler field each.
type jobs struct {
	Settle client.HandlerFunc `clover:"name=settle-code,cron=0 0 2 * * ?,time_zone=Europe/Paris,timeout=5m,retry.max=3,overlap=forbid,params.ledger=main"`
	Ping   client.HandlerFunc `clover:"name=ping,cron=@every 30s,timeout=10s"`
}

func settle(ctx context.Context, jc client.JobContext) error {
	jc.Logger.Info("settling", "ledger", jc.Params["ledger"], "execution", jc.ExecutionID)
	return nil
}

func report(ctx context.Context, jc client.JobContext) error {
	jc.Logger.Info("report written", "format", jc.Params["format"], "region", jc.Params["region"])
	return nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func ping(ctx context.Context, jc client.JobContext) error {
	fmt.Fprintf(jc.Output, "pong at %s\n", jc.ScheduledAt.Format("15:04:05"))
	return nil
}

func main() {
	zk := flag.String("zookeeper", "127.0.0.1:2181", "ZooKeeper servers, host:port,...")
	files := flag.String("files", "", "job files to declare too, comma-separated (e.g. examples/jobs.yaml)")
	profile := flag.String("profile", os.Getenv("CLOVER_PROFILE"), "profile of the job files")
	flag.Parse()
	if err := run(*zk, *files, *profile); err != nil {
		fmt.Fprintln(os.Stderr, "tagged:", err)
		os.Exit(1)
	}
}

func run(zk, files, profile string) error {
	cfg := client.DefaultConfig()
	cfg.ZooKeeper.Servers = strings.Split(zk, ",")
	cfg.ID = "client-tagged"
	// Its keypair is keys/clients/client-tagged.key (`clover keys gen --client client-tagged`).
	cfg.KeysDir = os.Getenv("CLOVER_KEYS_DIR")
	// Its run journal, under the run's directory when `make run` starts it (a journal left by an earlier
	// cluster would report into this one; the servers drop and receipt such reports).
	if dir := os.Getenv("CLOVER_STATE_DIR"); dir != "" {
		cfg.StateDir = dir
	}
	cfg.Handlers = []string{"shell"} // for the shell jobs of the files
	// The jobs of examples/jobs.yaml route to clients labelled with their region.
	cfg.Labels = map[string]string{"region": envOr("CLOVER_REGION", "emea")}
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	c, err := client.New(cfg, client.WithLogger(logger))
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// A batch of this client's own jobs, declared in Go beside them: each night settle, then ping. A client
	// declares batches of the jobs it declares only; others' are made with job files or the API.
	nightly := springconfig.Batch("tagged-nightly").Description("declared in Go by client-tagged").
		Cron("0 30 2 * * ?").TimeZone("Europe/Paris").Frequency("D")
	nightly.Node("settle", "settle-code").Group("finance").Node("ping", "ping").After("settle")
	sources := []springconfig.Declarer{springconfig.Tagged(&jobs{Settle: settle, Ping: ping}), nightly}
	if files != "" {
		sources = append(sources, springconfig.Files(strings.Split(files, ","), springconfig.Options{Profile: profile}))
	}
	if err := springconfig.Register(ctx, c, sources...); err != nil {
		return err
	}
	// Handlers the file's jobs name, served here whether or not this client declares them.
	c.Handle("report", report)
	c.Handle("settle", settle)
	return c.Run(ctx)
}
