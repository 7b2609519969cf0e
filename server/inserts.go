package server

import "time"

// insertSizer sizes the leader's execution inserts to the store. One insert of everything due at once is
// what a slow store cannot take: 16,000 executions against FerretDB outlast the store timeout, fail, and
// are tried again whole. So the loop records what is due in inserts of a size that the store's measured
// latency says takes about insertTarget, and between two of them it handles the notes that came in (acks,
// results, heartbeats) instead of holding them behind one long write.
type insertSizer struct {
	size int // 0 until the first insert: firstInsert
}

const (
	insertTarget = 300 * time.Millisecond
	firstInsert  = 256
	minInsert    = 32
	maxInsert    = 4096
)

// batch is how many executions the next insert should take.
func (s *insertSizer) batch() int {
	if s.size == 0 {
		return firstInsert
	}
	return s.size
}

// observe learns from an insert of n executions that took took (or failed with err).
func (s *insertSizer) observe(n int, took time.Duration, err error) {
	cur := s.batch()
	switch {
	case err != nil:
		s.size = max(cur/2, minInsert) // a timeout, most likely: ask for less
		return
	case n < cur/4 && took < insertTarget:
		return // a small insert says little about a full one (fixed costs dominate it)
	}
	ideal := maxInsert
	if took > 0 {
		ideal = int(float64(n) * float64(insertTarget) / float64(took))
	}
	// A quarter of the way to the ideal size, and at most double or half at once: one slow write (a
	// checkpoint, a compaction) must not shrink the batches to nothing, nor one fast one blow them up.
	next := (3*cur + ideal) / 4
	s.size = min(max(next, cur/2, minInsert), 2*cur, maxInsert)
}
