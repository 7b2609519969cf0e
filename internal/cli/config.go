package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/workflow"
	springconfig "github.com/clover-sched/clover/spring-like-config"
)

func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Check job files and apply them to the cluster",
		Long: "Job files declare jobs in YAML, JSON, TOML or XML, with defaults, templates, profiles and ${NAME:default}\n" +
			"placeholders (see spring-like-config/README.md).",
	}
	addAPIFlags(cmd)
	cmd.PersistentFlags().String("profile", "", "profile to lay over the base (default $CLOVER_PROFILE)")

	cmd.AddCommand(&cobra.Command{
		Use:   "validate FILE...",
		Short: "Check job files without starting or changing anything",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			set, err := springconfig.LoadSet(cmd.Context(), args, loadOptions(cmd))
			if err != nil {
				return printLoadErrors(cmd.OutOrStdout(), err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "ok: %d files, %d jobs, %d batches\n", len(args), len(set.Jobs), len(set.Batches))
			return nil
		},
	})

	apply := &cobra.Command{
		Use:   "apply FILE...",
		Short: "Make the cluster's jobs and batches match the files: add, update, delete",
		Long: "Make the cluster's jobs and batches match the files. They are created with source config:NAME (--source,\n" +
			"by default the first file's name without its extension); a job or batch that this source created and\n" +
			"the files no longer declare is deleted. Those of other sources are never deleted; one of the same name\n" +
			"made by a client or another config source is a conflict, one made by the API is taken over.\n\n" +
			"With --watch it keeps running and applies each valid change of the files; an invalid change is\n" +
			"refused as a whole and the jobs in force stay.",
		Example: "  clover config apply examples/jobs.yaml --profile prod\n  clover config apply jobs/*.yaml --source etl --watch",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			name, _ := cmd.Flags().GetString("source")
			if name == "" {
				name = strings.TrimSuffix(filepath.Base(args[0]), filepath.Ext(args[0]))
			}
			msg, _ := cmd.Flags().GetString("message")
			if msg == "" {
				msg = "config apply " + strings.Join(args, " ")
			}
			a := &configApplier{api: api, source: "config:" + name, out: cmd.OutOrStdout(), message: msg}
			opts := loadOptions(cmd)
			if watch, _ := cmd.Flags().GetBool("watch"); watch {
				return a.watch(cmd, args, opts)
			}
			set, err := springconfig.LoadSet(cmd.Context(), args, opts)
			if err != nil {
				return printLoadErrors(cmd.OutOrStdout(), err)
			}
			owned, err := a.owned(cmd.Context())
			if err != nil {
				return err
			}
			ownedBatches, err := a.ownedBatches(cmd.Context())
			if err != nil {
				return err
			}
			return a.apply(cmd.Context(), springconfig.DiffSets(owned, springconfig.Specs(set.Jobs), ownedBatches, springconfig.Batches(set.Batches)))
		},
	}
	apply.Flags().Bool("watch", false, "keep running and apply every valid change of the files")
	apply.Flags().String("source", "", "name of this config source: jobs get source config:NAME (default: the first file's base name)")
	addMessageFlag(apply)
	cmd.AddCommand(apply)
	return cmd
}

func loadOptions(cmd *cobra.Command) springconfig.Options {
	profile, _ := cmd.Flags().GetString("profile")
	if profile == "" {
		profile = os.Getenv("CLOVER_PROFILE")
	}
	return springconfig.Options{Profile: profile}
}

// printLoadErrors prints each problem of a load on its own line and returns the error that makes the
// command exit non-zero.
func printLoadErrors(w io.Writer, err error) error {
	var errs springconfig.Errors
	if !errors.As(err, &errs) {
		return err
	}
	for _, e := range errs {
		fmt.Fprintln(w, e)
	}
	return fmt.Errorf("%d problems found", len(errs))
}

// configApplier applies job changes to the cluster through the REST API on behalf of one config source.
type configApplier struct {
	api     *apiClient
	source  string
	message string // recorded with each change's revision (--message); the source when empty
	out     io.Writer
	warned  bool // the server did not keep our source: said once
}

func (a *configApplier) withMessage(path string) string {
	return path + "?message=" + url.QueryEscape(truncate(a.message, 1000))
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}

func (a *configApplier) list(ctx context.Context) (map[string]job.Spec, error) {
	var jobs []job.Spec
	if err := a.api.do(ctx, "GET", "/api/v1/jobs", nil, &jobs); err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	out := make(map[string]job.Spec, len(jobs))
	for _, j := range jobs {
		out[j.Name] = j
	}
	return out, nil
}

// owned returns the jobs this source created.
func (a *configApplier) owned(ctx context.Context) ([]job.Spec, error) {
	all, err := a.list(ctx)
	if err != nil {
		return nil, err
	}
	var out []job.Spec
	for _, j := range all {
		if j.Source == a.source {
			out = append(out, j)
		}
	}
	return out, nil
}

// apply carries out changes against the jobs as the cluster has them now, so that it can be repeated
// after a partial failure: an add of a job that exists updates it, an update of a missing job creates it,
// a delete of a missing job does nothing. It goes on after a failed operation and returns them all.
func (a *configApplier) apply(ctx context.Context, ch springconfig.Changes) error {
	cur, err := a.list(ctx)
	if err != nil {
		return err
	}
	var errs []error
	counts := map[string]int{}
	for _, spec := range append(append([]job.Spec(nil), ch.Adds...), ch.Updates...) {
		verb, err := a.upsert(ctx, cur, spec)
		if err != nil {
			errs = append(errs, fmt.Errorf("job %s: %w", spec.Name, err))
			continue
		}
		counts[verb]++
	}
	// Batches after the jobs their nodes run, and deleted before the jobs.
	if err := a.applyBatches(ctx, ch, counts); err != nil {
		errs = append(errs, err)
	}
	for _, spec := range ch.Deletes {
		have, ok := cur[spec.Name]
		if !ok || have.Source != a.source {
			continue // gone already, or no longer ours: never delete what another source owns
		}
		if err := a.api.do(ctx, "DELETE", a.withMessage("/api/v1/jobs/"+url.PathEscape(spec.Name)), nil, nil); err != nil {
			errs = append(errs, fmt.Errorf("job %s: delete: %w", spec.Name, err))
			continue
		}
		fmt.Fprintf(a.out, "DELETE %s\n", spec.Name)
		counts["DELETE"]++
	}
	fmt.Fprintf(a.out, "applied (source %s): %d added, %d updated, %d deleted\n", a.source, counts["ADD"], counts["UPDATE"], counts["DELETE"])
	return errors.Join(errs...)
}

func (a *configApplier) upsert(ctx context.Context, cur map[string]job.Spec, spec job.Spec) (string, error) {
	spec.Source = a.source
	have, exists := cur[spec.Name]
	var out job.Spec
	switch {
	case !exists:
		if err := a.api.do(ctx, "POST", a.withMessage("/api/v1/jobs"), spec, &out); err != nil {
			return "", fmt.Errorf("create: %w", err)
		}
		fmt.Fprintf(a.out, "ADD %s\n", spec.Name)
		a.checkSource(out)
		return "ADD", nil
	case have.Source != a.source && have.Source != "api" && have.Source != "":
		return "", fmt.Errorf("exists with source %s: remove it there, or rename it in the files", have.Source)
	case springconfig.Equal(have, spec):
		// Nothing to change. An identical API job stays the API's: it is taken over only when the files
		// change it, so a job this source never wrote is never deleted by it.
		return "", nil
	}
	spec.Version = have.Version // the update fails if someone changed the job since we read it
	if err := a.api.do(ctx, "PUT", a.withMessage("/api/v1/jobs/"+url.PathEscape(spec.Name)), spec, &out); err != nil {
		return "", fmt.Errorf("update: %w", err)
	}
	fmt.Fprintf(a.out, "UPDATE %s\n", spec.Name)
	a.checkSource(out)
	return "UPDATE", nil
}

// checkSource warns when the server replaced our source: jobs removed from the files cannot then be
// told from API jobs, so they are not deleted.
func (a *configApplier) checkSource(got job.Spec) {
	if got.Source != a.source && !a.warned {
		a.warned = true
		fmt.Fprintf(a.out, "warning: the server recorded source %q instead of %q: jobs removed from the files will not be deleted\n", got.Source, a.source)
	}
}

func (a *configApplier) watch(cmd *cobra.Command, paths []string, opts springconfig.Options) error {
	logger, err := newLogger("info", cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	ctx, stop := signalContext()
	defer stop()
	owned, err := a.owned(ctx)
	if err != nil {
		return err
	}
	ownedBatches, err := a.ownedBatches(ctx)
	if err != nil {
		return err
	}
	wo := springconfig.WatchOptions{
		Options: opts, Current: owned, CurrentBatches: ownedBatches, Logger: logger,
		OnReject: func(err error) { _ = printLoadErrors(a.out, err) },
	}
	err = springconfig.Watch(ctx, paths, wo, a.apply)
	var errs springconfig.Errors
	if errors.As(err, &errs) {
		return printLoadErrors(a.out, errs)
	}
	return err
}

// storedBatch is a batch as GET /api/v1/batches lists it.
type storedBatch struct {
	Name       string              `json:"name"`
	Version    int64               `json:"version"`
	Definition workflow.Definition `json:"definition"`
}

func (a *configApplier) listBatches(ctx context.Context) (map[string]storedBatch, error) {
	var list []storedBatch
	if err := a.api.do(ctx, "GET", "/api/v1/batches", nil, &list); err != nil {
		return nil, fmt.Errorf("list batches: %w", err)
	}
	out := make(map[string]storedBatch, len(list))
	for _, b := range list {
		out[b.Name] = b
	}
	return out, nil
}

// ownedBatches returns the batches this source created.
func (a *configApplier) ownedBatches(ctx context.Context) ([]workflow.Definition, error) {
	all, err := a.listBatches(ctx)
	if err != nil {
		return nil, err
	}
	var out []workflow.Definition
	for _, b := range all {
		if b.Definition.Source == a.source {
			out = append(out, b.Definition)
		}
	}
	return out, nil
}

// applyBatches carries out the batch changes as apply does the jobs', against the batches as they are now.
func (a *configApplier) applyBatches(ctx context.Context, ch springconfig.Changes, counts map[string]int) error {
	if len(ch.BatchAdds)+len(ch.BatchUpdates)+len(ch.BatchDeletes) == 0 {
		return nil
	}
	cur, err := a.listBatches(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, def := range append(append([]workflow.Definition(nil), ch.BatchAdds...), ch.BatchUpdates...) {
		have, exists := cur[def.Name]
		def.Source, def.Version = a.source, 0
		verb := "ADD"
		switch src := have.Definition.Source; {
		case exists && src != a.source && src != "api" && src != "":
			errs = append(errs, fmt.Errorf("batch %s: exists with source %s: remove it there, or rename it in the files", def.Name, src))
			continue
		case exists && springconfig.BatchEqual(have.Definition, def):
			continue // an identical API batch stays the API's, as a job does
		case exists:
			verb, def.Version = "UPDATE", have.Version // refused if someone changed it since
		}
		var out workflow.Definition
		if err := a.api.do(ctx, "PUT", a.withMessage("/api/v1/batches/"+url.PathEscape(def.Name)), def, &out); err != nil {
			errs = append(errs, fmt.Errorf("batch %s: %s: %w", def.Name, strings.ToLower(verb), err))
			continue
		}
		fmt.Fprintf(a.out, "%s batch %s\n", verb, def.Name)
		counts[verb]++
	}
	for _, def := range ch.BatchDeletes {
		have, ok := cur[def.Name]
		if !ok || have.Definition.Source != a.source {
			continue // gone already, or no longer ours
		}
		path := fmt.Sprintf("/api/v1/batches/%s?version=%d&message=%s", url.PathEscape(def.Name), have.Version, url.QueryEscape(truncate(a.message, 1000)))
		if err := a.api.do(ctx, "DELETE", path, nil, nil); err != nil {
			errs = append(errs, fmt.Errorf("batch %s: delete: %w", def.Name, err))
			continue
		}
		fmt.Fprintf(a.out, "DELETE batch %s\n", def.Name)
		counts["DELETE"]++
	}
	return errors.Join(errs...)
}
