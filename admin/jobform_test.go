package admin

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/clover-sched/clover/internal/job"
)

// fieldNote is the note (help and error) under a form field.
func fieldNote(body, id string) string {
	m := regexp.MustCompile(`(?s)id="` + regexp.QuoteMeta(id) + `-note">(.*?)</div>`).FindStringSubmatch(body)
	if m == nil {
		return ""
	}
	return m[1]
}

// Every policy is a field; the API's error is shown at the field it names with what was typed kept, and a
// save sets exactly what the form says, pinning to clients included.
func TestAJobIsDefinedFieldByFieldAndTheAPIsErrorIsShownAtItsField(t *testing.T) {
	rig := newConsoleRig(t)
	c := rig.client()
	csrf := rig.login(c, "admin-token")
	_, body := rig.do(c, "GET", "/ui/new-job", nil, nil)
	for _, f := range jobFields {
		id := "f-" + strings.ReplaceAll(f.Key, ".", "-")
		if !strings.Contains(body, `id="`+id+`"`) {
			t.Errorf("the form has no field %s", f.Key)
		}
		if f.Kind != "checkbox" && !strings.Contains(body, `<label for="`+id+`">`) {
			t.Errorf("field %s has no label", f.Key)
		}
	}
	form := url.Values{
		"csrf": {csrf}, "name": {"ledger"}, "schedule": {"0 30 1 * * ?"}, "time_zone": {"Europe/Paris"}, "handler": {"shell"},
		"params.command": {"close-ledger"}, "params": {"region=eu\nmode=full"}, "overridable": {"mode"},
		"timeout": {"45m"}, "overlap": {"queue"}, "misfire.policy": {"skip"}, "retry.max": {"101"}, "retry.backoff": {"exponential"},
		"routing.strategy": {"failover"}, "routing.clients": {"client-a, client-b"}, "routing.labels": {"zone=a"},
		"contacts": {"ops"}, "rerunnable": {"on"},
	}
	resp, body := rig.do(c, "POST", "/ui/new-job", form, nil)
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("101 retries: %s, want 400", resp.Status)
	}
	if note := fieldNote(body, "f-retry-max"); !strings.Contains(note, "retry.max 101") {
		t.Fatalf("the retries field does not show the API's error; its note is %q", note)
	}
	if !strings.Contains(body, `value="Europe/Paris"`) || !strings.Contains(body, "close-ledger") || !strings.Contains(body, `value="101"`) {
		t.Fatal("what was typed is not kept after the error")
	}
	// A value that is not a number is told at its field before the API is asked.
	bad := url.Values{}
	for k, v := range form {
		bad[k] = v
	}
	bad.Set("retry.max", "3")
	bad.Set("timeout", "soon")
	calls := len(rig.api.writes())
	resp, body = rig.do(c, "POST", "/ui/new-job", bad, nil)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(fieldNote(body, "f-timeout"), "not a duration") || len(rig.api.writes()) != calls {
		t.Fatalf("a timeout of %q: %s, note %q", "soon", resp.Status, fieldNote(body, "f-timeout"))
	}
	form.Set("retry.max", "3")
	if resp, _ = rig.do(c, "POST", "/ui/new-job", form, nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("create: %s", resp.Status)
	}
	rig.api.mu.Lock()
	got := rig.api.jobs["ledger"]
	rig.api.mu.Unlock()
	if got.TimeZone != "Europe/Paris" || got.Params["command"] != "close-ledger" || got.Params["region"] != "eu" || got.Params["mode"] != "full" ||
		got.Timeout != job.Duration(45*60e9) || got.Overlap != "queue" || got.Misfire.Policy != "skip" || got.Retry.Max != 3 ||
		got.Routing.Strategy != "failover" || strings.Join(got.Routing.Clients, ",") != "client-a,client-b" || got.Routing.Labels["zone"] != "a" ||
		!got.Rerunnable || got.Paused || strings.Join(got.Contacts, ",") != "ops" || strings.Join(got.Overridable, ",") != "mode" {
		t.Fatalf("the job made from the form: %+v", got)
	}

	// The edit form shows the job as it is; a parameter taken out of it goes, the rest stays.
	_, body = rig.do(c, "GET", "/ui/jobs/ledger/edit", nil, nil)
	if !strings.Contains(body, `value="client-a, client-b"`) || !strings.Contains(body, "region=eu") || strings.Contains(body, `id="f-name"`) {
		t.Fatal("the edit form does not show the job's fields (or lets the name change)")
	}
	edit := url.Values{}
	for k, v := range form {
		edit[k] = v
	}
	edit.Del("name")
	edit.Set("version", "1")
	edit.Set("params", "region=us")
	edit.Set("routing.clients", "")
	if resp, _ = rig.do(c, "POST", "/ui/jobs/ledger/edit", edit, nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("edit: %s", resp.Status)
	}
	rig.api.mu.Lock()
	got = rig.api.jobs["ledger"]
	rig.api.mu.Unlock()
	if got.Name != "ledger" || got.Params["region"] != "us" || got.Params["mode"] != "" || got.Params["command"] != "close-ledger" || len(got.Routing.Clients) != 0 || got.Version != 2 {
		t.Fatalf("after the edit: %+v", got)
	}
}

func TestAnAPIErrorNamesItsField(t *testing.T) {
	for msg, want := range map[string]string{
		`job x: retry.max 111: want 0-100`:                   "retry.max",
		`job x: schedule "0 61 * * * ?": minute 61 is over`:  "schedule",
		`job x: time_zone "Mars/Olympus": unknown time zone`: "time_zone",
		`job x: routing.clients[1] "a" is empty or repeated`: "routing.clients",
		`job name "no/slash": must be 1-128 characters`:      "name",
		`job x: params.command: 40000 bytes, at most 32768`:  "params.command",
		`job x: params.region: 40000 bytes, at most 32768`:   "params",
		`conflict: job x is at version 3, not 2`:             "",
		`job x: a local job cannot be sharded`:               "",
	} {
		if got := fieldOfError(msg); got != want {
			t.Errorf("fieldOfError(%q) = %q, want %q", msg, got, want)
		}
	}
}

func TestAJobIsTriggeredWithParameters(t *testing.T) {
	rig := newConsoleRig(t)
	c := rig.client()
	csrf := rig.login(c, "operator-token")
	if _, body := rig.do(c, "GET", "/ui/jobs/nightly", nil, nil); !strings.Contains(body, `id="trigger-params"`) {
		t.Fatal("the job page has no parameters for a trigger")
	}
	resp, _ := rig.do(c, "POST", "/ui/jobs/nightly/trigger", url.Values{"csrf": {csrf}, "params": {"date=2026-12-01\r\nmode=full"}}, nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("trigger: %s", resp.Status)
	}
	rig.api.mu.Lock()
	got := rig.api.triggered
	rig.api.mu.Unlock()
	if got == nil || got.Params["date"] != "2026-12-01" || got.Params["mode"] != "full" || len(got.Params) != 2 {
		t.Fatalf("the API was asked to trigger with %+v", got)
	}
	if resp, _ := rig.do(c, "POST", "/ui/jobs/nightly/trigger", url.Values{"csrf": {csrf}, "params": {"no equals sign"}}, nil); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("a parameter line without '=': %s, want 400", resp.Status)
	}
}

func TestNextFireTimesAreInTheJobsZoneWithDaylightSavingChangesMarked(t *testing.T) {
	paris := time.Date(2026, 3, 28, 12, 0, 0, 0, time.UTC) // the day before Europe/Paris moves to summer time
	times := []time.Time{
		time.Date(2026, 3, 29, 0, 30, 0, 0, time.UTC), // 01:30 CET
		time.Date(2026, 3, 30, 0, 30, 0, 0, time.UTC), // 02:30 CEST
		time.Date(2026, 3, 31, 0, 30, 0, 0, time.UTC),
	}
	got := nextFires(times, "Europe/Paris", paris)
	if len(got) != 3 || got[0].Shift != "" || got[2].Shift != "" {
		t.Fatalf("marks: %+v", got)
	}
	if got[1].Shift != "the offset changes from UTC+01:00 to UTC+02:00 before it" || got[1].At.Hour() != 2 {
		t.Fatalf("the first time after the change: %+v", got[1])
	}
	if got := nextFires(times, "", paris); got[0].At.Location() != time.UTC || got[1].Shift != "" {
		t.Fatalf("no zone: %+v", got)
	}
}
