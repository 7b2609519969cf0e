package store

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, testenv.KeptGoroutines()) }

// mongoURIEnv names a real MongoDB to run the suite against instead of a FerretDB per test.
const mongoURIEnv = "CLOVER_TEST_MONGO_URI"

// testURI is the server a test runs against: CLOVER_TEST_MONGO_URI, or a FerretDB of its own.
func testURI(tb testing.TB) string {
	tb.Helper()
	if uri := os.Getenv(mongoURIEnv); uri != "" {
		return uri
	}
	return testenv.StartFerretDB(tb).URI
}

// testStore opens a store on a database of the test's own, dropped at the end on a shared server.
func testStore(tb testing.TB) *Store {
	tb.Helper()
	return openTestStore(tb, testURI(tb), testDatabase(tb))
}

// openSetEnv names the form of open set the tests' stores are made with (make test runs this package's
// tests in both).
const openSetEnv = "CLOVER_TEST_OPEN_SET"

// openTestStore opens database, closed (and on a shared server dropped) at the end.
func openTestStore(tb testing.TB, uri, db string) *Store {
	tb.Helper()
	return openTestStoreWith(tb, uri, db, WithOpenSet(os.Getenv(openSetEnv)))
}

// openTestStoreWith opens database with opts, as openTestStore does.
func openTestStoreWith(tb testing.TB, uri, db string, opts ...Option) *Store {
	tb.Helper()
	s, err := Open(tb.Context(), uri, db, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx := context.Background()
		if os.Getenv(mongoURIEnv) != "" {
			for _, db := range Databases(db) {
				if err := s.client.Database(db).Drop(ctx); err != nil {
					tb.Errorf("drop %s: %v", db, err)
				}
			}
		}
		if err := s.Close(ctx); err != nil {
			tb.Error(err)
		}
	})
	return s
}

var notInDBName = regexp.MustCompile(`[^A-Za-z0-9_]+`)

// testDatabase is a database name for the test, unique even on a server shared between runs.
func testDatabase(tb testing.TB) string {
	name := notInDBName.ReplaceAllString(tb.Name(), "_")
	return fmt.Sprintf("t_%.40s_%s", name, rand.Text()[:8])
}

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// execution is a firing of jobName at scheduled, fired a little later with a time that loses precision
// when stored.
func execution(jobName string, scheduled time.Time, trigger job.Trigger) job.Execution {
	id := job.ExecutionID(jobName, scheduled)
	if trigger == job.TriggerManual {
		id = job.ManualExecutionID(jobName, scheduled.Format("150405"))
	}
	return job.Execution{
		ID: id, Job: jobName, ScheduledAt: scheduled, FiredAt: scheduled.Add(1500*time.Microsecond + 7),
		Trigger: trigger, Epoch: 3, Server: "s1",
		Handler: job.HandlerShell, Params: map[string]string{"command": "true"}, Timeout: job.Duration(time.Minute),
	}
}

func acked(e job.Execution, attempt int, at time.Time) job.Event {
	return job.Event{
		ID: job.EventID(e.ID, job.EventAcked, attempt), ExecID: e.ID, Job: e.Job,
		Kind: job.EventAcked, Attempt: attempt, Client: "c1", At: at,
	}
}

func finished(e job.Execution, status job.State, at time.Time) job.Event {
	return job.Event{
		ID: job.EventID(e.ID, job.EventFinished, 0), ExecID: e.ID, Job: e.Job, Kind: job.EventFinished,
		Client: "c1", At: at, Result: &job.Result{Status: status, Duration: job.Duration(time.Second), Output: "ok"},
	}
}

func mustInsert(tb testing.TB, s *Store, execs []job.Execution, events []job.Event) {
	tb.Helper()
	if dups, err := s.InsertExecutions(tb.Context(), execs); err != nil || len(dups) > 0 {
		tb.Fatalf("InsertExecutions: duplicates %v, err %v", dups, err)
	}
	if dups, err := s.InsertEvents(tb.Context(), events); err != nil || dups > 0 {
		tb.Fatalf("InsertEvents: duplicates %d, err %v", dups, err)
	}
}

func ids(execs []job.Execution) string {
	var b strings.Builder
	for i, e := range execs {
		if i > 0 {
			b.WriteString(" ")
		}
		b.WriteString(e.ID)
	}
	return b.String()
}

func TestOpenUnreachableFailsFast(t *testing.T) {
	t.Parallel()
	uri := fmt.Sprintf("mongodb://127.0.0.1:%d/", closedPort(t))
	start := time.Now()
	s, err := Open(t.Context(), uri, "clover")
	if err == nil {
		s.Close(context.Background())
		t.Fatal("Open of a closed port succeeded")
	}
	if took := time.Since(start); took > DefaultServerSelectionTimeout+3*time.Second {
		t.Errorf("Open took %s to fail", took)
	}
	if !strings.HasPrefix(err.Error(), "store: ping:") || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("error %q does not say the ping was refused", err)
	}
}

// closedPort returns a loopback port that refuses connections until the test ends: it is bound, so no
// server started meanwhile (FreePort may hand out the same port) can take it, but not listening.
func closedPort(t *testing.T) int {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return sa.(*syscall.SockaddrInet4).Port
}

func TestOpenTwice(t *testing.T) {
	t.Parallel()
	uri, db := testURI(t), testDatabase(t)
	for i := range 2 {
		s, err := Open(t.Context(), uri, db)
		if err != nil {
			t.Fatalf("open %d: %v", i+1, err)
		}
		if err := s.Ping(t.Context()); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
}

func TestClaimEpoch(t *testing.T) {
	t.Parallel()
	type claim struct {
		epoch  int64
		server string
		err    error
	}
	tests := map[string]struct {
		claims     []claim
		wantEpoch  int64
		wantServer string
	}{
		"first claim": {
			claims:    []claim{{5, "a", nil}},
			wantEpoch: 5, wantServer: "a",
		},
		"higher wins": {
			claims:    []claim{{1, "a", nil}, {2, "b", nil}, {7, "a", nil}},
			wantEpoch: 7, wantServer: "a",
		},
		"lower is fenced": {
			claims:    []claim{{4, "b", nil}, {3, "a", ErrFenced}, {3, "b", ErrFenced}},
			wantEpoch: 4, wantServer: "b",
		},
		"same epoch same server is idempotent": {
			claims:    []claim{{2, "a", nil}, {2, "a", nil}, {2, "a", nil}},
			wantEpoch: 2, wantServer: "a",
		},
		"same epoch other server is fenced": {
			claims:    []claim{{2, "a", nil}, {2, "b", ErrFenced}},
			wantEpoch: 2, wantServer: "a",
		},
		"deposed leader re-checking is fenced": {
			claims:    []claim{{2, "a", nil}, {3, "b", nil}, {2, "a", ErrFenced}},
			wantEpoch: 3, wantServer: "b",
		},
	}
	s := testStore(t)
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if err := s.cluster.Drop(t.Context()); err != nil {
				t.Fatal(err)
			}
			if epoch, server, err := s.LeaderEpoch(t.Context()); err != nil || epoch != 0 || server != "" {
				t.Fatalf("LeaderEpoch with no claim = %d, %q, %v; want 0, \"\", nil", epoch, server, err)
			}
			for _, c := range tt.claims {
				if err := s.ClaimEpoch(t.Context(), c.epoch, c.server); !errors.Is(err, c.err) || (err == nil) != (c.err == nil) {
					t.Errorf("ClaimEpoch(%d, %s) = %v, want %v", c.epoch, c.server, err, c.err)
				}
			}
			epoch, server, err := s.LeaderEpoch(t.Context())
			if err != nil || epoch != tt.wantEpoch || server != tt.wantServer {
				t.Errorf("LeaderEpoch = %d, %q, %v; want %d, %q", epoch, server, err, tt.wantEpoch, tt.wantServer)
			}
		})
	}
}

// TestClaimEpochConcurrent claims many epochs at once. A conditional update ({_id: "leader", epoch: {$lt: e}}
// with upsert) fails this on FerretDB 1.24 in most rounds: a lower epoch is written after a higher one.
func TestClaimEpochConcurrent(t *testing.T) {
	t.Parallel()
	s := testStore(t)
	const rounds, claimers = 10, 16
	for r := range rounds {
		base := int64(r * claimers)
		errs := make(chan error, claimers)
		for i := range claimers {
			go func() { errs <- s.ClaimEpoch(t.Context(), base+int64(i)+1, fmt.Sprint("server-", i)) }()
		}
		var won int
		for range claimers {
			switch err := <-errs; {
			case err == nil:
				won++
			case !errors.Is(err, ErrFenced):
				t.Fatal(err)
			}
		}
		epoch, server, err := s.LeaderEpoch(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if want := base + claimers; epoch != want || server != fmt.Sprint("server-", claimers-1) {
			t.Fatalf("round %d: leader is epoch %d of %s, want %d", r, epoch, server, want)
		}
		if won == 0 {
			t.Fatalf("round %d: no claim succeeded", r)
		}
		// Whoever won before, only the highest epoch holds now.
		for i := range claimers - 1 {
			if err := s.ClaimEpoch(t.Context(), base+int64(i)+1, fmt.Sprint("server-", i)); !errors.Is(err, ErrFenced) {
				t.Fatalf("round %d: re-claim of epoch %d = %v, want ErrFenced", r, base+int64(i)+1, err)
			}
		}
	}
}
