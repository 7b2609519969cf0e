package admin

import (
	"fmt"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/clover-sched/clover/internal/job"
)

// A job is edited field by field: each policy is a form field, read and written by one entry of
// jobFields, and the API validates the whole. The API names the field its error is about ("job x:
// retry.max 99: want 0-10"), so the error is shown at that field, with what was typed kept. The JSON
// definition stays one link away, for what is quicker typed than clicked.

// jobField is one field of the job form: Key is the API's name of the field (its error names it).
type jobField struct {
	Key, Label, Help string
	Kind             string   // text, number, select, textarea, checkbox
	Options          []string // a select's
	NewOnly          bool     // set when the job is created only (its name)
	get              func(s *job.Spec) string
	set              func(s *job.Spec, v string) error
}

// formField is a jobField as the page shows it.
type formField struct {
	jobField
	ID, Value, Error string
}

// jobFields are the form's fields, in the page's order.
var jobFields = []jobField{
	{Key: "name", Label: "Name", Kind: "text", NewOnly: true, Help: "letters, digits, '.', '_' or '-'",
		get: func(s *job.Spec) string { return s.Name }, set: func(s *job.Spec, v string) error { s.Name = strings.TrimSpace(v); return nil }},
	{Key: "schedule", Label: "Schedule", Kind: "text", Help: `cron with seconds ("0 0 2 * * ?"), "@every 10m", "@daily"`,
		get: func(s *job.Spec) string { return s.Schedule }, set: func(s *job.Spec, v string) error { s.Schedule = strings.TrimSpace(v); return nil }},
	{Key: "time_zone", Label: "Time zone", Kind: "text", Help: "an IANA name (Europe/Paris); empty: UTC",
		get: func(s *job.Spec) string { return s.TimeZone }, set: func(s *job.Spec, v string) error { s.TimeZone = strings.TrimSpace(v); return nil }},
	{Key: "handler", Label: "Handler", Kind: "text", Help: `"shell", or the name of a Go handler a client serves`,
		get: func(s *job.Spec) string { return s.Handler }, set: func(s *job.Spec, v string) error { s.Handler = strings.TrimSpace(v); return nil }},
	{Key: "params.command", Label: "Command", Kind: "textarea", Help: "the shell handler's command (/bin/sh -c)",
		get: func(s *job.Spec) string { return s.Params["command"] },
		set: func(s *job.Spec, v string) error { setParam(s, "command", v); return nil }},
	{Key: "params", Label: "Parameters", Kind: "textarea", Help: "name=value, one a line (CLOVER_PARAM_NAME for a command)",
		get: func(s *job.Spec) string { return pairs(s.Params, "command") },
		set: func(s *job.Spec, v string) error {
			m, err := parsePairs(v)
			for k, val := range m {
				setParam(s, k, val)
			}
			return err
		}},
	{Key: "overridable", Label: "Overridable parameters", Kind: "text", Help: "comma-separated: the parameters a trigger may change",
		get: func(s *job.Spec) string { return strings.Join(s.Overridable, ", ") }, set: func(s *job.Spec, v string) error { s.Overridable = list(v); return nil }},
	{Key: "timeout", Label: "Timeout", Kind: "text", Help: `a run is stopped after this ("30m"); empty: none`,
		get: func(s *job.Spec) string { return durationText(s.Timeout) }, set: func(s *job.Spec, v string) error { return parseDuration(v, &s.Timeout) }},
	{Key: "overlap", Label: "Overlap", Kind: "select", Options: []string{job.OverlapForbid, job.OverlapAllow, job.OverlapReplace, job.OverlapQueue},
		Help: "when a firing comes while the last one runs",
		get:  func(s *job.Spec) string { return s.Overlap }, set: func(s *job.Spec, v string) error { s.Overlap = v; return nil }},
	{Key: "misfire.policy", Label: "Misfire", Kind: "select", Options: []string{job.MisfireFireOnce, job.MisfireSkip, job.MisfireFireAll},
		Help: "what runs for times missed (the cluster down, the job paused)",
		get:  func(s *job.Spec) string { return s.Misfire.Policy }, set: func(s *job.Spec, v string) error { s.Misfire.Policy = v; return nil }},
	{Key: "misfire.limit", Label: "Misfire limit", Kind: "number", Help: "fire-all: at most this many catch-up runs (0: 100)",
		get: func(s *job.Spec) string { return intText(s.Misfire.Limit) }, set: func(s *job.Spec, v string) error { return parseInt(v, &s.Misfire.Limit) }},
	{Key: "retry.max", Label: "Retries", Kind: "number", Help: "runs again after a failure, at most this many times",
		get: func(s *job.Spec) string { return intText(s.Retry.Max) }, set: func(s *job.Spec, v string) error { return parseInt(v, &s.Retry.Max) }},
	{Key: "retry.backoff", Label: "Retry backoff", Kind: "select", Options: []string{job.BackoffFixed, job.BackoffExponential},
		get: func(s *job.Spec) string { return s.Retry.Backoff }, set: func(s *job.Spec, v string) error { s.Retry.Backoff = v; return nil }},
	{Key: "retry.delay", Label: "Retry delay", Kind: "text", Help: `before the first retry (empty: 10s)`,
		get: func(s *job.Spec) string { return durationText(s.Retry.Delay) }, set: func(s *job.Spec, v string) error { return parseDuration(v, &s.Retry.Delay) }},
	{Key: "retry.max_delay", Label: "Longest retry delay", Kind: "text", Help: "exponential backoff's cap (empty: 10m)",
		get: func(s *job.Spec) string { return durationText(s.Retry.MaxDelay) }, set: func(s *job.Spec, v string) error { return parseDuration(v, &s.Retry.MaxDelay) }},
	{Key: "retry.jitter", Label: "Retry jitter", Kind: "text", Help: "0-1: the delay varies by up to this fraction",
		get: func(s *job.Spec) string { return floatText(s.Retry.Jitter) }, set: func(s *job.Spec, v string) error { return parseFloat(v, &s.Retry.Jitter) }},
	{Key: "routing.strategy", Label: "Routing", Kind: "select",
		Options: []string{job.RouteRoundRobin, job.RouteRandom, job.RouteFirst, job.RouteConsistentHash, job.RouteLeastBusy, job.RouteFailover, job.RouteShardBroadcast},
		Help:    "which client runs an execution",
		get:     func(s *job.Spec) string { return s.Routing.Strategy }, set: func(s *job.Spec, v string) error { s.Routing.Strategy = v; return nil }},
	{Key: "routing.clients", Label: "Pinned to clients", Kind: "text", Help: "comma-separated client ids (failover: in order of preference); empty: any",
		get: func(s *job.Spec) string { return strings.Join(s.Routing.Clients, ", ") }, set: func(s *job.Spec, v string) error { s.Routing.Clients = list(v); return nil }},
	{Key: "routing.labels", Label: "Client labels", Kind: "textarea", Help: "name=value, one a line: a client must carry them all",
		get: func(s *job.Spec) string { return pairs(s.Routing.Labels, "") },
		set: func(s *job.Spec, v string) error {
			m, err := parsePairs(v)
			s.Routing.Labels = m
			return err
		}},
	{Key: "routing.hash_key", Label: "Hash key", Kind: "text", Help: "consistent-hash: the parameter whose value is the key (empty: the job's name)",
		get: func(s *job.Spec) string { return s.Routing.HashKey }, set: func(s *job.Spec, v string) error { s.Routing.HashKey = strings.TrimSpace(v); return nil }},
	{Key: "routing.width", Label: "Width", Kind: "number", Help: "how much of a client's resource width one run takes",
		get: func(s *job.Spec) string { return intText(s.Routing.Width) }, set: func(s *job.Spec, v string) error { return parseInt(v, &s.Routing.Width) }},
	{Key: "routing.shards", Label: "Shards", Kind: "number", Help: "sharding-broadcast: executions a firing makes",
		get: func(s *job.Spec) string { return intText(s.Routing.Shards) }, set: func(s *job.Spec, v string) error { return parseInt(v, &s.Routing.Shards) }},
	{Key: "routing.shard_items", Label: "Shard names", Kind: "text", Help: "comma-separated, one a shard",
		get: func(s *job.Spec) string { return strings.Join(s.Routing.ShardItems, ", ") }, set: func(s *job.Spec, v string) error { s.Routing.ShardItems = list(v); return nil }},
	{Key: "overdue.after", Label: "Overdue after", Kind: "text", Help: "alarm when a run lasts longer than this",
		get: func(s *job.Spec) string { return durationText(s.Overdue.After) }, set: func(s *job.Spec, v string) error { return parseDuration(v, &s.Overdue.After) }},
	{Key: "overdue.ratio", Label: "Overdue ratio", Kind: "text", Help: "…or this many times its recent average",
		get: func(s *job.Spec) string { return floatText(s.Overdue.Ratio) }, set: func(s *job.Spec, v string) error { return parseFloat(v, &s.Overdue.Ratio) }},
	{Key: "contacts", Label: "Contacts", Kind: "text", Help: "comma-separated contact names, told when a run fails",
		get: func(s *job.Spec) string { return strings.Join(s.Contacts, ", ") }, set: func(s *job.Spec, v string) error { s.Contacts = list(v); return nil }},
	{Key: "mode", Label: "Mode", Kind: "select", Options: []string{string(job.ModeRemote), string(job.ModeLocal)}, Help: "local: the declaring client fires it itself",
		get: func(s *job.Spec) string { return string(s.Mode) }, set: func(s *job.Spec, v string) error { s.Mode = job.Mode(v); return nil }},
	{Key: "rerunnable", Label: "Rerunnable", Kind: "checkbox", Help: "idempotent: a run whose client died may run again elsewhere",
		get: func(s *job.Spec) string { return checked(s.Rerunnable) }, set: func(s *job.Spec, v string) error { s.Rerunnable = v == "on"; return nil }},
	{Key: "paused", Label: "Paused", Kind: "checkbox",
		get: func(s *job.Spec) string { return checked(s.Paused) }, set: func(s *job.Spec, v string) error { s.Paused = v == "on"; return nil }},
}

// formFields are the fields showing spec (create: with the name field).
func formFields(spec *job.Spec, create bool) []formField {
	var out []formField
	for _, f := range jobFields {
		if f.NewOnly && !create {
			continue
		}
		out = append(out, formField{jobField: f, ID: "f-" + strings.ReplaceAll(f.Key, ".", "-"), Value: f.get(spec)})
	}
	return out
}

// specFromForm sets each field of spec from the form, keeping what the form showed (fields) with the
// errors of values that do not parse; ok is false when there is one.
func specFromForm(spec *job.Spec, form url.Values, create bool) (fields []formField, ok bool) {
	spec.Params = nil // the form holds every parameter: one taken out of it goes
	ok = true
	fields = formFields(spec, create)
	for i := range fields {
		f := &fields[i]
		f.Value = form.Get(f.Key)
		if err := f.set(spec, f.Value); err != nil {
			f.Error, ok = err.Error(), false
		}
	}
	return fields, ok
}

var fieldOfErrorRE = regexp.MustCompile(`^job [^:]*: ([a-z_]+(?:\.[a-z_]+)?)`)

// fieldOfError is the form field an API error names ("job x: retry.max 111: want 0-100" names
// retry.max), or "" when it names none of them.
func fieldOfError(msg string) string {
	if strings.HasPrefix(msg, "job name ") {
		return "name"
	}
	m := fieldOfErrorRE.FindStringSubmatch(msg)
	if m == nil {
		return ""
	}
	for _, f := range jobFields {
		if f.Key == m[1] {
			return f.Key
		}
	}
	if strings.HasPrefix(m[1], "params.") {
		return "params"
	}
	return ""
}

func setParam(s *job.Spec, k, v string) {
	if v == "" {
		return
	}
	if s.Params == nil {
		s.Params = map[string]string{}
	}
	s.Params[k] = v
}

// pairs writes m as name=value lines, sorted, without skip.
func pairs(m map[string]string, skip string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if k != skip {
			fmt.Fprintf(&b, "%s=%s\n", k, m[k])
		}
	}
	return b.String()
}

func parsePairs(v string) (map[string]string, error) {
	var m map[string]string
	for i, line := range strings.Split(strings.ReplaceAll(v, "\r\n", "\n"), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		k, val, ok := strings.Cut(line, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return m, fmt.Errorf("line %d: %q is not name=value", i+1, line)
		}
		if m == nil {
			m = map[string]string{}
		}
		m[strings.TrimSpace(k)] = val
	}
	return m, nil
}

func list(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func intText(n int) string {
	if n == 0 {
		return ""
	}
	return strconv.Itoa(n)
}

func parseInt(v string, n *int) error {
	if v = strings.TrimSpace(v); v == "" {
		*n = 0
		return nil
	}
	x, err := strconv.Atoi(v)
	if err != nil {
		return fmt.Errorf("%q is not a whole number", v)
	}
	*n = x
	return nil
}

func floatText(f float64) string {
	if f == 0 {
		return ""
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

func parseFloat(v string, f *float64) error {
	if v = strings.TrimSpace(v); v == "" {
		*f = 0
		return nil
	}
	x, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return fmt.Errorf("%q is not a number", v)
	}
	*f = x
	return nil
}

func durationText(d job.Duration) string {
	if d == 0 {
		return ""
	}
	return time.Duration(d).String()
}

func parseDuration(v string, d *job.Duration) error {
	if v = strings.TrimSpace(v); v == "" {
		*d = 0
		return nil
	}
	x, err := time.ParseDuration(v)
	if err != nil {
		return fmt.Errorf("%q is not a duration (30s, 5m, 1h30m)", v)
	}
	*d = job.Duration(x)
	return nil
}

func checked(b bool) string {
	if b {
		return "on"
	}
	return ""
}
