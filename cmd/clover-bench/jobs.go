package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/clover-sched/clover/api"
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

// runWrites: job writes through the API of 1 server, as an operator's tooling makes them: create, update
// and delete of n jobs, one request a job, with 1 caller and with 8; then the same n through the bulk
// endpoint (POST /api/v1/jobs:batch) in requests of bulkChunk. The jobs fire daily at 03:00, so that
// firing takes no share of the machine while the writes are measured.
func runWrites(t *T, s settings, out io.Writer) {
	n := s.jobsOr(1000)
	c := startCluster(t, integration.Options{Servers: 1})
	leader, _ := c.WaitLeader(30 * time.Second)
	w := newWriter(leader.API)
	defer w.hc.CloseIdleConnections()
	tb := newTable(fmt.Sprintf("writes: %s jobs created, updated and deleted through the API of 1 server", fmtInt(int64(n))),
		"callers", "create", "update", "delete")
	for _, callers := range []int{1, 8} {
		specs := writeSpecs(fmt.Sprintf("w%d", callers), n)
		t.Progressf("%d caller(s): creating, updating, deleting %d jobs one request each", callers, n)
		before := sampleCPU()
		create, err := timed(callers, n, func(i int) error { return w.call(http.MethodPost, "/api/v1/jobs", specs[i]) })
		if err != nil {
			t.Fatalf("create: %v", err)
		}
		tb.note("CPUs busy creating with %d caller(s): %s", callers, cpuUse(before, sampleCPU()))
		update, err := timed(callers, n, func(i int) error {
			spec := changed(specs[i])
			return w.call(http.MethodPut, "/api/v1/jobs/"+spec.Name, spec)
		})
		if err != nil {
			t.Fatalf("update: %v", err)
		}
		del, err := timed(callers, n, func(i int) error { return w.call(http.MethodDelete, "/api/v1/jobs/"+specs[i].Name, nil) })
		if err != nil {
			t.Fatalf("delete: %v", err)
		}
		tb.add(fmt.Sprint(callers), fmtRate(create), fmtRate(update), fmtRate(del))
	}
	specs := writeSpecs("wb", n)
	t.Progressf("bulk: creating, updating, deleting %d jobs in requests of %d", n, bulkChunk)
	row := []string{fmt.Sprintf("1, bulk of %d", bulkChunk)}
	requests := (n + bulkChunk - 1) / bulkChunk
	for _, op := range []string{"create", "update", "delete"} {
		rate, err := timed(1, requests, func(i int) error {
			return w.bulk(op, specs[i*bulkChunk:min((i+1)*bulkChunk, n)])
		})
		if err != nil {
			if strings.Contains(err.Error(), "HTTP 404") {
				tb.note("bulk %s: the binary under test does not serve POST /api/v1/jobs:batch", op)
			} else {
				tb.note("bulk %s: %v", op, err)
			}
			row = append(row, "-")
			continue
		}
		row = append(row, fmtRate(rate*float64(n)/float64(requests)))
	}
	tb.add(row...)
	tb.note("rates in jobs a second; each caller waits for its answer before its next request (keep-alive connections)")
	tb.note("aim (issue 14): create >= 300/s with 1 caller and >= 800/s with 8; Dkron on the same machine: create 272/s and 665-783/s, delete 665-867/s")
	tb.print(out)
}

// cpuUse says how many CPUs each kind of process kept busy between two samples, and the whole machine.
func cpuUse(before, after cpuSample) string {
	secs := after.at.Sub(before.at).Seconds()
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(after.byKind)) {
		parts = append(parts, fmt.Sprintf("%s %.2f", k, (after.byKind[k]-before.byKind[k])/clockTick/secs))
	}
	return fmt.Sprintf("%s; machine %.2f of %d", strings.Join(parts, ", "), (after.machineBusy-before.machineBusy)/clockTick/secs, runtime.NumCPU())
}

// bulkChunk is how many operations the bench sends in one bulk request.
const bulkChunk = 1000

func writeSpecs(prefix string, n int) []job.Spec {
	specs := make([]job.Spec, n)
	for i := range specs {
		specs[i] = job.Spec{Name: fmt.Sprintf("%s-%05d", prefix, i+1), Schedule: "0 0 3 * * ?", Handler: job.HandlerShell,
			Params: map[string]string{"command": "true"}}
	}
	return specs
}

// changed is spec as an update changes it: another command, conditional on version 1.
func changed(spec job.Spec) job.Spec {
	spec.Params = map[string]string{"command": "true # changed"}
	spec.Version = 1
	return spec
}

// timed runs do(0..n-1) with callers goroutines and returns the rate, in calls a second.
func timed(callers, n int, do func(i int) error) (float64, error) {
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	begun := time.Now()
	for range callers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := do(i); err != nil {
					errOnce.Do(func() { firstErr = err })
					next.Store(int64(n))
					return
				}
			}
		})
	}
	wg.Wait()
	return float64(n) / time.Since(begun).Seconds(), firstErr
}

// writer calls one server's API with connections kept for up to 16 callers (http.DefaultClient keeps 2
// per host: 8 callers would open a connection for most requests).
type writer struct {
	base string
	hc   *http.Client
}

func newWriter(addr string) *writer {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 16
	return &writer{base: "http://" + addr, hc: &http.Client{Transport: tr, Timeout: 60 * time.Second}}
}

// call makes one request and fails on any answer but a 2xx.
func (w *writer) call(method, path string, body any) error {
	return w.callInto(method, path, body, nil)
}

func (w *writer) callInto(method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, w.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+apiToken)
	resp, err := w.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: HTTP %d: %s", method, path, resp.StatusCode, bytes.TrimSpace(data))
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

// bulk sends one bulk request of op (create, update, delete) over specs and fails unless every item
// succeeded.
func (w *writer) bulk(op string, specs []job.Spec) error {
	var req api.BatchRequest
	for _, spec := range specs {
		item := api.BatchOp{Op: op, Name: spec.Name}
		switch op {
		case api.BatchCreate:
			item.Job = &spec
		case api.BatchUpdate:
			spec := changed(spec)
			item.Job = &spec
		}
		req.Ops = append(req.Ops, item)
	}
	var resp api.BatchResponse
	if err := w.callInto(http.MethodPost, "/api/v1/jobs:batch", req, &resp); err != nil {
		return err
	}
	for _, r := range resp.Results {
		if r.Error != "" {
			return fmt.Errorf("bulk %s %s: HTTP %d: %s", op, r.Name, r.Status, r.Error)
		}
	}
	return nil
}
