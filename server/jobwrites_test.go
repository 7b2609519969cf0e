package server

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The room follows the creations and deletions made through it between counts, and counts again when it
// may be wrong: first use, a new term, a write of unknown outcome, a minute gone, or a refusal on an old
// count.
func TestJobRoomCountsOnlyWhenItMayBeWrong(t *testing.T) {
	t.Parallel()
	var (
		stored int64 // what the store holds
		counts int
	)
	count := func(context.Context) (int64, error) { counts++; return stored, nil }
	var r jobRoom
	now := t0
	reserve := func(epoch int64, want int) int {
		t.Helper()
		got, err := r.reserve(t.Context(), count, 10, epoch, now, want)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}

	stored = 4
	if got := reserve(1, 3); got != 3 || counts != 1 {
		t.Fatalf("first reservation: %d of 3 after %d counts; want 3 after 1", got, counts)
	}
	stored += 2
	r.settle(3, 2, false) // one of the three existed already
	if got := reserve(1, 5); got != 4 || counts != 1 {
		t.Fatalf("reservation past the limit: %d of 5 after %d counts; want 4 (10 - 6 stored) on the kept count", got, counts)
	}
	r.settle(4, 0, false)
	now = now.Add(refuseOnCountWithin)
	stored = 2 // deleted behind the room's back
	if got := reserve(1, 7); got != 7 || counts != 2 {
		t.Fatalf("reservation refused on an old count: %d of 7 after %d counts; want 7 after a recount", got, counts)
	}
	r.settle(7, 0, true) // unknown outcome
	if reserve(1, 1); counts != 3 {
		t.Fatalf("after a write of unknown outcome: %d counts, want 3", counts)
	}
	r.settle(1, 0, false)
	if reserve(2, 1); counts != 4 {
		t.Fatalf("in a new term: %d counts, want 4", counts)
	}
	r.settle(1, 0, false)
	now = now.Add(recountEvery)
	if reserve(2, 1); counts != 5 {
		t.Fatalf("a minute later: %d counts, want 5", counts)
	}
	r.settle(1, 1, false)
	r.deleted(3, false)
	if got := reserve(2, 10); got != 10 || counts != 5 {
		t.Fatalf("after deletions: %d of 10 after %d counts; want 10 (2 + 1 - 3 stored) without a count", got, counts)
	}
}

// A recount waits for the creations under way: one made while an insert is in flight could count it or
// not, and the room would drift by it.
func TestJobRoomRecountWaitsForCreationsUnderWay(t *testing.T) {
	t.Parallel()
	var stored atomic.Int64
	count := func(context.Context) (int64, error) { return stored.Load(), nil }
	var r jobRoom
	if got, err := r.reserve(t.Context(), count, 10, 1, t0, 1); err != nil || got != 1 {
		t.Fatalf("reserve: %d, %v", got, err)
	}
	done := make(chan int)
	go func() {
		got, err := r.reserve(context.Background(), count, 2, 2, t0, 2) // a new term: recount
		if err != nil {
			t.Error(err)
		}
		done <- got
	}()
	select {
	case got := <-done:
		t.Fatalf("the recount did not wait for the creation under way (got %d)", got)
	case <-time.After(50 * time.Millisecond):
	}
	stored.Add(1)
	r.settle(1, 1, false)
	if got := <-done; got != 1 {
		t.Fatalf("after the creation settled: %d reserved, want 1 (limit 2, 1 stored)", got)
	}
}

// Every item is written once, each caller gets its own items' results, and no two writes run at once.
func TestGroupCommitWritesEachItemOnceAndAnswersItsCaller(t *testing.T) {
	t.Parallel()
	var (
		g       groupCommit[int]
		mu      sync.Mutex
		written = map[int]int{}
		running atomic.Int32
		batches atomic.Int32
	)
	flush := func(_ context.Context, items []int) []error {
		if running.Add(1) != 1 {
			t.Error("two writes at once")
		}
		defer running.Add(-1)
		batches.Add(1)
		time.Sleep(time.Millisecond) // a store round trip, during which others queue
		errs := make([]error, len(items))
		mu.Lock()
		defer mu.Unlock()
		for i, it := range items {
			written[it]++
			if it%7 == 0 {
				errs[i] = fmt.Errorf("refused %d", it)
			}
		}
		return errs
	}
	var wg sync.WaitGroup
	const callers, each = 16, 50
	for c := range callers {
		wg.Go(func() {
			for k := range each {
				items := []int{c*1000 + 2*k, c*1000 + 2*k + 1}
				errs := g.write(t.Context(), flush, items)
				mu.Lock()
				for i, it := range items {
					if written[it] != 1 {
						t.Errorf("item %d answered after %d writes of it, want 1", it, written[it])
					}
					if want := it%7 == 0; (errs[i] != nil) != want || (want && errs[i].Error() != fmt.Sprintf("refused %d", it)) {
						t.Errorf("item %d: error %v, want another item's? (refused: %v)", it, errs[i], want)
					}
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(written) != callers*each*2 {
		t.Errorf("%d items written, want %d", len(written), callers*each*2)
	}
	t.Logf("%d items in %d writes", len(written), batches.Load())
}

// Writers of overlapping sets of jobs never deadlock, and hold a job alone.
func TestJobLocksSerializeEachJob(t *testing.T) {
	t.Parallel()
	var (
		l      jobLocks
		holder [40]atomic.Int32
		wg     sync.WaitGroup
	)
	for w := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for range 300 {
				var names []string
				var idx []int
				for range 1 + rng.IntN(30) {
					i := rng.IntN(len(holder))
					names, idx = append(names, fmt.Sprintf("job-%d", i)), append(idx, i)
				}
				unlock := l.lock(names...)
				for _, i := range idx {
					if h := holder[i].Load(); h != 0 && h != int32(w+1) {
						t.Errorf("job-%d held by writer %d and %d at once", i, h-1, w)
					}
					holder[i].Store(int32(w + 1))
				}
				for _, i := range idx {
					holder[i].Store(0)
				}
				unlock()
			}
		})
	}
	wg.Wait()
}
