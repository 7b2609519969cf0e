package server

import (
	"context"
	"sync"
	"time"
)

// groupWriteTimeout bounds one grouped write. It is not cancelled with the request of the caller that
// makes it: it writes other callers' items too.
const groupWriteTimeout = 10 * time.Second

// groupCommit makes the writes of concurrent callers in one store request: eight API callers creating a
// job each cost one insert of eight jobs (and one of their eight audit entries) instead of eight, which
// on FerretDB are eight SQLite transactions contending for its write lock. A caller returns only once its
// own items are written (or failed), so batching saves round trips and transactions, never a wait: a
// request is not answered before what it wrote is stored.
//
// Concurrency: mu guards the queue. A caller that finds no write under way writes every item queued,
// hands each caller its results, then passes the next write to the caller of the oldest items queued
// meanwhile (closing its turn), or stops when none is queued. So no caller writes for others once its own
// items are written, and nothing queued is left without a writer. The zero value is ready.
type groupCommit[T any] struct {
	mu      sync.Mutex
	queue   []*groupWaiter[T]
	writing bool
}

type groupWaiter[T any] struct {
	items []T
	errs  []error       // the outcome of each item, set before done is closed
	done  chan struct{} // closed when the write that took the items has ended
	turn  chan struct{} // closed: this caller makes the next write
}

// write writes items with flush, together with whatever other callers queue, and returns each item's
// error. flush gets the items of every caller it writes for, in one slice, and returns an error for each.
func (g *groupCommit[T]) write(ctx context.Context, flush func(context.Context, []T) []error, items []T) []error {
	w := &groupWaiter[T]{items: items, done: make(chan struct{}), turn: make(chan struct{})}
	g.mu.Lock()
	g.queue = append(g.queue, w)
	first := !g.writing
	g.writing = true
	g.mu.Unlock()
	if first {
		g.flush(ctx, flush)
	}
	select {
	case <-w.done:
	case <-w.turn:
		g.flush(ctx, flush) // its own items lead the queue
	}
	<-w.done
	return w.errs
}

func (g *groupCommit[T]) flush(ctx context.Context, flush func(context.Context, []T) []error) {
	g.mu.Lock()
	batch := g.queue
	g.queue = nil
	g.mu.Unlock()
	var items []T
	for _, w := range batch {
		items = append(items, w.items...)
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), groupWriteTimeout)
	errs := flush(ctx, items)
	cancel()
	for _, w := range batch {
		w.errs, errs = errs[:len(w.items):len(w.items)], errs[len(w.items):]
		close(w.done)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.queue) > 0 {
		close(g.queue[0].turn)
	} else {
		g.writing = false
	}
}
