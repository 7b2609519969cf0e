package springconfig

import (
	"context"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/clover-sched/clover/internal/workflow"
)

func wantYearEnd(profile string) workflow.Definition {
	d := workflow.Definition{
		Name: "year-end", Description: "extract per department, then the reports", Frequency: "D",
		RequestedBy: []string{"loader-1"},
		Nodes: []workflow.Node{
			{Name: "extract", Job: "ye-extract", Group: "finance", Labels: map[string]string{"os": "linux"},
				Partitions: []string{"A", "B", "C"}, Resources: map[string]int{"db": 2}, Pre: "test -d /data",
				Handlers: workflow.Handlers{OnFailure: workflow.Handler{Command: "echo failed", Contacts: []string{"finance@example.com", "ops@example.com"}}}},
			{Name: "summary", Job: "ye-report", Params: map[string]string{"report": "head-office"}, Locks: []workflow.Lock{{Name: "ledger"}}},
			{Name: "archive", Job: "ye-report", Frequencies: []string{"M", "Y"}, Locks: []workflow.Lock{{Name: "ledger", Shared: true}, {Name: "archive-disk"}}},
			{Name: "alert", Job: "ye-report", Post: "echo done"},
		},
		Edges: []workflow.Edge{
			{From: "extract", To: "summary"},
			{From: "summary", To: "archive", Flag: workflow.OnCompletion},
			{From: "extract", To: "alert", Flag: workflow.OnFailure},
		},
	}
	if profile == "prod" {
		d.Schedule, d.TimeZone = "0 0 22 * * ?", "Europe/Paris"
	}
	return d
}

// The same batch written in each format gives the same definition, under each profile, beside its jobs.
func TestBatchFormatsAgree(t *testing.T) {
	for _, profile := range []string{"", "prod"} {
		for _, f := range []string{"testdata/batches.yaml", "testdata/batches.json", "testdata/batches.toml", "testdata/batches.xml"} {
			set, err := LoadSet(context.Background(), []string{f}, Options{Profile: profile, Lookup: noEnv})
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if len(set.Jobs) != 2 || len(set.Batches) != 1 {
				t.Fatalf("%s: %d jobs and %d batches, want 2 and 1", f, len(set.Jobs), len(set.Batches))
			}
			if s := set.Jobs[0].Spec; s.Schedule != "" || s.Params["command"] == "" {
				t.Errorf("%s: job %+v: want a job without a schedule (it runs in batches only)", f, s)
			}
			if got, want := set.Batches[0].Definition, wantYearEnd(profile); !reflect.DeepEqual(got, want) {
				t.Errorf("profile %q: %s:\n got %+v\nwant %+v", profile, f, got, want)
			}
			if o := set.Batches[0].Origin; !strings.HasPrefix(o, f+":") {
				t.Errorf("%s: origin %q", f, o)
			}
		}
	}
}

// A batch's problems are reported with the file, line, batch and key, all at once, as a job's are.
func TestBatchErrorsNameTheirPlace(t *testing.T) {
	src := `batches:
  - name: eod
    nodes:
      - {name: a, job: x, partitons: [A]}
      - name: b
        job: x
        resources: {db: two}
        locks: [{name: l, shared: maybe}]
  - name: loop
    nodes: [{name: a, job: x}, {name: b, job: x}]
    edges: [{from: a, to: b}, {from: b, to: a}]
  - name: eod
    nodes: [{name: a, job: x}]
  - name: flags
    nodes: [{name: a, job: x}, {name: b, job: x}]
    edges: [{from: a, to: b, flag: sometimes}]
    shedule: "@daily"
`
	_, err := LoadSet(context.Background(), []string{writeTemp(t, "b.yaml", src)}, Options{Lookup: noEnv})
	if err == nil {
		t.Fatal("accepted")
	}
	msg := err.Error()
	for _, want := range []string{
		"b.yaml:4: batch eod: key nodes[0].partitons: unknown key (did you mean partitions?)",
		`b.yaml:7: batch eod: key nodes[1].resources.db: "two": want a whole number`,
		`b.yaml:8: batch eod: key nodes[1].locks[0].shared: "maybe": want true or false`,
		"b.yaml:9: batch loop: cycle: a → b → a",
		"b.yaml:17: batch flags: key shedule: unknown key (did you mean schedule?)",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("errors lack %q:\n%s", want, msg)
		}
	}
	ok := `batches:
  - {name: a, nodes: [{name: n, job: x}]}
  - {name: a, nodes: [{name: n, job: y}]}
`
	_, err = LoadSet(context.Background(), []string{writeTemp(t, "d.yaml", ok)}, Options{Lookup: noEnv})
	if err == nil || !strings.Contains(err.Error(), "d.yaml:3: batch a: declared twice (first at ") || !strings.HasSuffix(err.Error(), "d.yaml:2)") {
		t.Errorf("a batch declared twice: %v", err)
	}
}

func writeTemp(t *testing.T, name, content string) string {
	t.Helper()
	p := t.TempDir() + "/" + name
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// A batch built in code is the batch of the files, and is checked as they are.
func TestBatchBuilderAgreesWithTheFiles(t *testing.T) {
	b := Batch("year-end").Description("extract per department, then the reports").Frequency("D").RequestedBy("loader-1")
	b.Node("extract", "ye-extract").Group("finance").Label("os", "linux").Partitions("A", "B", "C").Resource("db", 2).
		Pre("test -d /data").OnFailure("echo failed", "finance@example.com", "ops@example.com")
	b.Node("summary", "ye-report").Param("report", "head-office").Lock("ledger").After("extract").
		Node("archive", "ye-report").Frequencies("M", "Y").SharedLock("ledger").Lock("archive-disk").AfterOn("completed", "summary").
		Node("alert", "ye-report").Post("echo done").AfterOn("failed", "extract")
	got, err := b.BatchDeclarations(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := wantYearEnd(""); !reflect.DeepEqual(got[0].Definition, want) {
		t.Errorf("built:\n got %+v\nwant %+v", got[0].Definition, want)
	}

	files := Files([]string{"testdata/batches.yaml"}, Options{Lookup: noEnv})
	_, err = MergeSet(context.Background(), files, b)
	if err == nil || !strings.Contains(err.Error(), `batch year-end: declared twice (first at testdata/batches.yaml:10)`) {
		t.Errorf("the same batch in a file and in code: %v", err)
	}
	bad := Batch("loop")
	bad.Node("a", "x").After("b").Node("b", "x").After("a")
	_, err = MergeSet(context.Background(), bad)
	if err == nil || err.Error() != `Batch("loop"): batch loop: cycle: a → b → a` {
		t.Errorf("a cycle built in code: %v", err)
	}
}

// What a file could mean but does not say is refused, never read as nothing: a dotted key, text where
// keys or items belong, an item of the wrong name.
func TestMisshapenBatchesAreRefused(t *testing.T) {
	for name, tc := range map[string]struct{ file, src, want string }{
		"dotted key": {"b.yaml", "batches:\n  - name: b\n    nodes:\n      - {name: n, job: j, handlers.on_failure.command: notify.sh}\n",
			"key nodes[0].handlers.on_failure.command: unknown key"},
		"locks as text": {"b.xml", `<clover><batch name="b"><node name="n" job="j"><locks>ledger</locks></node></batch></clover>`,
			`<locks> holds text "ledger"`},
		"handler as text": {"b.xml", `<clover><batch name="b"><node name="n" job="j"><handlers><on_failure>notify.sh</on_failure></handlers></node></batch></clover>`,
			`<on_failure> holds text "notify.sh"`},
		"labels as text": {"b.xml", `<clover><batch name="b"><node name="n" job="j"><labels>os=linux</labels></node></batch></clover>`,
			`<labels> holds text "os=linux"`},
		"an edge among the nodes": {"b.xml", `<clover><batch name="b"><nodes><node name="n" job="j"/><edge from="n" to="n"/></nodes></batch></clover>`,
			"<edge> in <nodes>: want <node>"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := LoadSet(context.Background(), []string{writeTemp(t, tc.file, tc.src)}, Options{Lookup: noEnv})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error saying %q", err, tc.want)
			}
		})
	}
	// What reads the same in every order and form.
	src := `<clover><batch name="b"><node name="a" job="j"/><nodes><node name="c" job="j"><locks><lock shared="true">ledger</lock></locks></node></nodes></batch></clover>`
	set, err := LoadSet(context.Background(), []string{writeTemp(t, "ok.xml", src)}, Options{Lookup: noEnv})
	if err != nil {
		t.Fatal(err)
	}
	d := set.Batches[0].Definition
	if len(d.Nodes) != 2 || d.Nodes[1].Name != "c" || len(d.Nodes[1].Locks) != 1 || d.Nodes[1].Locks[0] != (workflow.Lock{Name: "ledger", Shared: true}) {
		t.Errorf("a <node> beside a <nodes>, a lock named by its text: %+v", d.Nodes)
	}
}
