package springconfig

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/clover-sched/clover/internal/job"
)

// noEnv is an environment with nothing set, so that the machine's variables cannot change a test.
func noEnv(string) (string, bool) { return "", false }

func env(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
}

// job0 is a valid job in YAML, to which a test appends keys.
const job0 = "jobs:\n  - name: settle\n    schedule: \"@daily\"\n    handler: settle\n"

func TestValidationErrors(t *testing.T) {
	tests := map[string]struct {
		// spec
		file, src string
		profile   string
		// expectations
		want []string
	}{
		"unknown key with suggestion": {
			file: "jobs.yaml", src: job0 + "    retry:\n      jiter: 0.5\n",
			want: []string{"jobs.yaml:6: job settle: key retry.jiter: unknown key (did you mean retry.jitter?)"},
		},
		"unknown key without suggestion": {
			file: "jobs.yaml", src: job0 + "    colour: blue\n",
			want: []string{"jobs.yaml:5: job settle: key colour: unknown key"},
		},
		"unknown top-level key": {
			file: "jobs.yaml", src: "job:\n  - name: a\n",
			want: []string{"jobs.yaml:1: key job: unknown key (did you mean jobs?)"},
		},
		"unknown key in defaults": {
			file: "jobs.yaml", src: "defaults:\n  timeuot: 5m\n" + job0,
			want: []string{"jobs.yaml:2: defaults: key timeuot: unknown key (did you mean timeout?)"},
		},
		"unknown key in an unchosen profile": {
			file: "jobs.yaml", src: job0 + "profiles:\n  prod:\n    jobs:\n      - name: settle\n        overlp: allow\n",
			want: []string{"jobs.yaml:9: job settle: key overlp: unknown key (did you mean overlap?)"},
		},
		"name in defaults": {
			file: "jobs.yaml", src: "defaults:\n  name: x\n" + job0,
			want: []string{"jobs.yaml:2: defaults: key name: not allowed in defaults"},
		},
		"bad cron": {
			file: "jobs.yaml", src: "jobs:\n  - name: settle\n    schedule: \"0 0 25 * * ?\"\n    handler: settle\n",
			want: []string{`jobs.yaml:3: job settle: key schedule: schedule "0 0 25 * * ?": field 3 (hour): value 25 out of range 0-23`},
		},
		"missing handler": {
			file: "jobs.yaml", src: "jobs:\n  - name: settle\n    schedule: \"@daily\"\n",
			want: []string{"jobs.yaml:2: job settle: key handler: is required"},
		},
		"shell without command": {
			file: "jobs.yaml", src: "jobs:\n  - name: settle\n    schedule: \"@daily\"\n    handler: shell\n",
			want: []string{`jobs.yaml:4: job settle: key handler: "shell" needs params.command`},
		},
		"missing name": {
			file: "jobs.yaml", src: "jobs:\n  - schedule: \"@daily\"\n    handler: x\n",
			want: []string{"jobs.yaml:2: jobs[0]: key name: is required"},
		},
		"bad name": {
			file: "jobs.yaml", src: "jobs:\n  - name: bad name\n    schedule: \"@daily\"\n    handler: x\n",
			want: []string{`jobs.yaml:2: job bad name: key name: "bad name": must be 1-128 characters of letters, digits, '.', '_' or '-', starting with a letter or digit`},
		},
		"duplicate name in a file": {
			file: "jobs.yaml", src: job0 + "  - name: settle\n    schedule: \"@hourly\"\n    handler: settle\n",
			want: []string{"jobs.yaml:5: job settle: declared twice (first at jobs.yaml:2)"},
		},
		"negative timeout": {
			file: "jobs.yaml", src: job0 + "    timeout: -5s\n",
			want: []string{"jobs.yaml:5: job settle: key timeout: -5s is negative"},
		},
		"retry out of range, all reported": {
			file: "jobs.yaml", src: job0 + "    retry:\n      max: -1\n      delay: -1s\n      jitter: 1.5\n      backoff: linear\n",
			want: []string{
				"jobs.yaml:6: job settle: key retry.max: -1: want 0-100",
				"jobs.yaml:7: job settle: key retry.delay: retry.delay and retry.max_delay must not be negative",
				"jobs.yaml:8: job settle: key retry.jitter: 1.5: want 0-1",
				`jobs.yaml:9: job settle: key retry.backoff: "linear": want fixed or exponential`,
			},
		},
		"misfire out of range": {
			file: "jobs.yaml", src: job0 + "    misfire:\n      policy: sometimes\n      limit: 5000\n",
			want: []string{
				`jobs.yaml:6: job settle: key misfire.policy: "sometimes": want fire-once, skip or fire-all`,
				"jobs.yaml:7: job settle: key misfire.limit: 5000: want 0-1000",
			},
		},
		"routing out of range": {
			file: "jobs.yaml", src: job0 + "    routing:\n      strategy: nearest\n      width: -1\n      clients: [a, a]\n      shards: 2000\n",
			want: []string{
				`jobs.yaml:6: job settle: key routing.strategy: "nearest": want one of round-robin, random, first, consistent-hash, least-busy, failover, sharding-broadcast`,
				"jobs.yaml:7: job settle: key routing.width: -1 is negative",
				`jobs.yaml:8: job settle: key routing.clients: routing.clients[1] "a" is empty or repeated`,
				"jobs.yaml:9: job settle: key routing.shards: 2000: want 0-1000",
			},
		},
		"shards without sharding": {
			file: "jobs.yaml", src: job0 + "    routing:\n      shards: 2\n",
			want: []string{"jobs.yaml:6: job settle: key routing.shards: needs routing.strategy sharding-broadcast"},
		},
		"local and sharded": {
			file: "jobs.yaml", src: job0 + "    mode: local\n    routing: {strategy: sharding-broadcast, shards: 2}\n",
			want: []string{"jobs.yaml:2: job settle: a local job cannot be sharded"},
		},
		"overdue negative": {
			file: "jobs.yaml", src: job0 + "    overdue:\n      ratio: -2\n",
			want: []string{"jobs.yaml:5: job settle: key overdue.after: overdue.after and overdue.ratio must not be negative"},
		},
		"mode and overlap": {
			file: "jobs.yaml", src: job0 + "    overlap: sometimes\n    mode: far\n",
			want: []string{
				`jobs.yaml:5: job settle: key overlap: "sometimes": want forbid, allow, replace or queue`,
				`jobs.yaml:6: job settle: key mode: "far": want "remote" or "local"`,
			},
		},
		"unknown time zone": {
			file: "jobs.yaml", src: job0 + "    time_zone: Mars/Base\n",
			want: []string{`jobs.yaml:5: job settle: key time_zone: "Mars/Base": unknown time zone Mars/Base`},
		},
		"not a number": {
			file: "jobs.yaml", src: job0 + "    retry: {max: three, jitter: half}\n",
			want: []string{
				`jobs.yaml:5: job settle: key retry.max: want a whole number, got "three"`,
				`jobs.yaml:5: job settle: key retry.jitter: want a number, got "half"`,
			},
		},
		"not a duration": {
			file: "jobs.yaml", src: job0 + "    timeout: soon\n",
			want: []string{`jobs.yaml:5: job settle: key timeout: want a duration like 90s or 1h30m, got "soon"`},
		},
		"not a bool": {
			file: "jobs.yaml", src: job0 + "    rerunnable: maybe\n",
			want: []string{`jobs.yaml:5: job settle: key rerunnable: want true or false, got "maybe"`},
		},
		"group where a mapping is wanted": {
			file: "jobs.yaml", src: job0 + "    retry: 3\n",
			want: []string{"jobs.yaml:5: job settle: key retry: want a mapping of keys"},
		},
		"mapping where a value is wanted": {
			file: "jobs.yaml", src: job0 + "    timeout: {minutes: 5}\n",
			want: []string{"jobs.yaml:5: job settle: key timeout: want a single value, got a mapping"},
		},
		"group differs from params.group": {
			file: "jobs.yaml", src: job0 + "    group: finance\n    params: {group: ops}\n",
			want: []string{`jobs.yaml:5: job settle: key group: "finance" differs from params.group "ops"`},
		},
		"unresolved placeholder": {
			file: "jobs.yaml", src: job0 + "    params:\n      region: ${REGION}\n",
			want: []string{"jobs.yaml:6: job settle: key params.region: placeholder ${REGION} is not set: not in the environment, properties or the file, and has no default"},
		},
		"unclosed placeholder": {
			file: "jobs.yaml", src: job0 + "    params:\n      region: ${REGION\n",
			want: []string{`jobs.yaml:6: job settle: key params.region: placeholder "${REGION" has no closing }`},
		},
		"placeholder loop": {
			file: "jobs.yaml", src: "properties:\n  a: ${b}\n  b: ${a}\n" + job0 + "    params: {x: \"${a}\"}\n",
			want: []string{
				"jobs.yaml:2: properties: key a: placeholders loop through ${b}",
				"jobs.yaml:3: properties: key b: placeholders loop through ${b}",
				"jobs.yaml:8: job settle: key params.x: placeholders loop through ${b}",
			},
		},
		"unknown parent": {
			file: "jobs.yaml", src: "templates:\n  nightly: {}\njobs:\n  - name: settle\n    parent: nighty\n    schedule: \"@daily\"\n    handler: x\n",
			want: []string{`jobs.yaml:5: job settle: key parent: no template or job "nighty" in this file (did you mean nightly?)`},
		},
		"parent loop": {
			file: "jobs.yaml", src: "templates:\n  a: {parent: b}\n  b: {parent: a}\njobs:\n  - name: settle\n    parent: a\n",
			want: []string{"jobs.yaml:3: job settle: key parent: parent chain loops: a -> b -> a"},
		},
		"unknown profile": {
			file: "jobs.yaml", src: job0 + "profiles:\n  dev: {}\n  prod: {}\n", profile: "prd",
			want: []string{"profile prd: unknown profile (did you mean prod?): the files declare dev, prod"},
		},
		"profile job without a name": {
			file: "jobs.yaml", src: job0 + "profiles:\n  prod:\n    jobs:\n      - timeout: 5m\n", profile: "prod",
			want: []string{"jobs.yaml:8: profile jobs[0]: key name: is required to match a job of the base"},
		},
		"yaml syntax": {
			file: "jobs.yaml", src: "jobs:\n  - name: a\n   schedule: x\n",
			want: []string{"jobs.yaml:1: did not find expected '-' indicator"},
		},
		"yaml repeated key": {
			file: "jobs.yaml", src: job0 + "    handler: other\n",
			want: []string{`jobs.yaml:5: key "handler" is repeated`},
		},
		"json unknown key": {
			file: "jobs.json", src: "{\"jobs\": [\n  {\"name\": \"settle\", \"schedule\": \"@daily\", \"handler\": \"x\",\n   \"retry\": {\"jiter\": 1}}]}",
			want: []string{"jobs.json:3: job settle: key retry.jiter: unknown key (did you mean retry.jitter?)"},
		},
		"json syntax": {
			file: "jobs.json", src: "{\"jobs\": [\n  {\"name\": }]}",
			want: []string{"jobs.json:2: invalid character '}' looking for beginning of value"},
		},
		"toml unknown key": {
			file: "jobs.toml", src: "[[jobs]]\nname = \"settle\"\nschedule = \"@daily\"\nhandler = \"x\"\n[jobs.retry]\njiter = 1\n",
			want: []string{"jobs.toml:6: job settle: key retry.jiter: unknown key (did you mean retry.jitter?)"},
		},
		"toml syntax": {
			file: "jobs.toml", src: "[[jobs]]\nname = \n",
			want: []string{"jobs.toml:2: incomplete number"},
		},
		"xml unknown key": {
			file: "jobs.xml", src: "<clover>\n  <job name=\"settle\" schedule=\"@daily\" handler=\"x\">\n    <retry jiter=\"1\"/>\n  </job>\n</clover>\n",
			want: []string{"jobs.xml:3: job settle: key retry.jiter: unknown key (did you mean retry.jitter?)"},
		},
		"xml bad cron": {
			file: "jobs.xml", src: "<clover>\n  <job name=\"settle\" handler=\"x\">\n    <schedule>0 0 25 * * ?</schedule>\n  </job>\n</clover>\n",
			want: []string{`jobs.xml:3: job settle: key schedule: schedule "0 0 25 * * ?": field 3 (hour): value 25 out of range 0-23`},
		},
		"xml syntax": {
			file: "jobs.xml", src: "<clover>\n<job>\n</clover>",
			want: []string{"jobs.xml:3: element <job> closed by </clover>"},
		},
		"xml root": {
			file: "jobs.xml", src: "<beans/>",
			want: []string{"jobs.xml:1: root element <beans>: want <clover>"},
		},
		"unknown format": {
			file: "jobs.ini", src: "x=1",
			want: []string{`jobs.ini: unknown format ".ini": want .yaml, .yml, .json, .toml or .xml`},
		},
		"not a mapping": {
			file: "jobs.yaml", src: "- a\n- b\n",
			want: []string{"jobs.yaml:1: the document must be a mapping (jobs:, defaults:, ...)"},
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := Parse(tt.file, []byte(tt.src), Options{Profile: tt.profile, Lookup: noEnv})
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("want Errors, got %v", err)
			}
			var got []string
			for _, e := range errs {
				got = append(got, e.Error())
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("errors:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestAllErrorsOfALoadAtOnce(t *testing.T) {
	dir := t.TempDir()
	a := write(t, dir, "a.yaml", "jobs:\n  - name: settle\n    schedule: \"@daily\"\n    handler: settle\n    retry: {jiter: 1}\n")
	b := write(t, dir, "b.xml", "<clover>\n  <job name=\"settle\" schedule=\"@daily\" handler=\"settle\"/>\n  <job name=\"report\" schedule=\"0 0 25 * * ?\"/>\n</clover>\n")
	_, err := Load(context.Background(), []string{a, b}, Options{Lookup: noEnv})
	want := strings.Join([]string{
		a + ":5: job settle: key retry.jiter: unknown key (did you mean retry.jitter?)",
		b + ":2: job settle: declared twice (first at " + a + ":2)",
		b + ":3: job report: key handler: is required",
		b + `:3: job report: key schedule: schedule "0 0 25 * * ?": field 3 (hour): value 25 out of range 0-23`,
	}, "\n")
	if err == nil || err.Error() != want {
		t.Fatalf("got\n%v\nwant\n%s", err, want)
	}
}

func write(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func mustParse(t *testing.T, name, src string, opts Options) map[string]job.Spec {
	t.Helper()
	if opts.Lookup == nil {
		opts.Lookup = noEnv
	}
	decls, err := Parse(name, []byte(src), opts)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]job.Spec{}
	for _, d := range decls {
		out[d.Spec.Name] = d.Spec
	}
	return out
}

func TestInheritance(t *testing.T) {
	src := `
defaults:
  contacts: [ops@example.com]
  timeout: 10m
  params: {ledger: main, region: emea}
  retry: {max: 2, backoff: exponential}
templates:
  base:
    time_zone: Europe/Paris
    params: {format: pdf}
  nightly:
    parent: base
    schedule: "0 0 2 * * ?"
    retry: {delay: 1m}
jobs:
  - name: settle
    parent: nightly
    handler: settle
    params: {region: apac}
    retry: {max: 5}
  - name: settle-eu
    parent: settle
    params: {region: ~}
  - name: plain
    schedule: "@hourly"
    command: echo hi
    contacts: [dev@example.com]
`
	got := mustParse(t, "jobs.yaml", src, Options{})
	want := map[string]job.Spec{
		"settle": {
			Name: "settle", Schedule: "0 0 2 * * ?", TimeZone: "Europe/Paris", Handler: "settle",
			Params:  map[string]string{"ledger": "main", "region": "apac", "format": "pdf"},
			Timeout: job.Duration(10 * time.Minute), Contacts: []string{"ops@example.com"},
			Retry: job.Retry{Max: 5, Backoff: "exponential", Delay: job.Duration(time.Minute)},
		},
		"settle-eu": { // a job can be a parent too, and a null drops what is inherited
			Name: "settle-eu", Schedule: "0 0 2 * * ?", TimeZone: "Europe/Paris", Handler: "settle",
			Params:  map[string]string{"ledger": "main", "format": "pdf"},
			Timeout: job.Duration(10 * time.Minute), Contacts: []string{"ops@example.com"},
			Retry: job.Retry{Max: 5, Backoff: "exponential", Delay: job.Duration(time.Minute)},
		},
		"plain": { // lists are replaced, not merged
			Name: "plain", Schedule: "@hourly", Handler: "shell",
			Params:  map[string]string{"ledger": "main", "region": "emea", "command": "echo hi"},
			Timeout: job.Duration(10 * time.Minute), Contacts: []string{"dev@example.com"},
			Retry: job.Retry{Max: 2, Backoff: "exponential"},
		},
	}
	for name, w := range want {
		if g := got[name]; !reflect.DeepEqual(normal(g), normal(w)) {
			t.Errorf("%s:\n got %+v\nwant %+v", name, g, w)
		}
	}
}

// normal clears what DeepEqual should not see: empty and missing collections are the same job.
func normal(s job.Spec) job.Spec { return definition(s) }

func TestProfiles(t *testing.T) {
	tests := map[string]struct {
		// spec
		profile string
		// expectations
		report job.Spec
		extra  bool
	}{
		"base": {
			report: job.Spec{Name: "report", Schedule: "0 0 6 * * ?", Handler: "report", Params: map[string]string{"format": "pdf"},
				Retry: job.Retry{Max: 1}},
		},
		"dev": {
			profile: "dev",
			report: job.Spec{Name: "report", Schedule: "@every 1m", Handler: "report", Params: map[string]string{"format": "html"},
				Retry: job.Retry{Max: 1}},
		},
		"prod": {
			profile: "prod", extra: true,
			report: job.Spec{Name: "report", Schedule: "0 0 6 * * ?", Handler: "report", Params: map[string]string{"format": "pdf"},
				Retry: job.Retry{Max: 3, Backoff: "exponential"}, Timeout: job.Duration(30 * time.Minute)},
		},
	}
	src := `
defaults: {retry: {max: 1}}
jobs:
  - name: report
    schedule: "0 0 6 * * ?"
    handler: report
    params: {format: pdf}
profiles:
  dev:
    jobs:
      - name: report
        schedule: "@every 1m"
        params: {format: html}
  prod:
    defaults: {retry: {max: 3, backoff: exponential}}
    jobs:
      - name: report
        timeout: 30m
      - name: audit
        schedule: "@daily"
        handler: audit
`
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got := mustParse(t, "jobs.yaml", src, Options{Profile: tt.profile})
			if !Equal(got["report"], tt.report) {
				t.Errorf("report:\n got %+v\nwant %+v", got["report"], tt.report)
			}
			if _, ok := got["audit"]; ok != tt.extra {
				t.Errorf("audit declared: %v, want %v", ok, tt.extra)
			}
		})
	}
}

func TestPlaceholders(t *testing.T) {
	src := `
properties:
  region: ${REGION:emea}
  bucket: s3://${region}-reports
defaults:
  timeout: 15m
jobs:
  - name: report
    schedule: ${REPORT_CRON:0 0 6 * * ?}
    handler: report
    timeout: ${defaults.timeout}
    params:
      bucket: ${bucket}
      user: ${USER}
      shell: echo $${HOME}
      missing: ${NOPE:}
`
	tests := map[string]struct {
		// environment
		env map[string]string
		// expectations
		schedule string
		params   map[string]string
	}{
		"defaults": {
			env:      map[string]string{"USER": "alice"},
			schedule: "0 0 6 * * ?",
			params:   map[string]string{"bucket": "s3://emea-reports", "user": "alice", "shell": "echo ${HOME}", "missing": ""},
		},
		"environment first": {
			env:      map[string]string{"USER": "bob", "REGION": "apac", "REPORT_CRON": "@hourly", "bucket": "b"},
			schedule: "@hourly",
			params:   map[string]string{"bucket": "b", "user": "bob", "shell": "echo ${HOME}", "missing": ""},
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got := mustParse(t, "jobs.yaml", src, Options{Lookup: env(tt.env)})["report"]
			if got.Schedule != tt.schedule || !reflect.DeepEqual(got.Params, tt.params) || got.Timeout != job.Duration(15*time.Minute) {
				t.Errorf("got schedule %q params %v timeout %s", got.Schedule, got.Params, got.Timeout)
			}
		})
	}
}

// The same jobs written in each format give the same definitions, under every profile.
func TestFormatsAgree(t *testing.T) {
	files := []string{"../examples/jobs.yaml", "../examples/jobs.xml", "testdata/jobs.json", "testdata/jobs.toml"}
	for _, profile := range []string{"", "dev", "prod"} {
		var want []job.Spec
		for _, f := range files {
			decls, err := Load(context.Background(), []string{f}, Options{Profile: profile, Lookup: noEnv})
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			got := Specs(decls)
			if len(got) != 3 {
				t.Fatalf("%s: %d jobs, want 3", f, len(got))
			}
			if want == nil {
				want = got
				continue
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("profile %q: %s differs from %s:\n got %+v\nwant %+v", profile, f, files[0], got, want)
			}
		}
	}
}

func TestExampleSpecs(t *testing.T) {
	decls, err := Load(context.Background(), []string{"../examples/jobs.yaml"}, Options{Profile: "prod", Lookup: env(map[string]string{"CLOVER_REGION": "apac"})})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]job.Spec{}
	for _, d := range decls {
		got[d.Spec.Name] = d.Spec
	}
	want := job.Spec{
		Name: "settle", Schedule: "0 0 2 * * ?", TimeZone: "Europe/Paris", Handler: "settle",
		Params:  map[string]string{"group": "finance", "ledger": "main"},
		Timeout: job.Duration(10 * time.Minute), Contacts: []string{"finance@example.com", "ops@example.com"},
		Misfire: job.Misfire{Policy: job.MisfireFireOnce}, Overlap: job.OverlapForbid,
		Routing: job.Routing{Labels: map[string]string{"region": "apac"}},
		Retry:   job.Retry{Max: 3, Backoff: job.BackoffExponential, Delay: job.Duration(30 * time.Second)},
		Overdue: job.Overdue{After: job.Duration(20 * time.Minute)},
	}
	if !reflect.DeepEqual(got["settle"], want) {
		t.Errorf("settle:\n got %+v\nwant %+v", got["settle"], want)
	}
	if got["daily-report"].Timeout != job.Duration(30*time.Minute) || got["daily-report"].Routing.Strategy != job.RouteLeastBusy {
		t.Errorf("daily-report under prod: %+v", got["daily-report"])
	}
}
