package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	apiv1 "github.com/clover-sched/clover/api"
	"github.com/clover-sched/clover/internal/job"
	springconfig "github.com/clover-sched/clover/spring-like-config"
)

func newJobApplyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "apply -f FILE...",
		Short: "Create or update many jobs at once from files",
		Long: "Create the jobs of the files that the cluster lacks and update those it holds differently, through the\n" +
			"bulk API (POST /api/v1/jobs:batch) in requests of --chunk jobs. Jobs the files do not name are left\n" +
			"alone (clover config apply is the command that also deletes). A FILE is a job file as clover config\n" +
			"reads it (YAML, JSON, TOML or XML, with defaults, templates, profiles and placeholders; checked\n" +
			"entirely before anything is sent), or a JSON list of job definitions as `clover job list -o json`\n" +
			"prints them (their version, times and source are ignored). An update is conditional on the version\n" +
			"read when the command started: a job changed meanwhile is reported, not overwritten. Jobs are\n" +
			"recorded with source api, as clover job add and update record them.",
		Example: "  clover job apply -f jobs.yaml --profile prod\n  clover job list -o json > all.json && clover job apply -f all.json --api other-cluster:7700",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			files, _ := cmd.Flags().GetStringArray("file")
			chunk, _ := cmd.Flags().GetInt("chunk")
			if len(files) == 0 {
				return errors.New("-f FILE: at least one file")
			}
			if chunk < 1 || chunk > apiv1.MaxBatchOps {
				return fmt.Errorf("--chunk %d: must be from 1 to %d", chunk, apiv1.MaxBatchOps)
			}
			specs, err := readJobFiles(cmd.Context(), files, loadOptions(cmd))
			if err != nil {
				return printLoadErrors(cmd.OutOrStdout(), err)
			}
			api, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			// A bulk request of updates on FerretDB takes about 15 ms a job per 1,000 jobs stored.
			api.http.Timeout, _ = cmd.Flags().GetDuration("timeout")
			return applyJobs(cmd.Context(), api, specs, chunk, wantJSON(cmd), cmd.OutOrStdout(), withMessage(cmd, "/api/v1/jobs:batch"))
		},
	}
	cmd.Flags().StringArrayP("file", "f", nil, "job file (repeatable)")
	cmd.Flags().Int("chunk", apiv1.MaxBatchOps, "jobs per bulk request")
	addMessageFlag(cmd)
	cmd.Flags().Duration("timeout", 10*time.Minute, "how long to wait for the answer to one bulk request")
	cmd.Flags().String("profile", "", "profile of the job files to lay over their base (default $CLOVER_PROFILE)")
	return cmd
}

// readJobFiles reads the job definitions of files, sorted by name: a JSON list of definitions, or a job
// file of any format springconfig reads. A job named twice is an error.
func readJobFiles(ctx context.Context, files []string, opts springconfig.Options) ([]job.Spec, error) {
	var (
		specs []job.Spec
		rest  []string // job files for springconfig
		errs  springconfig.Errors
	)
	where := map[string]string{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			errs = append(errs, &springconfig.Error{File: f, Msg: fmt.Sprintf("cannot read: %v", err)})
			continue
		}
		if filepath.Ext(f) != ".json" || !bytes.HasPrefix(bytes.TrimSpace(data), []byte("[")) {
			rest = append(rest, f)
			continue
		}
		var list []job.Spec
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&list); err != nil {
			errs = append(errs, &springconfig.Error{File: f, Msg: fmt.Sprintf("a JSON list of job definitions: %v", err)})
			continue
		}
		for i, spec := range list {
			at := fmt.Sprintf("%s: definition %d", f, i+1)
			if first, dup := where[spec.Name]; dup {
				errs = append(errs, &springconfig.Error{File: f, Job: spec.Name, Msg: "declared twice (first at " + first + ")"})
				continue
			}
			where[spec.Name] = at
			specs = append(specs, definitionOnly(spec))
		}
	}
	if len(rest) > 0 {
		decls, err := springconfig.Load(ctx, rest, opts)
		var loadErrs springconfig.Errors
		switch {
		case errors.As(err, &loadErrs):
			errs = append(errs, loadErrs...)
		case err != nil:
			return nil, err
		}
		for _, d := range decls {
			if first, dup := where[d.Spec.Name]; dup {
				errs = append(errs, &springconfig.Error{Job: d.Spec.Name, Msg: "declared twice (" + first + " and " + d.Origin + ")"})
				continue
			}
			where[d.Spec.Name] = d.Origin
			specs = append(specs, d.Spec)
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	slices.SortFunc(specs, func(a, b job.Spec) int { return strings.Compare(a.Name, b.Name) })
	return specs, nil
}

// definitionOnly drops what the cluster keeps about a job (see springconfig.Equal), but Paused, which a
// creation keeps.
func definitionOnly(spec job.Spec) job.Spec {
	spec.Version, spec.Source, spec.Stats = 0, "", nil
	spec.CreatedAt, spec.UpdatedAt, spec.ActiveSince, spec.PausedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	return spec
}

// applyJobs creates the jobs of specs that the cluster lacks and updates those that differ, chunk
// operations a request, and reports every failure; it fails if any operation did.
func applyJobs(ctx context.Context, api *apiClient, specs []job.Spec, chunk int, asJSON bool, out io.Writer, batchPath string) error {
	var have []job.Spec
	if err := api.do(ctx, "GET", "/api/v1/jobs", nil, &have); err != nil {
		return fmt.Errorf("list jobs: %w", err)
	}
	cur := make(map[string]job.Spec, len(have))
	for _, j := range have {
		cur[j.Name] = j
	}
	var ops []apiv1.BatchOp
	unchanged := 0
	for _, spec := range specs {
		old, exists := cur[spec.Name]
		switch {
		case !exists:
			ops = append(ops, apiv1.BatchOp{Op: apiv1.BatchCreate, Job: &spec})
		case springconfig.Equal(old, spec):
			unchanged++
		default:
			ops = append(ops, apiv1.BatchOp{Op: apiv1.BatchUpdate, Name: spec.Name, Job: &spec, Version: old.Version})
		}
	}
	var (
		results []apiv1.BatchResult
		counts  = map[string]int{}
		failed  int
	)
	for chunkOps := range slices.Chunk(ops, chunk) {
		var resp apiv1.BatchResponse
		if err := api.do(ctx, "POST", batchPath, apiv1.BatchRequest{Ops: chunkOps}, &resp); err != nil {
			return fmt.Errorf("bulk request (%d of the %d operations were answered before it): %w", len(results), len(ops), err)
		}
		for _, r := range resp.Results {
			results = append(results, r)
			if r.Error != "" {
				failed++
				if !asJSON {
					fmt.Fprintf(out, "FAILED %s %s: %s (HTTP %d)\n", r.Op, r.Name, r.Error, r.Status)
				}
				continue
			}
			counts[r.Op]++
		}
	}
	if asJSON {
		if err := printJSON(out, results); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(out, "applied: %d created, %d updated, %d unchanged, %d failed\n", counts[apiv1.BatchCreate], counts[apiv1.BatchUpdate], unchanged, failed)
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d jobs not applied", failed, len(specs))
	}
	return nil
}
