package server

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/clover-sched/clover/internal/job"
)

// Firings are recorded off the loop. An insert takes the store hundreds of milliseconds under load (it is
// sized to take about insertTarget, see insertSizer), and while the loop waited on it no ack, result or
// heartbeat was applied and nothing was dispatched: under sustained overload the clients sat half idle
// with thousands of executions waiting, their slots held by runs whose results queued behind the insert.
// So the loop plans the firings (the overlap policies decide there, in time order), leaves each planned
// execution in its job's open executions as *recording* (a placeholder the overlap policies count as open,
// which nothing else acts on), and hands the plan, in inserts the store can take, to an inserter
// goroutine. At most insertsInFlight of them are handed over at once, so the store always has the next
// insert ready while the loop applies the last; the rest wait in the loop, and fireDue fires nothing more
// while they do (the times stay due, and owed folds those that wait too long into the misfire policy).
// When an insert's answer comes back (insertedNote), the loop replaces the placeholders with what the
// answer says: a new execution is tracked and dispatched, one found recorded before is adopted, one
// skipped by policy is recorded skipped.
//
// An insert that fails puts its firings, and those of every insert planned after it that was not tried
// yet, back among the unsaved firings: the inserter does not try the rest of a failed generation (gen),
// the loop retries unsaved firings only once nothing is on its way to the store, and fires nothing new
// before (see fireDue). A stop asked of a placeholder goes back with its firing.
// The inserter checks that ZooKeeper confirmed the session before each insert, as fire does: a leader
// frozen past its session timeout does not write what it planned before.

// insertsInFlight is how many inserts are handed to the inserter at once.
const insertsInFlight = 2

// insertChunk is one insert's part of a firing plan.
type insertChunk struct {
	gen     int
	plan    []planned
	firings []firing          // the firings the plan was made of, to retry if the insert fails
	stops   map[string]string // flights the chunk's replacing firings stop once recorded: id -> reason
	now     time.Time
}

// insertedNote is the inserter's answer about a chunk.
type insertedNote struct {
	chunk *insertChunk
	dups  []string
	err   error
	took  time.Duration
	tried bool // false: not tried (an earlier insert of its generation failed, or the session is unconfirmed)
}

var errEarlierInsertFailed = errors.New("not tried: an earlier insert of the same firings failed")

// insertPipe is the loop's side of the inserts on their way to the store.
type insertPipe struct {
	// submit hands a chunk to the inserter; nil: each insert is made on the loop, when planned (unit
	// tests, which step the loop by hand).
	submit  func(*insertChunk)
	waiting []*insertChunk // planned, not handed over yet
	out     int            // handed over, not answered yet
	gen     int            // the generation of new chunks; a failed insert ends its generation
	cap     int            // when set, no insert takes more executions (tests: many small inserts)
}

// busy reports whether fireDue should leave due firings for later: the pipeline is full.
func (p *insertPipe) busy() bool { return p.out+len(p.waiting) >= insertsInFlight }

// idle reports whether nothing is on its way to the store.
func (p *insertPipe) idle() bool { return p.out == 0 && len(p.waiting) == 0 }

// inserter makes the inserts handed to it, one after another, until the term ends. It tells the loop of
// each with an insertedNote, waiting for room in the notes: an answer must not be lost.
func (l *leader) inserter(ctx context.Context, in <-chan *insertChunk) {
	failedGen := -1
	for {
		select {
		case <-ctx.Done():
			return
		case c := <-in:
			l.tell(ctx, l.insertChunk(ctx, c, &failedGen))
		}
	}
}

// insertChunk inserts c unless its generation failed already (failedGen, the inserter's) or the session
// is not confirmed.
func (l *leader) insertChunk(ctx context.Context, c *insertChunk, failedGen *int) insertedNote {
	n := insertedNote{chunk: c}
	switch {
	case c.gen <= *failedGen:
		n.err = errEarlierInsertFailed
	case !l.confirmed():
		n.err = errUnconfirmed
	default:
		sctx, cancel := storeCtx(ctx)
		began := time.Now()
		n.dups, n.err = l.insertPlanned(sctx, c.plan, c.now)
		n.took = time.Since(began)
		cancel()
		n.tried = true
	}
	if n.err != nil {
		*failedGen = c.gen
	}
	return n
}

// startInserter starts the term's inserter: from now on fire hands its inserts to it.
func (l *leader) startInserter(ctx context.Context) {
	in := make(chan *insertChunk, insertsInFlight)
	l.pipe.submit = func(c *insertChunk) { in <- c } // never blocks: at most insertsInFlight are out
	go l.inserter(ctx, in)
}

// chunks splits a plan into inserts the store can take (see insertSizer). The shards of one firing go in
// the same insert, so that a failed insert's firings were not recorded at all (save an insert that landed
// unanswered, which the retry finds as duplicates).
func (l *leader) chunks(firings []firing, plan []planned, stops map[string]string, now time.Time) []*insertChunk {
	replacer := map[string]int{} // "replaced by <id>" -> the firing that asked the stop
	for _, p := range plan {
		replacer["replaced by "+p.exec.ID] = p.from
	}
	var out []*insertChunk
	size := l.inserts.batch()
	if l.pipe.cap > 0 {
		size = min(size, l.pipe.cap)
	}
	for start := 0; start < len(plan); {
		end := min(start+size, len(plan))
		for end < len(plan) && plan[end].from == plan[end-1].from {
			end++
		}
		c := &insertChunk{gen: l.pipe.gen, plan: plan[start:end], now: now}
		// The firings its executions come from (one that made none, see plan, is in no chunk).
		for i, p := range c.plan {
			if i == 0 || p.from != c.plan[i-1].from {
				c.firings = append(c.firings, firings[p.from])
			}
		}
		first, last := plan[start].from, plan[end-1].from
		for id, reason := range stops {
			if from, ok := replacer[reason]; ok && from >= first && from <= last {
				if c.stops == nil {
					c.stops = map[string]string{}
				}
				c.stops[id] = reason
			}
		}
		out = append(out, c)
		start = end
	}
	return out
}

// placeRecording leaves c's executions among their jobs' open executions while they are recorded; one
// planned to be recorded skipped is only noted as on its way (it never counts as open).
func (l *leader) placeRecording(c *insertChunk) {
	for _, p := range c.plan {
		if _, tracked := l.flights[p.exec.ID]; tracked {
			continue // plan leaves such firings out; never hide a followed execution behind a placeholder
		}
		f := &flight{exec: p.exec, run: 1, phase: phaseRecording, catchUp: p.catchUp, stopping: p.stop, stopFinal: p.stop != ""}
		l.recording[p.exec.ID] = f
		if p.skip != "" || p.exec.Trigger == job.TriggerBatch {
			continue // a batch's executions are not its job's firings (see track)
		}
		byJob := l.openByJob[p.exec.Job]
		if byJob == nil {
			byJob = map[string]*flight{}
			l.openByJob[p.exec.Job] = byJob
		}
		byJob[p.exec.ID] = f
	}
}

// unplace takes c's placeholders out and returns them by id.
func (l *leader) unplace(c *insertChunk) map[string]*flight {
	out := make(map[string]*flight, len(c.plan))
	for _, p := range c.plan {
		id := p.exec.ID
		f, ok := l.recording[id]
		if !ok {
			continue
		}
		out[id] = f
		delete(l.recording, id)
		if byJob := l.openByJob[p.exec.Job]; byJob[id] == f {
			delete(byJob, id)
			if len(byJob) == 0 {
				delete(l.openByJob, p.exec.Job)
			} else {
				l.wake(p.exec.Job) // a queued execution may have waited behind it
			}
		}
	}
	return out
}

// record hands the chunks of a plan to the store: to the inserter, or, without one, one after another on
// the loop.
func (l *leader) recordChunks(ctx context.Context, chunks []*insertChunk) error {
	for _, c := range chunks {
		l.placeRecording(c)
	}
	if l.pipe.submit != nil {
		l.pipe.waiting = append(l.pipe.waiting, chunks...)
		l.pumpInserts()
		return nil
	}
	failedGen := -1
	for _, c := range chunks {
		if err := l.inserted(ctx, l.insertChunk(ctx, c, &failedGen)); err != nil {
			return err
		}
	}
	return nil
}

// pumpInserts hands waiting chunks to the inserter while there is room.
func (l *leader) pumpInserts() {
	for l.pipe.out < insertsInFlight && len(l.pipe.waiting) > 0 {
		c := l.pipe.waiting[0]
		l.pipe.waiting = l.pipe.waiting[1:]
		l.pipe.out++
		l.pipe.submit(c)
	}
}

// inserted applies the answer about an insert.
func (l *leader) inserted(ctx context.Context, n insertedNote) error {
	c := n.chunk
	if l.pipe.submit != nil {
		l.pipe.out--
		defer l.pumpInserts()
	}
	placed := l.unplace(c)
	if n.tried {
		l.inserts.observe(len(c.plan), n.took, n.err)
		l.metrics.insertSize.Set(float64(l.inserts.batch()))
	}
	now := l.now()
	if n.err != nil {
		if errors.Is(n.err, errUnconfirmed) {
			return errUnconfirmed
		}
		if c.gen == l.pipe.gen {
			// The first failure of this generation: what was planned after it waits with it. unsaved
			// then holds this chunk's firings, those of the chunks that were still waiting, and last
			// those of chunks already handed over (their answers come later); plan sorts them again.
			l.pipe.gen++
			l.metrics.storeErrors.WithLabelValues("insert_executions").Inc()
			l.backOffUnsaved(now)
			rest := 0
			for _, w := range l.pipe.waiting {
				rest += len(w.plan)
			}
			l.logger.Warn("recording firings failed; will retry", "executions", len(c.plan)+rest, "err", n.err)
			l.unsave(c, n.tried, placed)
			for _, w := range l.pipe.waiting {
				l.unsave(w, false, l.unplace(w))
			}
			l.pipe.waiting = nil
			return nil
		}
		l.unsave(c, n.tried, placed)
		return nil
	}
	l.unsavedWait = 0
	// Stops asked while they were being recorded (an operator, a later replacing firing) end the new
	// ones before any client is sent them; one recorded before is stopped as it stands.
	var stopped map[string]string
	for id, ph := range placed {
		if ph.stopping != "" {
			if stopped == nil {
				stopped = map[string]string{}
			}
			stopped[id] = ph.stopping
		}
	}
	fresh := l.applyRecorded(ctx, c.plan, n.dups, stopped, now)
	// Then those the chunk's own replacing firings ask, if they are new: one recorded before replaces
	// nothing now (as fireNow).
	for id, reason := range c.stops {
		if fresh[strings.TrimPrefix(reason, "replaced by ")] {
			l.stopOpen(id, reason)
		}
	}
	return nil
}

// unsave puts a chunk's firings back among the unsaved, in order. tried: its insert was sent and failed,
// which a timeout after the write also looks like, so each firing notes the ids of its executions for
// retryUnsaved to ask the store about.
// A stop asked of a placeholder (placed) goes with its firing.
func (l *leader) unsave(c *insertChunk, tried bool, placed map[string]*flight) {
	first := len(l.unsaved)
	l.unsaved = append(l.unsaved, c.firings...)
	at := map[int]int{} // plan's firing index -> its place in unsaved
	for i, p := range c.plan {
		if i == 0 || p.from != c.plan[i-1].from {
			at[p.from] = first + len(at)
		}
	}
	for i := first; i < len(l.unsaved); i++ {
		if l.unsaved[i].failedAt.IsZero() {
			l.unsaved[i].failedAt = c.now
		}
		if tried {
			l.unsaved[i].maybe = nil
		}
	}
	for _, p := range c.plan {
		fr := &l.unsaved[at[p.from]]
		if tried {
			fr.maybe = append(fr.maybe, p.exec.ID)
		}
		if ph := placed[p.exec.ID]; ph != nil && ph.stopping != "" {
			fr.stop = ph.stopping
		}
	}
}

// backOffUnsaved delays the next retry of unsaved firings: a store that fails every insert (or hangs until
// the timeout) is not asked again on every tick, and the loop's turns stay with the notes.
// The first retry is at the next tick.
func (l *leader) backOffUnsaved(now time.Time) {
	l.unsavedRetryAt = now.Add(l.unsavedWait)
	l.unsavedWait = min(max(2*l.unsavedWait, 250*time.Millisecond), maxUnsavedWait)
}

// maxUnsavedWait bounds the wait between two retries of unsaved firings.
const maxUnsavedWait = 8 * time.Second

// stopOpen stops the open execution id, or asks it stopped once it is recorded.
func (l *leader) stopOpen(id, reason string) {
	if f, ok := l.flights[id]; ok {
		l.stop(f, reason, true)
	} else if ph, ok := l.recording[id]; ok {
		ph.stopping, ph.stopFinal = reason, true
	}
}

// all is every execution the term follows, those on their way to the store included.
func (l *leader) all() []*flight {
	out := make([]*flight, 0, len(l.flights)+len(l.recording))
	for _, f := range l.flights {
		out = append(out, f)
	}
	for _, f := range l.recording {
		out = append(out, f)
	}
	return out
}
