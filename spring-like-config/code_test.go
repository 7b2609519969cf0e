package springconfig

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/clover-sched/clover/client"
)

func settle(context.Context, client.JobContext) error { return nil }

type financeJobs struct {
	Settle client.HandlerFunc                             `clover:"name=settle,cron=0 0 2,14 * * ?,time_zone=Europe/Paris,timeout=5m,retry.max=3,retry.backoff=exponential,overlap=forbid,params.ledger=main,contacts=a@example.com,b@example.com"`
	Report func(context.Context, client.JobContext) error `clover:"name=report,cron=@daily,handler=reporter,routing.labels.os=linux"`
	Helper func()                                         // no tag: not a job
}

const financeYAML = `
jobs:
  - name: settle
    schedule: "0 0 2,14 * * ?"
    time_zone: Europe/Paris
    handler: settle
    timeout: 5m
    retry: {max: 3, backoff: exponential}
    overlap: forbid
    params: {ledger: main}
    contacts: [a@example.com, b@example.com]
  - name: report
    schedule: "@daily"
    handler: reporter
    routing: {labels: {os: linux}}
`

// Tags, the builder and a file declare the same job the same way.
func TestCodeMatchesFile(t *testing.T) {
	ctx := context.Background()
	file := mustParse(t, "jobs.yaml", financeYAML, Options{})

	tagged, err := Tagged(&financeJobs{Settle: settle, Report: settle}).Declarations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	built, err := Merge(ctx,
		Job("settle").Cron("0 0 2,14 * * ?").TimeZone("Europe/Paris").Timeout(5*time.Minute).Retry(3).
			Backoff("exponential", 0, 0).Overlap("forbid").Param("ledger", "main").
			Contacts("a@example.com", "b@example.com").Handler(settle),
		Job("report").Cron("@daily").HandlerName("reporter").Label("os", "linux").Handler(settle),
	)
	if err != nil {
		t.Fatal(err)
	}
	for name, decls := range map[string][]Declaration{"tags": tagged, "builder": built} {
		if len(decls) != 2 {
			t.Fatalf("%s: %d declarations", name, len(decls))
		}
		for _, d := range decls {
			if !reflect.DeepEqual(d.Spec, file[d.Spec.Name]) {
				t.Errorf("%s: %s:\n got %+v\nwant %+v", name, d.Spec.Name, d.Spec, file[d.Spec.Name])
			}
			if d.Handler == nil {
				t.Errorf("%s: %s has no handler", name, d.Spec.Name)
			}
		}
	}
	if tagged[0].Origin != "struct financeJobs field Settle" || built[0].Origin != `Job("settle")` {
		t.Errorf("origins %q, %q", tagged[0].Origin, built[0].Origin)
	}
}

func TestCodeErrors(t *testing.T) {
	tests := map[string]struct {
		// spec
		d Declarer
		// expectations
		want string
	}{
		"unknown tag key": {
			d: Tagged(struct {
				Settle client.HandlerFunc `clover:"name=settle,cron=@daily,retry.mx=3"`
			}{Settle: settle}),
			want: "struct field Settle: job settle: key retry.mx: unknown key (did you mean retry.max?)",
		},
		"bad tag value": {
			d: Tagged(&financeTagErr{Settle: settle}),
			want: "struct financeTagErr field Settle: job settle: key timeout: want a duration like 90s or 1h30m, got \"5 minutes\"\n" +
				"struct financeTagErr field Settle: job settle: key schedule: schedule \"0 0 25 * * ?\": field 3 (hour): value 25 out of range 0-23",
		},
		"not key=value": {
			d: Tagged(struct {
				Settle client.HandlerFunc `clover:"settle"`
			}{Settle: settle}),
			want: `struct field Settle: tag "settle": want key=value pairs`,
		},
		"nil handler": {
			d:    Tagged(&financeJobs{Settle: settle}),
			want: "struct financeJobs field Report: handler is nil",
		},
		"not a handler": {
			d: Tagged(struct {
				Settle func() `clover:"name=settle,cron=@daily"`
			}{}),
			want: "struct field Settle: type func() is not a handler func(context.Context, client.JobContext) error",
		},
		"parent in code": {
			d:    Job("settle").Cron("@daily").Set("parent", "x").Handler(settle),
			want: `Job("settle"): job settle: key parent: not allowed in `,
		},
		"builder out of range": {
			d:    Job("settle").Cron("@daily").Retry(-1).Jitter(2).Handler(settle),
			want: "Job(\"settle\"): job settle: key retry.max: -1: want 0-100\nJob(\"settle\"): job settle: key retry.jitter: 2: want 0-1",
		},
		"builder unknown key": {
			d:    Job("settle").Cron("@daily").Set("retry.jiter", "0.1").Handler(settle),
			want: `Job("settle"): job settle: key retry.jiter: unknown key (did you mean retry.jitter?)`,
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := Merge(context.Background(), tt.d)
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("want Errors, got %v", err)
			}
			if err.Error() != tt.want {
				t.Errorf("got\n%s\nwant\n%s", err, tt.want)
			}
		})
	}
}

type financeTagErr struct {
	Settle client.HandlerFunc `clover:"name=settle,cron=0 0 25 * * ?,timeout=5 minutes"`
}

func TestMergeConflict(t *testing.T) {
	dir := t.TempDir()
	f := write(t, dir, "jobs.yaml", financeYAML)
	_, err := Merge(context.Background(), Files([]string{f}, Options{Lookup: noEnv}), Tagged(&financeJobs{Settle: settle, Report: settle}))
	want := "struct financeJobs field Settle: job settle: declared twice (first at " + f + ":3)\n" +
		"struct financeJobs field Report: job report: declared twice (first at " + f + ":12)"
	if err == nil || err.Error() != want {
		t.Fatalf("got\n%v\nwant\n%s", err, want)
	}
}

func TestRegister(t *testing.T) {
	cfg := client.DefaultConfig()
	cfg.KeysDir = "/etc/clover/keys"
	c, err := client.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	f := write(t, dir, "jobs.yaml", "jobs:\n  - name: etl\n    schedule: \"@hourly\"\n    command: echo hi\n")
	if err := Register(context.Background(), c, Files([]string{f}, Options{}), Tagged(&financeJobs{Settle: settle, Report: settle})); err != nil {
		t.Fatal(err)
	}
	// The client refuses a second declaration of a name: all three are declared.
	for _, name := range []string{"etl", "settle", "report"} {
		err := c.Declare(file0(name))
		if err == nil || !strings.Contains(err.Error(), "declared twice") {
			t.Errorf("%s: want declared twice, got %v", name, err)
		}
	}
	err = Register(context.Background(), c, Job("x").Cron("@daily").Handler(settle), Job("y").Cron("@daily").HandlerName("x").Handler(func(context.Context, client.JobContext) error { return nil }))
	if err == nil || !strings.Contains(err.Error(), "handler x is given two different functions") {
		t.Errorf("got %v", err)
	}
}

func file0(name string) (s jobSpec) {
	s.Name, s.Schedule, s.Handler = name, "@daily", "x"
	return s
}
