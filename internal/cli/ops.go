package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	apiv1 "github.com/clover-sched/clover/api"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/registry"
	"github.com/clover-sched/clover/internal/schedule"
)

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func wantJSON(cmd *cobra.Command) bool {
	o, _ := cmd.Flags().GetString("output")
	return o == "json"
}

func table(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }

func newClusterCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "cluster", Short: "Inspect the cluster"}
	addAPIFlags(cmd)
	cmd.AddCommand(&cobra.Command{
		Use:   "status",
		Short: "Show the leader, its epoch, the servers and the clients",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			var st apiv1.ClusterStatus
			if err := api.do(cmd.Context(), "GET", "/api/v1/cluster", nil, &st); err != nil {
				return err
			}
			if wantJSON(cmd) {
				return printJSON(cmd.OutOrStdout(), st)
			}
			w := table(cmd.OutOrStdout())
			if st.Leader != nil {
				fmt.Fprintf(w, "leader:\t%s (epoch %d, api %s)\n", st.Leader.ID, st.Leader.Epoch, st.Leader.APIAddr)
			} else {
				fmt.Fprintf(w, "leader:\tnone\n")
			}
			fmt.Fprintln(w, "\nKIND\tID\tENDPOINT\tAPI\tJOBS\tHANDLERS\tSINCE")
			for _, m := range st.Servers {
				fmt.Fprintf(w, "server\t%s\t%s\t%s\t\t\t%s\n", m.ID, m.Endpoint, m.APIAddr, m.StartedAt.Format(time.RFC3339))
			}
			for _, m := range st.Clients {
				jobs, handlers := clientColumns(m)
				fmt.Fprintf(w, "client\t%s\t%s\t\t%s\t%s\t%s\n", m.ID, m.Endpoint, jobs, handlers, m.StartedAt.Format(time.RFC3339))
			}
			return w.Flush()
		},
	})
	return cmd
}

func newJobCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "job", Short: "Manage jobs: list, get, add, update, delete, apply, trigger, pause, resume, next; history, show, diff, rollback, tag, restore"}
	addAPIFlags(cmd)

	cmd.AddCommand(&cobra.Command{
		Use: "list", Short: "List jobs", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			var jobs []job.Spec
			if err := api.do(cmd.Context(), "GET", "/api/v1/jobs", nil, &jobs); err != nil {
				return err
			}
			if wantJSON(cmd) {
				return printJSON(cmd.OutOrStdout(), jobs)
			}
			w := table(cmd.OutOrStdout())
			fmt.Fprintln(w, "NAME\tSCHEDULE\tZONE\tHANDLER\tPAUSED\tSOURCE\tVERSION")
			for _, j := range jobs {
				zone := j.TimeZone
				if zone == "" {
					zone = "UTC"
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%v\t%s\t%d\n", j.Name, j.Schedule, zone, j.Handler, j.Paused, j.Source, j.Version)
			}
			return w.Flush()
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use: "get NAME", Short: "Show one job", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			var spec job.Spec
			if err := api.do(cmd.Context(), "GET", "/api/v1/jobs/"+url.PathEscape(args[0]), nil, &spec); err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), spec)
		},
	})

	add := &cobra.Command{
		Use:   "add NAME",
		Short: "Create a job",
		Example: `  clover job add backup --schedule "0 0 2 * * ?" --command "/usr/local/bin/backup.sh" --timeout 1h
  clover job add report --schedule "@every 30s" --handler report --param region=emea
  clover job add settle --file settle.json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec, err := specFromFlags(cmd, args, job.Spec{})
			if err != nil {
				return err
			}
			// Checked here first, in the server's words: a mistake needs no server to be told.
			if err := schedule.ValidateSpec(spec); err != nil {
				return err
			}
			api, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			var out job.Spec
			if err := api.do(cmd.Context(), "POST", withMessage(cmd, "/api/v1/jobs"), spec, &out); err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), out)
		},
	}
	addSpecFlags(add)
	addMessageFlag(add)
	cmd.AddCommand(add)

	update := &cobra.Command{
		Use:   "update NAME",
		Short: "Change a job: only the flags given change",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			// What the flags say is checked before the API is asked for the rest.
			if err := checkScheduleFlags(cmd, args[0]); err != nil {
				return err
			}
			api, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			var cur job.Spec
			if err := api.do(cmd.Context(), "GET", "/api/v1/jobs/"+url.PathEscape(args[0]), nil, &cur); err != nil {
				return err
			}
			spec, err := specFromFlags(cmd, args, cur)
			if err != nil {
				return err
			}
			if err := schedule.ValidateSpec(spec); err != nil {
				return err
			}
			var out job.Spec
			if err := api.do(cmd.Context(), "PUT", withMessage(cmd, "/api/v1/jobs/"+url.PathEscape(args[0])), spec, &out); err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), out)
		},
	}
	addSpecFlags(update)
	addMessageFlag(update)
	cmd.AddCommand(update)

	del := &cobra.Command{
		Use: "delete NAME", Short: "Delete a job (restore brings it back)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			if err := api.do(cmd.Context(), "DELETE", withMessage(cmd, "/api/v1/jobs/"+url.PathEscape(args[0])), nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted %s\n", args[0])
			return nil
		},
	}
	addMessageFlag(del)
	cmd.AddCommand(del)

	trigger := &cobra.Command{
		Use: "trigger NAME", Short: "Run a job now, outside its schedule", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			params, err := paramsFlag(cmd)
			if err != nil {
				return err
			}
			api, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			var out apiv1.TriggerResponse
			body := map[string]any{}
			if params != nil {
				body["params"] = params
			}
			if err := api.do(cmd.Context(), "POST", "/api/v1/jobs/"+url.PathEscape(args[0])+"/trigger", body, &out); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), out.Execution)
			return nil
		},
	}
	trigger.Flags().StringArray("param", nil, "parameter NAME=VALUE for this run (repeatable); adds to the job's, changes only those it lists as overridable")
	cmd.AddCommand(trigger)

	for _, verb := range []string{"pause", "resume"} {
		c := &cobra.Command{
			Use: verb + " NAME", Short: strings.ToUpper(verb[:1]) + verb[1:] + " a job", Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				api, err := newAPIClient(cmd)
				if err != nil {
					return err
				}
				var out job.Spec
				if err := api.do(cmd.Context(), "POST", withMessage(cmd, "/api/v1/jobs/"+url.PathEscape(args[0])+"/"+verb), nil, &out); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: paused=%v (version %d)\n", out.Name, out.Paused, out.Version)
				return nil
			},
		}
		addMessageFlag(c)
		cmd.AddCommand(c)
	}

	next := &cobra.Command{
		Use: "next NAME", Short: "Preview a job's next fire times", Args: cobra.ExactArgs(1),
		Long: "Preview a job's next fire times, in the job's time zone with their UTC offset and in UTC.\n" +
			"A line whose UTC offset differs from the line before is marked, so a daylight saving time change shows.",
		Example: "  clover job next backup -n 10\n  clover job next backup -o json",
		RunE: func(cmd *cobra.Command, args []string) error {
			n, _ := cmd.Flags().GetInt("n")
			api, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			var raw json.RawMessage
			if err := api.do(cmd.Context(), "GET", fmt.Sprintf("/api/v1/jobs/%s/next?n=%d", url.PathEscape(args[0]), n), nil, &raw); err != nil {
				return err
			}
			if wantJSON(cmd) {
				return printJSON(cmd.OutOrStdout(), raw)
			}
			// The times come in the job's zone, each with the server's UTC offset for it.
			var out struct {
				TimeZone string      `json:"time_zone"`
				Next     []time.Time `json:"next"`
			}
			if err := json.Unmarshal(raw, &out); err != nil {
				return fmt.Errorf("decode next fire times of %s: %w", args[0], err)
			}
			if len(out.Next) == 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "%s: no fire times left\n", args[0])
				return nil
			}
			return writeNextTimes(cmd.OutOrStdout(), out.TimeZone, out.Next)
		},
	}
	next.Flags().IntP("n", "n", 10, "how many")
	cmd.AddCommand(next)
	cmd.AddCommand(newJobApplyCmd())
	cmd.AddCommand(newJobHistoryCmds()...)
	return cmd
}

// writeNextTimes prints fire times in zone with their UTC offset, then in UTC, and marks a line whose
// offset differs from the line before. The offset is the one each time came with (the server's); the
// zone abbreviation is added when this machine knows the zone and agrees on the offset.
func writeNextTimes(out io.Writer, zone string, times []time.Time) error {
	if zone == "" {
		zone = "UTC"
	}
	loc, _ := time.LoadLocation(zone) // nil if this machine does not know the zone
	w := table(out)
	fmt.Fprintf(w, "TIME (%s)\tUTC OFFSET\tUTC\n", zone)
	var prev string
	for i, t := range times {
		_, off := t.Zone()
		local := t.Format("2006-01-02 15:04:05")
		if loc != nil {
			if abbr, o := t.In(loc).Zone(); o == off {
				local += " " + abbr
			}
		}
		offset, mark := t.Format("-07:00"), ""
		if i > 0 && offset != prev {
			mark = "  <- UTC offset changes: " + prev + " -> " + offset
		}
		fmt.Fprintf(w, "%s\t%s\t%s%s\n", local, offset, t.UTC().Format(time.RFC3339), mark)
		prev = offset
	}
	return w.Flush()
}

func addSpecFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.String("file", "", "read the job definition from a JSON file (- for stdin); flags override it")
	f.String("schedule", "", `schedule: Quartz cron with seconds ("0 */5 * * * ?"), "@every 10s", "@daily", ...`)
	f.String("tz", "", "IANA time zone of the schedule (default UTC)")
	f.String("handler", "", "handler: shell, or a Go handler name a client serves")
	f.String("command", "", "shell command (sets handler=shell and params.command)")
	f.StringArray("param", nil, "parameter NAME=VALUE (repeatable)")
	f.StringSlice("overridable", nil, "params a trigger may change (never command)")
	f.Duration("timeout", 0, "time limit of one run (0: none)")
	f.StringSlice("contact", nil, "owner contacts")
	f.Bool("paused", false, "create or leave the job paused")
	f.String("overlap", "", "overlap policy: forbid (default), allow, replace, queue")
	f.String("misfire", "", "misfire policy: fire-once (default), skip, fire-all")
	f.Int("retries", 0, "retries after a failed run")
	f.Duration("retry-delay", 0, "wait before a retry (default 10s); doubles with --retry-backoff exponential")
	f.String("retry-backoff", "", "retry backoff: fixed (default) or exponential")
	f.Bool("rerunnable", false, "the job is idempotent: a run whose client died may run again elsewhere")
	f.String("strategy", "", "routing: round-robin (default), random, first, consistent-hash, least-busy, failover, sharding-broadcast")
	f.StringArray("label", nil, "client label NAME=VALUE the job requires (repeatable)")
	f.StringSlice("pin", nil, "run only on these client ids (in order of preference for failover)")
	f.Int("shards", 0, "sharding-broadcast: executions per firing")
	f.String("mode", "", "remote (default: the leader fires it) or local (its client fires it)")
}

// applyPolicyFlags sets the policy fields whose flags were given.
func applyPolicyFlags(f *pflag.FlagSet, spec *job.Spec) error {
	str := func(name string, dst *string) {
		if f.Changed(name) {
			*dst, _ = f.GetString(name)
		}
	}
	str("overlap", &spec.Overlap)
	str("misfire", &spec.Misfire.Policy)
	str("retry-backoff", &spec.Retry.Backoff)
	str("strategy", &spec.Routing.Strategy)
	if f.Changed("mode") {
		m, _ := f.GetString("mode")
		spec.Mode = job.Mode(m)
	}
	if f.Changed("retries") {
		spec.Retry.Max, _ = f.GetInt("retries")
	}
	if f.Changed("retry-delay") {
		d, _ := f.GetDuration("retry-delay")
		spec.Retry.Delay = job.Duration(d)
	}
	if f.Changed("rerunnable") {
		spec.Rerunnable, _ = f.GetBool("rerunnable")
	}
	if f.Changed("overridable") {
		spec.Overridable, _ = f.GetStringSlice("overridable")
	}
	if f.Changed("pin") {
		spec.Routing.Clients, _ = f.GetStringSlice("pin")
	}
	if f.Changed("shards") {
		spec.Routing.Shards, _ = f.GetInt("shards")
	}
	if f.Changed("label") {
		kvs, _ := f.GetStringArray("label")
		spec.Routing.Labels = map[string]string{}
		for _, kv := range kvs {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				return fmt.Errorf("--label %q: want NAME=VALUE", kv)
			}
			spec.Routing.Labels[k] = v
		}
	}
	return nil
}

func paramsFlag(cmd *cobra.Command) (map[string]string, error) {
	kvs, _ := cmd.Flags().GetStringArray("param")
	if len(kvs) == 0 {
		return nil, nil
	}
	out := map[string]string{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--param %q: want NAME=VALUE", kv)
		}
		out[k] = v
	}
	return out, nil
}

// specFromFlags starts from base (or --file) and applies the flags that were set.
// checkScheduleFlags checks the --schedule and --tz an update gives, before the job is read.
func checkScheduleFlags(cmd *cobra.Command, name string) error {
	f := cmd.Flags()
	sched, _ := f.GetString("schedule")
	tz, _ := f.GetString("tz")
	if f.Changed("tz") && tz != "" {
		if _, err := time.LoadLocation(tz); err != nil {
			return fmt.Errorf("job %s: time_zone %q: %w", name, tz, err)
		}
	}
	if f.Changed("schedule") {
		if _, err := schedule.Parse(sched, tz); err != nil {
			return fmt.Errorf("job %s: %w", name, err)
		}
	}
	return nil
}

func specFromFlags(cmd *cobra.Command, args []string, base job.Spec) (job.Spec, error) {
	spec := base
	f := cmd.Flags()
	if file, _ := f.GetString("file"); file != "" {
		var data []byte
		var err error
		if file == "-" {
			data, err = io.ReadAll(cmd.InOrStdin())
		} else {
			data, err = os.ReadFile(file)
		}
		if err != nil {
			return spec, fmt.Errorf("--file: %w", err)
		}
		dec := json.NewDecoder(strings.NewReader(string(data)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&spec); err != nil {
			return spec, fmt.Errorf("--file %s: %w", file, err)
		}
	}
	if len(args) == 1 {
		spec.Name = args[0]
	}
	if spec.Name == "" {
		return spec, fmt.Errorf("a job name is required (argument or \"name\" in --file)")
	}
	if f.Changed("schedule") {
		spec.Schedule, _ = f.GetString("schedule")
	}
	if f.Changed("tz") {
		spec.TimeZone, _ = f.GetString("tz")
	}
	if f.Changed("handler") {
		spec.Handler, _ = f.GetString("handler")
	}
	params, err := paramsFlag(cmd)
	if err != nil {
		return spec, err
	}
	if params != nil {
		if spec.Params == nil {
			spec.Params = map[string]string{}
		}
		for k, v := range params {
			spec.Params[k] = v
		}
	}
	if f.Changed("command") {
		c, _ := f.GetString("command")
		if spec.Params == nil {
			spec.Params = map[string]string{}
		}
		spec.Params["command"] = c
		if !f.Changed("handler") {
			spec.Handler = job.HandlerShell
		}
	}
	if f.Changed("timeout") {
		d, _ := f.GetDuration("timeout")
		spec.Timeout = job.Duration(d)
	}
	if f.Changed("contact") {
		spec.Contacts, _ = f.GetStringSlice("contact")
	}
	if f.Changed("paused") {
		spec.Paused, _ = f.GetBool("paused")
	}
	if err := applyPolicyFlags(f, &spec); err != nil {
		return spec, err
	}
	// Bookkeeping fields are the server's; sending them back would only cause conflicts.
	spec.Source, spec.CreatedAt, spec.UpdatedAt, spec.ActiveSince, spec.PausedAt = "", time.Time{}, time.Time{}, time.Time{}, time.Time{}
	spec.Stats = nil
	return spec, nil
}

func orDash(v any) any {
	if v == nil || v == "" {
		return "-"
	}
	return v
}

// clientColumns is what `cluster status` shows of a client: the jobs it declares and the handlers it
// offers, each sorted and once. A Go handler named like a job it declares is that job's own: listed once,
// as the job.
func clientColumns(m registry.Member) (jobs, handlers string) {
	js := slices.Compact(slices.Sorted(slices.Values(m.Jobs)))
	hs := slices.DeleteFunc(slices.Compact(slices.Sorted(slices.Values(m.Handlers))), func(h string) bool {
		_, found := slices.BinarySearch(js, h)
		return found
	})
	return shortList(js), shortList(hs)
}

// shortList joins names for a table cell: the first few, then how many more (`--json` lists them all).
func shortList(names []string) string {
	const shown = 5
	if len(names) == 0 {
		return "-"
	}
	if len(names) <= shown {
		return strings.Join(names, ",")
	}
	return fmt.Sprintf("%s (+%d)", strings.Join(names[:shown], ","), len(names)-shown)
}
