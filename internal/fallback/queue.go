package fallback

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"
)

// Appender stores entries in the shared queue. An entry whose id is stored already is not an error (that
// is how a spool moved twice after a crash looks).
type Appender interface {
	AppendFallback(ctx context.Context, entries []Entry) error
}

// Opener connects to the shared queue. It is called again, at most every reopenEvery, until it succeeds:
// a client must start, and keep its reports, while MongoDB is down.
type Opener func(ctx context.Context) (Appender, error)

const (
	// putTimeout bounds one write to MongoDB; past it the entry goes to the spool.
	putTimeout  = 3 * time.Second
	reopenEvery = 5 * time.Second
	moveEvery   = time.Second
)

// Queue is a client's side of the fallback queue: Put stores an entry in MongoDB, or in the local spool
// while MongoDB does not answer; Run moves the spool to MongoDB when it answers again.
//
// Concurrency: every method may be called from any goroutine; mu serializes them, so entries reach MongoDB
// in the order Put numbered them (while the spool holds anything, new entries go behind it, never around).
type Queue struct {
	client string
	boot   int64
	open   Opener
	logger *slog.Logger
	now    func() time.Time

	mu       sync.Mutex
	seq      int64
	store    Appender
	lastOpen time.Time
	spool    *Spool
	signKey  []byte // signs each entry (see Entry.Sig); nil: unsigned
	// moveFailed is when a move last failed: the next waits reopenEvery, so that a database that is down
	// is not asked every second, holding the lock Put needs for as long as each attempt takes.
	moveFailed time.Time
}

// NewQueue opens the queue of client, with its spool file in dir bounded to maxBytes. Entries spooled by an
// earlier run of the client are moved to MongoDB first, by Run.
func NewQueue(client, dir string, maxBytes int64, open Opener, logger *slog.Logger, now func() time.Time) (*Queue, error) {
	sp, err := OpenSpool(filepath.Join(dir, client+".spool"), maxBytes)
	if err != nil {
		return nil, err
	}
	q := &Queue{client: client, boot: now().UnixNano(), open: open, logger: logger, now: now, spool: sp}
	if n := sp.Len(); n > 0 {
		logger.Warn("fallback spool holds entries from an earlier run; they move to MongoDB when it answers", "entries", n)
	}
	return q, nil
}

// SignWith makes Put sign every entry with key (the client's registration key); call it before Put.
func (q *Queue) SignWith(key []byte) {
	q.mu.Lock()
	q.signKey = key
	q.mu.Unlock()
}

// Put queues one entry. It returns an error only if the entry is kept nowhere: MongoDB did not take it and
// the spool is full or cannot be written.
func (q *Queue) Put(ctx context.Context, kind Kind, execID string, payload []byte) (Entry, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.seq++
	e := Entry{
		ID: EntryID(q.client, q.boot, q.seq), Client: q.client, Boot: q.boot, Seq: q.seq,
		At:   q.now().UTC().Truncate(time.Millisecond), // as MongoDB keeps it: the signature covers it
		Kind: kind, ExecID: execID, Payload: payload, State: StateWaiting,
	}
	if q.signKey != nil {
		e.Sig = e.Signature(q.signKey)
	}
	if q.spool.Len() == 0 {
		if st := q.storeLocked(ctx); st != nil {
			pctx, cancel := context.WithTimeout(ctx, putTimeout)
			err := st.AppendFallback(pctx, []Entry{e})
			cancel()
			if err == nil {
				return e, nil
			}
			q.logger.Warn("fallback queue in MongoDB unreachable; spooling to a local file", "entry", e.ID, "err", err)
		}
	}
	if err := q.spool.Append([]Entry{e}); err != nil {
		return e, fmt.Errorf("fallback: entry %s kept nowhere: %w", e.ID, err)
	}
	return e, nil
}

// storeLocked returns the shared queue, connecting if needed; nil while it cannot connect.
func (q *Queue) storeLocked(ctx context.Context) Appender {
	if q.store != nil || q.now().Sub(q.lastOpen) < reopenEvery {
		return q.store
	}
	q.lastOpen = q.now()
	octx, cancel := context.WithTimeout(ctx, putTimeout)
	defer cancel()
	st, err := q.open(octx)
	if err != nil {
		q.logger.Warn("cannot connect to the fallback queue in MongoDB", "err", err)
		return nil
	}
	q.store = st
	return st
}

// Run moves spooled entries to MongoDB until ctx ends.
func (q *Queue) Run(ctx context.Context) {
	t := time.NewTicker(moveEvery)
	defer t.Stop()
	for {
		if _, err := q.Move(ctx); err != nil {
			q.logger.Debug("spool not moved yet", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Move moves every spooled entry to MongoDB and empties the spool; it reports how many it moved.
func (q *Queue) Move(ctx context.Context) (int, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.spool.Len() == 0 || q.now().Sub(q.moveFailed) < reopenEvery {
		return 0, nil
	}
	st := q.storeLocked(ctx)
	if st == nil {
		return 0, fmt.Errorf("fallback: MongoDB unreachable")
	}
	entries, err := q.spool.Entries()
	if err != nil {
		return 0, err
	}
	mctx, cancel := context.WithTimeout(ctx, putTimeout+time.Duration(len(entries))*time.Millisecond)
	defer cancel()
	if err := st.AppendFallback(mctx, entries); err != nil {
		q.moveFailed = q.now()
		return 0, fmt.Errorf("fallback: move spool: %w", err)
	}
	if err := q.spool.Clear(); err != nil {
		return 0, err
	}
	q.logger.Info("moved the fallback spool to MongoDB", "entries", len(entries))
	return len(entries), nil
}

// Spooled is the number of entries in the local spool.
func (q *Queue) Spooled() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.spool.Len()
}

// Close closes the spool file; what it holds stays for the next run.
func (q *Queue) Close() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.spool.Close()
}
