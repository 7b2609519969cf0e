package store

import (
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/clover-sched/clover/internal/job"
)

// A partitioned store keeps each execution's copy and events in its id's partition, and every open-set
// read, close and count goes across partitions as the single layout's does across its one pair.
func TestThePartitionedOpenSetKeepsEachExecutionInItsPartition(t *testing.T) {
	t.Parallel()
	uri, db := testURI(t), testDatabase(t)
	s := openTestStoreWith(t, uri, db, WithOpenSet(OpenSetPartitioned))
	if s.OpenSetForm() != OpenSetPartitioned {
		t.Fatalf("form = %s, want partitioned", s.OpenSetForm())
	}
	early := execution("j", t0, job.TriggerSchedule)                 // partition of t0
	late := execution("j", t0.Add(time.Minute), job.TriggerSchedule) // a later one
	manual := execution("k", t0.Add(-time.Hour), job.TriggerManual)  // untimed
	batch := execution("n", t0, job.TriggerSchedule)                 // a batch run's
	batch.ID = job.BatchExecutionID(BatchRunID("eod", "2030-01-02"), "load", "", 1)
	mustInsert(t, s, []job.Execution{early, late, manual, batch}, []job.Event{
		acked(early, 1, t0.Add(time.Second)), finished(early, job.StateSucceeded, t0.Add(2*time.Second)),
		acked(late, 1, t0.Add(time.Minute+time.Second)),
		acked(manual, 1, t0.Add(time.Second)), finished(manual, job.StateFailed, t0.Add(2*time.Second)),
		acked(batch, 1, t0.Add(time.Second)),
	})

	// Where the documents are.
	raw := s.openExecs.Database()
	for id, part := range map[string]string{early.ID: "open_p20300102T030400", late.ID: "open_p20300102T030500", manual.ID: "open_untimed", batch.ID: "open_b_eod~2030-01-02"} {
		for _, where := range []struct {
			coll   string
			filter bson.D
		}{{part, bson.D{{Key: "_id", Value: id}}}, {eventsCollection(part), bson.D{{Key: "exec_id", Value: id}}}} {
			n, err := raw.Collection(where.coll).CountDocuments(t.Context(), where.filter)
			if err != nil || n == 0 {
				t.Errorf("%s has %d documents of %s (%v), want its copy and events there", where.coll, n, id, err)
			}
		}
	}
	if names, err := raw.ListCollectionNames(t.Context(), bson.D{}); err != nil || slices.ContainsFunc(names, func(n string) bool { return n == collOpenExecs || n == collOpenEvents }) {
		t.Errorf("collections %v (%v): the single layout's pair was made too", names, err)
	}

	states := func() map[string]job.State {
		t.Helper()
		execs, stray, err := s.ReadOpenSet(t.Context())
		if err != nil || len(stray) != 0 {
			t.Fatalf("ReadOpenSet: stray %v, %v", stray, err)
		}
		out := map[string]job.State{}
		for _, e := range execs {
			out[e.ID] = e.State
		}
		return out
	}
	want := map[string]job.State{early.ID: job.StateSucceeded, late.ID: job.StateRunning, manual.ID: job.StateFailed, batch.ID: job.StateRunning}
	if got := states(); !maps.Equal(got, want) {
		t.Fatalf("open set = %v, want %v", got, want)
	}
	got, err := s.OpenByID(t.Context(), []string{batch.ID, early.ID, manual.ID, "j@nope"})
	if err != nil || len(got) != 3 {
		t.Fatalf("OpenByID across partitions = %s, %v; want three", ids(got), err)
	}
	if z, err := s.ExecutionSizes(t.Context()); err != nil || z.OpenExecutions != 4 || z.OpenEvents != 6 {
		t.Fatalf("sizes = %+v, %v; want 4 open executions, 6 events", z, err)
	}
	finishedIDs, err := s.FinishedBetween(t.Context(), t0, t0.Add(time.Minute))
	if err != nil || !finishedIDs[early.ID] || !finishedIDs[manual.ID] || len(finishedIDs) != 2 {
		t.Fatalf("FinishedBetween = %v, %v; want %s and %s", finishedIDs, err, early.ID, manual.ID)
	}

	// Closing ids of several partitions takes out those, and only those.
	closeInto(t, s, s.NewHistoryWriter(3, time.Hour, 0), early.ID, manual.ID)
	delete(want, early.ID)
	delete(want, manual.ID)
	if got := states(); !maps.Equal(got, want) {
		t.Fatalf("after closing across partitions: open set = %v, want %v", got, want)
	}
	for _, id := range []string{early.ID, manual.ID} {
		if e, err := s.GetExecution(t.Context(), id); err != nil || !e.State.Terminal() {
			t.Fatalf("closed %s = %s, %v; want it in the history, ended", id, e.State, err)
		}
	}

	// A firing made again after its close meets its fence and does not come back, in its partition too.
	again := early
	again.Epoch = 9
	if dups, err := s.InsertExecutions(t.Context(), []job.Execution{again}); err != nil || !slices.Equal(dups, []string{early.ID}) {
		t.Fatalf("InsertExecutions again = %v, %v; want a duplicate", dups, err)
	}
	if open, err := s.OpenByID(t.Context(), []string{early.ID}); err != nil || len(open) != 0 {
		t.Fatalf("after the second firing: %s, %v; want nothing open", ids(open), err)
	}
	// An event re-sent after the close is a stray, found in its partition and closed there.
	if _, err := s.InsertEvents(t.Context(), []job.Event{finished(early, job.StateSucceeded, t0.Add(2*time.Second))}); err != nil {
		t.Fatal(err)
	}
	if _, stray, err := s.ReadOpenSet(t.Context()); err != nil || !slices.Equal(stray, []string{early.ID}) {
		t.Fatalf("stray = %v, %v; want [%s]", stray, err, early.ID)
	}
	if err := s.CloseExecutions(t.Context(), []string{early.ID}); err != nil {
		t.Fatal(err)
	}

	// The form is the store's: a server asking for another keeps it.
	again2 := openTestStoreWith(t, uri, db, WithOpenSet(OpenSetSingle))
	if again2.OpenSetForm() != OpenSetPartitioned {
		t.Fatalf("reopened as %s, want the store's own form", again2.OpenSetForm())
	}
	if got := len(func() []job.Execution { e, _, _ := again2.ReadOpenSet(t.Context()); return e }()); got != len(want) {
		t.Fatalf("the reopened store reads %d open executions, want %d", got, len(want))
	}
}

// A form this version does not know (a newer one's) is refused, not read as the single layout.
func TestAnOpenSetFormNotKnownIsRefused(t *testing.T) {
	t.Parallel()
	uri, db := testURI(t), testDatabase(t)
	s := openTestStoreWith(t, uri, db)
	if _, err := s.cluster.UpdateOne(t.Context(), bson.D{{Key: "_id", Value: layoutDoc}}, bson.D{{Key: "$set", Value: bson.D{{Key: "open_set", Value: "tiered"}}}}); err != nil {
		t.Fatal(err)
	}
	if other, err := Open(t.Context(), uri, db); err == nil || !strings.Contains(err.Error(), `"tiered"`) {
		if err == nil {
			_ = other.Close(t.Context())
		}
		t.Fatalf("Open = %v, want a refusal naming the form", err)
	}
}

// A form misspelt by the caller is refused before anything is written: the store stays usable.
func TestAnUnknownAskedFormLeavesANewStoreUsable(t *testing.T) {
	t.Parallel()
	uri, db := testURI(t), testDatabase(t)
	if s, err := Open(t.Context(), uri, db, WithOpenSet("Partitioned")); err == nil {
		_ = s.Close(t.Context())
		t.Fatal("Open with an unknown form succeeded")
	}
	s := openTestStoreWith(t, uri, db)
	if s.OpenSetForm() != OpenSetSingle {
		t.Fatalf("form %s, want single", s.OpenSetForm())
	}
}

// A version before the partitioned form reads the layout's split as a boolean: on a partitioned store
// that read fails, so such a version refuses the store instead of reading an empty open set.
func TestAPartitionedStoreCannotBeReadAsASingleOne(t *testing.T) {
	t.Parallel()
	s := openTestStoreWith(t, testURI(t), testDatabase(t), WithOpenSet(OpenSetPartitioned))
	var before struct {
		Split bool `bson:"split"`
	}
	if err := s.cluster.FindOne(t.Context(), bson.D{{Key: "_id", Value: layoutDoc}}).Decode(&before); err == nil {
		t.Fatalf("the layout decodes as an earlier version reads it (split %v)", before.Split)
	}
	if changed, err := s.LayoutChanged(t.Context()); err != nil || changed {
		t.Fatalf("LayoutChanged = %v, %v; want false", changed, err)
	}
}

// SplitDatabases on a partitioned store (split already) keeps its form.
func TestSplitDatabasesKeepsThePartitionedForm(t *testing.T) {
	t.Parallel()
	s := openTestStoreWith(t, testURI(t), testDatabase(t), WithOpenSet(OpenSetPartitioned))
	e := execution("nightly", t0, job.TriggerSchedule)
	mustInsert(t, s, []job.Execution{e}, []job.Event{acked(e, 1, t0)})
	if _, err := s.SplitDatabases(t.Context()); err != nil {
		t.Fatal(err)
	}
	got, _, err := s.ReadOpenSet(t.Context())
	if s.OpenSetForm() != OpenSetPartitioned || len(got) != 1 {
		t.Fatalf("after SplitDatabases: form %s, %d open (%v); want partitioned, 1", s.OpenSetForm(), len(got), err)
	}
}
