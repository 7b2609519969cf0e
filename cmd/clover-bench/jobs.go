package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clover-sched/clover/integration"
	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/store"
)

// createWorkers is how many jobs are created at once: enough to keep FerretDB busy on a small machine.
const createWorkers = 8

// resyncEvery is how often the leader reloads every job from the store (server/leader.go): a job written
// straight into the store starts firing at most this long after it is written.
const resyncEvery = 15 * time.Second

// creation says how a scenario's jobs were made.
type creation struct {
	viaAPI, viaStore   int
	apiTook, storeTook time.Duration
	started, finished  time.Time
	switched           bool // the API was too slow for the budget: the rest went straight into the store
}

func (cr creation) took() time.Duration { return cr.finished.Sub(cr.started) }

func (cr creation) String() string {
	var parts []string
	if cr.viaAPI > 0 {
		parts = append(parts, fmt.Sprintf("%s via the API (POST /api/v1/jobs) at %s", fmtInt(int64(cr.viaAPI)),
			fmtRate(float64(cr.viaAPI)/cr.apiTook.Seconds())))
	}
	if cr.viaStore > 0 {
		parts = append(parts, fmt.Sprintf("%s straight into the store (store.CreateJob) at %s", fmtInt(int64(cr.viaStore)),
			fmtRate(float64(cr.viaStore)/cr.storeTook.Seconds())))
	}
	return fmt.Sprintf("%s; %s in all", strings.Join(parts, ", then "), cr.took().Round(100*time.Millisecond))
}

// createJobs creates specs with createWorkers in parallel. Through the API while it keeps up: when the
// recent API rate says the whole set would take longer than apiBudget, the remaining jobs go straight
// into the store (apiBudget 0: all of them), where the leader's periodic resync finds them within
// resyncEvery. A job written straight is stored as the API would store it.
//
// Concurrency: workers take indexes from next and read viaStore before each job; the monitor loop on the
// calling goroutine is the only writer of viaStore.
func createJobs(ctx context.Context, c *integration.Cluster, leader *integration.Member, specs []job.Spec, apiBudget time.Duration) (creation, error) {
	cr := creation{started: time.Now()}
	var (
		next               atomic.Int64
		viaStore           atomic.Bool
		apiDone, storeDone atomic.Int64
		switchAt           atomic.Int64 // unix nanos of the switch to the store
		errOnce            sync.Once
		firstErr           error
		wg                 sync.WaitGroup
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if apiBudget <= 0 {
		viaStore.Store(true)
		switchAt.Store(cr.started.UnixNano())
	}
	st := c.Store()
	fail := func(err error) {
		errOnce.Do(func() { firstErr = err; cancel() })
	}
	for range createWorkers {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= len(specs) {
					return
				}
				if viaStore.Load() {
					if err := storeCreate(ctx, st, specs[i]); err != nil {
						fail(err)
						return
					}
					storeDone.Add(1)
					continue
				}
				if err := apiCreate(c, leader, specs[i]); err != nil {
					fail(err)
					return
				}
				apiDone.Add(1)
			}
		})
	}

	// Watch the API rate over the last two seconds and switch when it cannot finish within the budget.
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	type point struct {
		at time.Time
		n  int64
	}
	history := []point{{cr.started, 0}}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
watch:
	for {
		select {
		case <-done:
			break watch
		case now := <-tick.C:
			if viaStore.Load() {
				continue
			}
			n := apiDone.Load()
			history = append(history, point{now, n})
			for len(history) > 2 && now.Sub(history[1].at) >= 2*time.Second {
				history = history[1:]
			}
			span := now.Sub(history[0].at)
			if now.Sub(cr.started) < 2*time.Second || span <= 0 {
				continue
			}
			rate := float64(n-history[0].n) / span.Seconds()
			remaining := float64(len(specs)) - float64(n)
			if rate <= 0 || now.Sub(cr.started)+time.Duration(remaining/rate*float64(time.Second)) > apiBudget {
				switchAt.Store(now.UnixNano())
				viaStore.Store(true)
				cr.switched = true
			}
		}
	}
	cr.finished = time.Now()
	if firstErr != nil {
		return cr, firstErr
	}
	cr.viaAPI, cr.viaStore = int(apiDone.Load()), int(storeDone.Load())
	if sw := switchAt.Load(); sw != 0 {
		at := time.Unix(0, sw)
		cr.apiTook, cr.storeTook = at.Sub(cr.started), cr.finished.Sub(at)
	} else {
		cr.apiTook = cr.took()
	}
	return cr, nil
}

// apiCreate is POST /api/v1/jobs, retried on answers that say "not now" (no leader, leader busy).
func apiCreate(c *integration.Cluster, m *integration.Member, spec job.Spec) error {
	for attempt := 0; ; attempt++ {
		err := c.Call(m, http.MethodPost, "/api/v1/jobs", spec, nil)
		var ae *integration.APIError
		isAPI := errors.As(err, &ae)
		switch {
		case err == nil:
			return nil
		case isAPI && ae.Status == http.StatusConflict && attempt > 0:
			return nil // an earlier attempt was stored but its answer lost
		case attempt < 3 && (!isAPI || ae.Status >= 500):
			time.Sleep(time.Duration(attempt+1) * 200 * time.Millisecond)
		default:
			return fmt.Errorf("create job %s through the API: %w", spec.Name, err)
		}
	}
}

// storeCreate stores spec as the API's createJob would.
func storeCreate(ctx context.Context, st *store.Store, spec job.Spec) error {
	now := time.Now().UTC()
	spec.Source, spec.Version = "api", 1
	spec.CreatedAt, spec.UpdatedAt, spec.ActiveSince = now, now, now
	if err := st.CreateJob(ctx, spec); err != nil && !errors.Is(err, store.ErrExists) {
		return err
	}
	return nil
}
