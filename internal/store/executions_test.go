package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/clover-sched/clover/internal/job"
)

// storedExecution is e as read back with no events.
func storedExecution(e job.Execution) job.Execution {
	e.ScheduledAt, e.FiredAt = storedTime(e.ScheduledAt), storedTime(e.FiredAt)
	e.State = job.StatePending
	return e
}

func TestInsertExecutionsDuplicates(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		stored  []int // minutes after t0 of the executions stored before, by server "old"
		batch   []int // minutes after t0 of the executions inserted, by server "new"
		wantDup []int // minutes of the executions reported as duplicates
	}{
		"empty batch":             {},
		"all new":                 {batch: []int{0, 1, 2}},
		"all duplicates":          {stored: []int{0, 1}, batch: []int{0, 1}, wantDup: []int{0, 1}},
		"new and duplicate mixed": {stored: []int{1, 3}, batch: []int{0, 1, 2, 3, 4}, wantDup: []int{1, 3}},
		"duplicate in the batch":  {batch: []int{0, 1, 0}, wantDup: []int{0}},
		"many, every other stored": {
			stored: seq(0, 1000, 2), batch: seq(0, 1000, 1), wantDup: seq(0, 1000, 2),
		},
	}
	s := testStore(t)
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			jobName := notInDBName.ReplaceAllString(name, "-")
			firing := func(server string, minutes []int) []job.Execution {
				var execs []job.Execution
				for _, m := range minutes {
					e := execution(jobName, t0.Add(time.Duration(m)*time.Minute), job.TriggerSchedule)
					e.Server = server
					execs = append(execs, e)
				}
				return execs
			}
			mustInsert(t, s, firing("old", tt.stored), nil)

			dups, err := s.InsertExecutions(t.Context(), firing("new", tt.batch))
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, e := range firing("", tt.wantDup) {
				want = append(want, e.ID)
			}
			slices.Sort(dups)
			slices.Sort(want)
			if !slices.Equal(dups, want) {
				t.Errorf("duplicates = %v, want %v", dups, want)
			}

			// The first insert stays: a deposed leader's firing is not overwritten.
			wantServer := make(map[string]string)
			for _, e := range firing("new", tt.batch) {
				wantServer[e.ID] = e.Server
			}
			for _, e := range firing("old", tt.stored) {
				wantServer[e.ID] = e.Server
			}
			got, err := s.ListExecutions(t.Context(), ExecutionFilter{Job: jobName, Limit: MaxListLimit})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(wantServer) {
				t.Errorf("stored %d executions, want %d", len(got), len(wantServer))
			}
			for _, e := range got {
				if e.Server != wantServer[e.ID] {
					t.Fatalf("%s was fired by %q, want %q", e.ID, e.Server, wantServer[e.ID])
				}
			}
		})
	}
}

func seq(from, to, step int) []int {
	var s []int
	for i := from; i < to; i += step {
		s = append(s, i)
	}
	return s
}

func TestInsertExecutionsRequiresID(t *testing.T) {
	t.Parallel()
	s := testStore(t)
	e := execution("j", t0, job.TriggerSchedule)
	e.ID = ""
	if _, err := s.InsertExecutions(t.Context(), []job.Execution{e}); err == nil {
		t.Error("InsertExecutions of an execution without id succeeded")
	}
}

func TestInsertEventsDuplicates(t *testing.T) {
	t.Parallel()
	s := testStore(t)
	e := execution("j", t0, job.TriggerSchedule)
	mustInsert(t, s, []job.Execution{e}, nil)
	a1, a2, a3 := acked(e, 1, t0.Add(time.Second)), acked(e, 2, t0.Add(2*time.Second)), acked(e, 3, t0.Add(3*time.Second))
	fin := finished(e, job.StateSucceeded, t0.Add(4*time.Second))

	tests := []struct {
		name    string
		batch   []job.Event
		wantDup int
	}{
		{"new", []job.Event{a1, fin}, 0},
		{"repeated report", []job.Event{a1, fin}, 2},
		{"mixed", []job.Event{fin, a2, a1}, 2},
		{"repeated in the batch", []job.Event{a3, a3}, 1},
	}
	for _, tt := range tests { // in order: each step sees the events of the previous ones
		dups, err := s.InsertEvents(t.Context(), tt.batch)
		if err != nil || dups != tt.wantDup {
			t.Errorf("%s: InsertEvents = %d, %v; want %d duplicates", tt.name, dups, err, tt.wantDup)
		}
	}
	got, err := s.GetExecution(t.Context(), e.ID)
	if err != nil || got.State != job.StateSucceeded {
		t.Errorf("GetExecution = %+v, %v; want succeeded", got, err)
	}
}

func TestGetExecutionFolds(t *testing.T) {
	t.Parallel()
	s := testStore(t)
	e := execution("j", t0, job.TriggerSchedule)
	mustInsert(t, s, []job.Execution{e}, nil)

	want := storedExecution(e)
	want.Run = 1
	steps := []struct {
		name  string
		event job.Event
		apply func(*job.Execution, job.Event)
	}{
		{"acked", acked(e, 1, t0.Add(1234567*time.Nanosecond)), func(x *job.Execution, ev job.Event) {
			x.State, x.Client, x.Attempt, x.AckedAt = job.StateRunning, ev.Client, ev.Attempt, storedTime(ev.At)
		}},
		{"finished", finished(e, job.StateSucceeded, t0.Add(2*time.Second+999999)), func(x *job.Execution, ev job.Event) {
			r := *ev.Result
			x.State, x.FinishedAt, x.Result = job.StateSucceeded, storedTime(ev.At), &r
			stored := ev
			stored.At = storedTime(ev.At)
			x.Runs = append(x.Runs, stored)
		}},
	}
	check := func(step string) {
		t.Helper()
		got, err := s.GetExecution(t.Context(), e.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: GetExecution =\n%+v\nwant\n%+v", step, got, want)
		}
	}
	check("fired")
	for _, st := range steps {
		mustInsert(t, s, nil, []job.Event{st.event})
		st.apply(&want, st.event)
		check(st.name)
	}
	// Closed: read from its history record, the same.
	closeInto(t, s, s.NewHistoryWriter(3, time.Hour, 0), e.ID)
	if open, _ := s.OpenByID(t.Context(), []string{e.ID}); len(open) != 0 {
		t.Fatalf("%s still in the open set after its close", e.ID)
	}
	check("closed")

	if _, err := s.GetExecution(t.Context(), "j@nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetExecution of a missing id = %v, want ErrNotFound", err)
	}
}

// history stores executions of jobs x and y, one a minute, in the states their names say.
func history(t *testing.T, s *Store) map[string]job.Execution {
	t.Helper()
	states := []struct {
		name  string
		job   string
		state job.State
	}{
		{"x0", "x", job.StateSucceeded}, {"x1", "x", job.StateFailed}, {"y2", "y", job.StatePending},
		{"x3", "x", job.StateRunning}, {"x4", "x", job.StatePending}, {"x5", "x", job.StateSucceeded},
		{"y6", "y", job.StatePending}, {"x7", "x", job.StateRunning},
	}
	byName := make(map[string]job.Execution)
	var execs []job.Execution
	var events []job.Event
	for i, st := range states {
		at := t0.Add(time.Duration(i) * time.Minute)
		e := execution(st.job, at, job.TriggerSchedule)
		execs = append(execs, e)
		byName[st.name] = e
		switch st.state {
		case job.StateRunning:
			events = append(events, acked(e, 1, at.Add(time.Second)))
		case job.StateSucceeded, job.StateFailed:
			events = append(events, acked(e, 1, at.Add(time.Second)), finished(e, st.state, at.Add(2*time.Second)))
		}
	}
	mustInsert(t, s, execs, events)
	// The ended ones leave the open set for the history, in two buckets (two terms).
	closeInto(t, s, s.NewHistoryWriter(3, time.Hour, 0), byName["x0"].ID, byName["x1"].ID)
	closeInto(t, s, s.NewHistoryWriter(4, time.Hour, 0), byName["x5"].ID)
	return byName
}

// closeInto does what the leader's closer does: appends the ended executions among ids to the history
// with w, then takes ids out of the open set.
func closeInto(t *testing.T, s *Store, w *HistoryWriter, ids ...string) {
	t.Helper()
	execs, err := s.OpenByID(t.Context(), ids)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range execs {
		if !e.State.Terminal() {
			t.Fatalf("closeInto %s: it is %s", e.ID, e.State)
		}
	}
	if err := w.Append(t.Context(), execs, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := s.CloseExecutions(t.Context(), ids); err != nil {
		t.Fatal(err)
	}
}

func TestListExecutions(t *testing.T) {
	t.Parallel()
	s := testStore(t)
	h := history(t, s)
	tests := map[string]struct {
		filter ExecutionFilter
		want   []string
	}{
		"all, newest first":       {ExecutionFilter{}, []string{"x7", "y6", "x5", "x4", "x3", "y2", "x1", "x0"}},
		"by job":                  {ExecutionFilter{Job: "x"}, []string{"x7", "x5", "x4", "x3", "x1", "x0"}},
		"limit":                   {ExecutionFilter{Job: "x", Limit: 2}, []string{"x7", "x5"}},
		"before":                  {ExecutionFilter{Before: h["x4"].ScheduledAt}, []string{"x3", "y2", "x1", "x0"}},
		"by state":                {ExecutionFilter{State: job.StateRunning}, []string{"x7", "x3"}},
		"by state, limit":         {ExecutionFilter{State: job.StateSucceeded, Limit: 1}, []string{"x5"}},
		"by job and state":        {ExecutionFilter{Job: "y", State: job.StatePending}, []string{"y6", "y2"}},
		"state before":            {ExecutionFilter{State: job.StatePending, Before: h["y6"].ScheduledAt}, []string{"x4", "y2"}},
		"before, tie by id":       {ExecutionFilter{Before: h["x4"].ScheduledAt, BeforeID: h["x4"].ID + "~"}, []string{"x4", "x3", "y2", "x1", "x0"}},
		"before, tie excluded":    {ExecutionFilter{Before: h["x4"].ScheduledAt, BeforeID: h["x4"].ID}, []string{"x3", "y2", "x1", "x0"}},
		"no match":                {ExecutionFilter{Job: "y", State: job.StateFailed}, nil},
		"unknown job":             {ExecutionFilter{Job: "z"}, nil},
		"limit above the maximum": {ExecutionFilter{Job: "y", Limit: MaxListLimit + 1}, []string{"y6", "y2"}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := s.ListExecutions(t.Context(), tt.filter)
			if err != nil {
				t.Fatal(err)
			}
			var want []job.Execution
			for _, n := range tt.want {
				want = append(want, h[n])
			}
			if ids(got) != ids(want) {
				t.Errorf("got  %s\nwant %s", ids(got), ids(want))
			}
			for _, e := range got {
				if tt.filter.State != "" && e.State != tt.filter.State {
					t.Errorf("%s is %s", e.ID, e.State)
				}
			}
		})
	}

	if _, err := s.ListExecutions(t.Context(), ExecutionFilter{State: "lost"}); err == nil {
		t.Error("ListExecutions with an unknown state succeeded")
	}
}

func TestOpenSet(t *testing.T) {
	t.Parallel()
	s := testStore(t)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	pending := execution("j", at(0), job.TriggerSchedule)
	running := execution("j", at(time.Minute), job.TriggerSchedule)
	done := execution("j", at(2*time.Minute), job.TriggerSchedule)
	other := execution("k", at(-time.Minute), job.TriggerManual)
	mustInsert(t, s, []job.Execution{pending, running, done, other}, []job.Event{
		acked(running, 1, at(time.Minute+time.Second)),
		acked(done, 1, at(2*time.Minute+time.Second)),
		finished(done, job.StateSucceeded, at(2*time.Minute+2*time.Second)),
	})
	read := func() (map[string]job.State, []string) {
		t.Helper()
		execs, stray, err := s.ReadOpenSet(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if !slices.IsSortedFunc(execs, func(a, b job.Execution) int { return a.ScheduledAt.Compare(b.ScheduledAt) }) {
			t.Errorf("open set not oldest first: %s", ids(execs))
		}
		states := map[string]job.State{}
		for _, e := range execs {
			states[e.ID] = e.State
		}
		return states, stray
	}
	states, stray := read()
	want := map[string]job.State{pending.ID: job.StatePending, running.ID: job.StateRunning, done.ID: job.StateSucceeded, other.ID: job.StatePending}
	if !maps.Equal(states, want) || len(stray) != 0 {
		t.Fatalf("open set = %v, stray %v; want %v and none", states, stray, want)
	}

	got, err := s.OpenByID(t.Context(), []string{running.ID, "nope"})
	if err != nil || len(got) != 1 || got[0].State != job.StateRunning || got[0].Client != "c1" {
		t.Fatalf("OpenByID = %+v, %v; want %s running on c1", got, err, running.ID)
	}

	// Closed: gone from the open set, in the history.
	closeInto(t, s, s.NewHistoryWriter(3, time.Hour, 0), done.ID, "nope")
	delete(want, done.ID)
	if states, stray = read(); !maps.Equal(states, want) || len(stray) != 0 {
		t.Fatalf("after close: open set = %v, stray %v; want %v and none", states, stray, want)
	}
	if e, err := s.GetExecution(t.Context(), done.ID); err != nil || e.State != job.StateSucceeded {
		t.Fatalf("closed execution = %s, %v; want it recorded, succeeded", e.State, err)
	}
	for id, want := range map[string]bool{done.ID: true, pending.ID: true, "j@nope": false} {
		if known, err := s.ExecutionRecorded(t.Context(), id, t0); err != nil || known != want {
			t.Errorf("ExecutionRecorded(%s) = %v, %v; want %v", id, known, err, want)
		}
	}

	// A result re-sent after its execution was closed leaves a stray event, named until it is closed too.
	if _, err := s.InsertEvents(t.Context(), []job.Event{finished(done, job.StateSucceeded, at(2*time.Minute+2*time.Second))}); err != nil {
		t.Fatal(err)
	}
	if _, stray = read(); !slices.Equal(stray, []string{done.ID}) {
		t.Fatalf("stray = %v, want [%s]", stray, done.ID)
	}
	if err := s.CloseExecutions(t.Context(), stray); err != nil {
		t.Fatal(err)
	}
	if states, stray = read(); !maps.Equal(states, want) || len(stray) != 0 {
		t.Fatalf("after closing the stray: open set = %v, stray %v; want %v and none", states, stray, want)
	}
}

func TestAFiringMadeAgainAfterItsCloseDoesNotComeBack(t *testing.T) {
	t.Parallel()
	s := testStore(t)
	e := execution("j", t0, job.TriggerSchedule)
	mustInsert(t, s, []job.Execution{e}, []job.Event{acked(e, 1, t0.Add(time.Second)), finished(e, job.StateSucceeded, t0.Add(2*time.Second))})
	closeInto(t, s, s.NewHistoryWriter(3, time.Hour, 0), e.ID)
	// A deposed leader, or a catch-up from an older last firing, fires it again under another epoch.
	again := e
	again.Epoch, again.Server = 9, "s2"
	dups, err := s.InsertExecutions(t.Context(), []job.Execution{again})
	if err != nil || !slices.Equal(dups, []string{e.ID}) {
		t.Fatalf("InsertExecutions again = %v, %v; want it a duplicate", dups, err)
	}
	if open, err := s.OpenByID(t.Context(), []string{e.ID}); err != nil || len(open) != 0 {
		t.Fatalf("open set after the second firing = %+v, %v; want nothing (it ended)", open, err)
	}
	if got, err := s.GetExecution(t.Context(), e.ID); err != nil || got.State != job.StateSucceeded || got.Epoch != 3 {
		t.Fatalf("GetExecution = %s epoch %d, %v; want the first firing, succeeded", got.State, got.Epoch, err)
	}
}

func TestMigrateOpenSet(t *testing.T) {
	t.Parallel()
	s := testStore(t)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	old := execution("j", at(-time.Hour), job.TriggerSchedule) // pending, but before since
	pending := execution("j", at(0), job.TriggerSchedule)
	running := execution("j", at(time.Minute), job.TriggerSchedule)
	done := execution("j", at(2*time.Minute), job.TriggerSchedule)
	failed := execution("j", at(3*time.Minute), job.TriggerSchedule)
	catchUp := execution("j", at(-2*time.Hour), job.TriggerCatchUp) // for an old time, fired after since
	catchUp.FiredAt = at(5 * time.Second)
	manual := execution("j", at(10*time.Second), job.TriggerManual)
	// Recorded by a version without the open set: straight into the executions and events.
	var docs []any
	for _, e := range []job.Execution{old, pending, running, done, failed, catchUp, manual} {
		docs = append(docs, storedExecutionDoc(e))
	}
	if _, err := s.execs.InsertMany(t.Context(), docs); err != nil {
		t.Fatal(err)
	}
	var evs []any
	for _, ev := range []job.Event{
		acked(running, 1, at(time.Minute+time.Second)),
		acked(done, 1, at(2*time.Minute+time.Second)),
		finished(done, job.StateSucceeded, at(2*time.Minute+2*time.Second)),
		finished(failed, job.StateFailed, at(3*time.Minute+time.Second)), // refused: finished without ack
	} {
		evs = append(evs, ev)
	}
	if _, err := s.events.InsertMany(t.Context(), evs); err != nil {
		t.Fatal(err)
	}

	n, err := s.MigrateOpenSet(t.Context(), t0)
	if err != nil || n != 5 {
		t.Fatalf("MigrateOpenSet = %d, %v; want 5", n, err)
	}
	got, stray, err := s.ReadOpenSet(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// The unfinished ones, and the job's latest scheduled firing (failed), where its schedule resumes.
	want := []job.Execution{catchUp, pending, manual, running, failed}
	if ids(got) != ids(want) || len(stray) != 0 {
		t.Fatalf("open set =\n%s\nwant\n%s (stray %v)", ids(got), ids(want), stray)
	}
	for _, e := range got {
		wantState := job.StatePending
		switch e.ID {
		case running.ID:
			wantState = job.StateRunning
		case failed.ID:
			wantState = job.StateFailed
		}
		if e.State != wantState {
			t.Errorf("%s is %s, want %s", e.ID, e.State, wantState)
		}
	}
	// Once per database: the next call (a later leader) reads nothing.
	if err := s.CloseExecutions(t.Context(), []string{pending.ID}); err != nil {
		t.Fatal(err)
	}
	if n, err := s.MigrateOpenSet(t.Context(), t0); err != nil || n != 0 {
		t.Fatalf("second MigrateOpenSet = %d, %v; want 0", n, err)
	}
}

func BenchmarkInsertExecutions(b *testing.B) {
	s := testStore(b)
	const batch = 500
	n := 0
	for b.Loop() {
		execs := make([]job.Execution, batch)
		for i := range execs {
			execs[i] = execution("bench", t0.Add(time.Duration(n)*time.Second), job.TriggerSchedule)
			n++
		}
		if dups, err := s.InsertExecutions(b.Context(), execs); err != nil || len(dups) > 0 {
			b.Fatal(dups, err)
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "inserts/s")
}

func BenchmarkInsertEvents(b *testing.B) {
	s := testStore(b)
	const batch = 500
	e := execution("bench", t0, job.TriggerSchedule)
	n := 0
	for b.Loop() {
		events := make([]job.Event, batch)
		for i := range events {
			events[i] = acked(e, n, t0.Add(time.Duration(n)*time.Millisecond))
			n++
		}
		if dups, err := s.InsertEvents(b.Context(), events); err != nil || dups > 0 {
			b.Fatal(dups, err)
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "inserts/s")
}

// BenchmarkReads shows what reads cost as history grows: on FerretDB 1.24 every query but one on _id alone
// reads the whole collection, so folding in events costs as much for one execution as for a thousand.
func BenchmarkReads(b *testing.B) {
	for _, size := range []int{1000, 10000} {
		b.Run(fmt.Sprint("executions=", size), func(b *testing.B) {
			s := testStore(b)
			var execs []job.Execution
			var events []job.Event
			for i := range size {
				e := execution("bench", t0.Add(time.Duration(i)*time.Second), job.TriggerSchedule)
				execs = append(execs, e)
				events = append(events, acked(e, 1, e.ScheduledAt), finished(e, job.StateSucceeded, e.ScheduledAt))
			}
			mustInsert(b, s, execs, events)
			b.Run("GetExecution", func(b *testing.B) {
				for b.Loop() {
					if _, err := s.GetExecution(b.Context(), execs[size/2].ID); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("ListExecutions", func(b *testing.B) {
				for b.Loop() {
					if _, err := s.ListExecutions(b.Context(), ExecutionFilter{Job: "bench"}); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

func TestExecutionsAreSearchedByTheirErrorsAndOutput(t *testing.T) {
	t.Parallel()
	s := testStore(t)
	var execs []job.Execution
	var events []job.Event
	results := []struct {
		client, err, out string
	}{
		{"c1", "exit status 1", "ORA-00942: table or view does not exist"},
		{"c2", "ORA-00942 in step 3", ""},
		{"c1", "", "all good"},
		{"c2", "timed out", "waiting for ora-00942 lock"},
	}
	for i, r := range results {
		at := t0.Add(time.Duration(i) * time.Hour)
		e := execution("etl", at, job.TriggerSchedule)
		execs = append(execs, e)
		status := job.StateFailed
		if r.err == "" {
			status = job.StateSucceeded
		}
		events = append(events, acked(e, 1, at.Add(time.Second)), job.Event{
			ID: job.EventID(e.ID, job.EventFinished, 0), ExecID: e.ID, Job: e.Job, Kind: job.EventFinished, Client: r.client,
			At: at.Add(2 * time.Second), Result: &job.Result{Status: status, Error: r.err, Output: r.out},
		})
	}
	mustInsert(t, s, execs, events)
	closeInto(t, s, s.NewHistoryWriter(3, time.Hour, 0), execs[0].ID, execs[1].ID) // two in the history, two open
	search := func(f ExecutionFilter) string {
		t.Helper()
		got, err := s.ListExecutions(t.Context(), f)
		if err != nil {
			t.Fatal(err)
		}
		return ids(got)
	}
	if got, want := search(ExecutionFilter{Text: "ora-00942"}), ids([]job.Execution{execs[3], execs[1], execs[0]}); got != want {
		t.Errorf("text: got %s, want %s", got, want)
	}
	if got, want := search(ExecutionFilter{Text: "ORA-00942", Client: "c2"}), ids([]job.Execution{execs[3], execs[1]}); got != want {
		t.Errorf("text and client: got %s, want %s", got, want)
	}
	if got, want := search(ExecutionFilter{Text: "ora-00942", Since: execs[1].ScheduledAt}), ids([]job.Execution{execs[3], execs[1]}); got != want {
		t.Errorf("text since: got %s, want %s", got, want)
	}
	if got := search(ExecutionFilter{Text: "no such words"}); got != ids(nil) {
		t.Errorf("a text nothing holds: got %s", got)
	}
}

// BenchmarkCloseRound measures one round of the closer's store work, the read of the ended executions
// (OpenByID) and their removal (CloseExecutions), with the open set holding kept firings of 3,000 jobs
// an hour older than the round's (jobs that run hourly or daily): on FerretDB both scan the open set
// unless they look up by _id alone, the single form all of it, the partitioned form only the partition
// of the round's executions (each round's 500 are of one 10 s span, as a second's firings are).
func BenchmarkCloseRound(b *testing.B) {
	for _, form := range []string{OpenSetSingle, OpenSetPartitioned} {
		b.Run(form, func(b *testing.B) { benchCloseRound(b, form) })
	}
}

func benchCloseRound(b *testing.B, form string) {
	const kept, batch = 3000, 500
	s := openTestStoreWith(b, testURI(b), testDatabase(b), WithOpenSet(form))
	var execs []job.Execution
	var events []job.Event
	for i := range kept {
		e := execution(fmt.Sprint("kept-", i), t0.Add(-time.Hour), job.TriggerSchedule)
		execs = append(execs, e)
		events = append(events, acked(e, 1, e.ScheduledAt), finished(e, job.StateSucceeded, e.ScheduledAt))
	}
	mustInsert(b, s, execs, events)
	n := 0
	for b.Loop() {
		b.StopTimer()
		execs, events = execs[:0], events[:0]
		var ids []string
		for i := range batch {
			e := execution(fmt.Sprint("bench-", i), t0.Add(time.Duration(n/batch)*PartitionSpan), job.TriggerSchedule)
			n++
			execs = append(execs, e)
			ids = append(ids, e.ID)
			events = append(events, acked(e, 1, e.ScheduledAt), finished(e, job.StateSucceeded, e.ScheduledAt))
		}
		mustInsert(b, s, execs, events)
		b.StartTimer()
		got, err := s.OpenByID(b.Context(), ids)
		if err != nil || len(got) != batch {
			b.Fatalf("OpenByID: %d executions, %v", len(got), err)
		}
		if err := s.CloseExecutions(b.Context(), ids); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "closes/s")
}

// A new store keeps the open set and the audit log in databases of their own; one written by an earlier
// version keeps them where they were, and works there, until SplitDatabases moves them (with the servers
// stopped), which a split cut short finishes when run again.
func TestAStoreIsSplitWhenNewOrBySplitDatabases(t *testing.T) {
	t.Parallel()
	if !testStore(t).Split() {
		t.Fatal("a new store is not split")
	}
	ctx := t.Context()
	uri, db := testURI(t), testDatabase(t)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	pending := execution("j", at(0), job.TriggerSchedule)
	running := execution("j", at(time.Minute), job.TriggerManual)
	done := execution("k", at(90*time.Second), job.TriggerSchedule)

	// What an earlier version wrote: the open set and the audit log in the store's own database.
	raw, err := mongo.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = raw.Disconnect(context.Background()) })
	insert := func(coll string, docs ...any) {
		t.Helper()
		if _, err := raw.Database(db).Collection(coll).InsertMany(ctx, docs); err != nil {
			t.Fatal(err)
		}
	}
	insert(collOpenExecs, storedExecutionDoc(pending), storedExecutionDoc(running), storedExecutionDoc(done))
	insert(collOpenEvents, acked(running, 1, at(time.Minute+time.Second)))
	insert(collAudit, AuditEntry{ID: "a1", At: at(0), Who: "ops", Action: "POST /api/v1/jobs", Status: 201},
		AuditEntry{ID: "a2", At: at(time.Second), Who: "ops", Action: "DELETE /api/v1/jobs/{name}", Status: 200})

	s := openTestStore(t, uri, db)
	if s.Split() {
		t.Fatal("a store written by an earlier version was split by Open")
	}
	// It works where it is: an event and a revision recorded now are read with the rest.
	if _, err := s.InsertEvents(ctx, []job.Event{acked(done, 1, at(91*time.Second))}); err != nil {
		t.Fatal(err)
	}
	rev := Revision{Job: "j", Version: 1, Action: RevisionCreated, Spec: job.Spec{Name: "j", Version: 1, CreatedAt: t0}, At: t0, Who: "ops"}
	if errs := s.InsertRevisions(ctx, []Revision{rev}); errs[0] != nil {
		t.Fatal(errs[0])
	}
	// An entry of the audit log made now goes to its day's collection, beside the old single one.
	if err := s.InsertAudits(ctx, []AuditEntry{{ID: "a3", At: at(2 * time.Second), Who: "ops", Action: "PUT /api/v1/jobs/{name}", Status: 200}}); err != nil {
		t.Fatal(err)
	}
	check := func(s *Store, when string) {
		t.Helper()
		got, stray, err := s.ReadOpenSet(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if want := []job.Execution{pending, running, done}; ids(got) != ids(want) || len(stray) != 0 {
			t.Fatalf("open set %s =\n%s\nwant\n%s (stray %v)", when, ids(got), ids(want), stray)
		}
		wantState := map[string]job.State{pending.ID: job.StatePending, running.ID: job.StateRunning, done.ID: job.StateRunning}
		for _, e := range got {
			if e.State != wantState[e.ID] {
				t.Errorf("%s is %s %s, want %s", e.ID, e.State, when, wantState[e.ID])
			}
		}
		entries, err := s.ListAudit(ctx, "", AuditCursor{}, 10)
		if err != nil || len(entries) != 3 || entries[0].ID != "a3" || entries[1].ID != "a2" || entries[2].ID != "a1" {
			t.Fatalf("audit log %s = %+v, %v; want a3, a2, a1", when, entries, err)
		}
		if got, err := s.GetRevision(ctx, "j", 1); err != nil || got.Who != "ops" {
			t.Fatalf("revision 1 of j %s = %+v, %v", when, got, err)
		}
	}
	check(s, "before the split")

	// A split cut short before it marked the store: its copies, and one of an execution closed since.
	if _, err := copyCollection(ctx, s.db.Collection(collOpenExecs), raw.Database(db+OpenSuffix).Collection(collOpenExecs)); err != nil {
		t.Fatal(err)
	}
	closed := execution("j", at(-time.Minute), job.TriggerSchedule)
	if _, err := raw.Database(db+OpenSuffix).Collection(collOpenExecs).InsertOne(ctx, storedExecutionDoc(closed)); err != nil {
		t.Fatal(err)
	}
	// A process that opened the store before the split (paused, or away from ZooKeeper, while it ran).
	stale := openTestStore(t, uri, db)
	if changed, err := stale.LayoutChanged(ctx); err != nil || changed {
		t.Fatalf("LayoutChanged before the split = %v, %v", changed, err)
	}
	n, err := s.SplitDatabases(ctx)
	if err != nil || n != 9 {
		t.Fatalf("SplitDatabases = %d, %v; want the 9 documents moved", n, err)
	}
	check(s, "after the split")
	if changed, err := stale.LayoutChanged(ctx); err != nil || !changed {
		t.Fatalf("LayoutChanged of a store opened before the split = %v, %v; want true", changed, err)
	}
	if changed, err := s.LayoutChanged(ctx); err != nil || changed {
		t.Fatalf("LayoutChanged of the store that split = %v, %v; want false", changed, err)
	}
	names, err := s.db.ListCollectionNames(ctx, bson.D{{Key: "name", Value: bson.D{{Key: "$in", Value: []string{collOpenExecs, collOpenEvents, collAudit, auditDayName(t0), collRevisions}}}}})
	if err != nil || len(names) != 0 {
		t.Errorf("the store's own database after the split still has %v (%v)", names, err)
	}
	again := openTestStore(t, uri, db)
	if !again.Split() {
		t.Fatal("a split store opened again is not split")
	}
	check(again, "opened again after the split")
	// A split cut short after it marked the store, before it dropped the old collections: run again, it
	// drops them and copies nothing back.
	insert(collOpenExecs, storedExecutionDoc(closed))
	if n, err := again.SplitDatabases(ctx); err != nil || n != 0 {
		t.Fatalf("SplitDatabases of a split store = %d, %v; want nothing copied", n, err)
	}
	check(again, "split again")
	if names, err := again.db.ListCollectionNames(ctx, bson.D{{Key: "name", Value: collOpenExecs}}); err != nil || len(names) != 0 {
		t.Errorf("the old open set after the second split: %v (%v); want it dropped", names, err)
	}
}

// Servers opening a new store at once all find it split, whichever inserts the layout document; a
// client's fallback queue written before any server ran leaves it new.
func TestServersOpeningANewStoreAtOnceAgreeItIsSplit(t *testing.T) {
	t.Parallel()
	uri, db := testURI(t), testDatabase(t)
	raw, err := mongo.Connect(options.Client().ApplyURI(uri))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = raw.Disconnect(context.Background()) })
	if _, err := raw.Database(db).Collection(collFallback).InsertOne(t.Context(), bson.D{{Key: "_id", Value: "spooled"}}); err != nil {
		t.Fatal(err)
	}
	stores := make([]*Store, 4)
	errs := make([]error, len(stores))
	var wg sync.WaitGroup
	for i := range stores {
		wg.Go(func() { stores[i], errs[i] = Open(t.Context(), uri, db) })
	}
	wg.Wait()
	for i, s := range stores {
		switch {
		case errs[i] != nil:
			t.Errorf("store %d: %v", i, errs[i])
		case !s.Split():
			t.Errorf("store %d opened at once is not split", i)
		}
		if s != nil {
			t.Cleanup(func() { _ = s.Close(context.Background()) })
		}
	}
}
