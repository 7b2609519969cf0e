package server

import "time"

// insertSizer sizes the leader's execution inserts to the store. One insert of everything due at once is
// what a slow store cannot take: 16,000 executions against FerretDB outlast the store timeout, fail, and
// are tried again whole. So the loop records what is due in inserts of a size that the store's measured
// latency says takes about insertTarget, and between two of them it handles the notes that came in (acks,
// results, heartbeats) instead of holding them behind one long write.
//
// Latency is modelled as a fixed cost per insert plus a cost per execution, fitted over the last inserts:
// on a store whose latency is mostly fixed (queueing, a write concern waiting for a majority, a loaded
// FerretDB) shrinking the inserts would only lower the rate, so the per-execution part alone decides.
type insertSizer struct {
	size int // 0 until the first insert: firstInsert
	obs  [insertWindow]insertObs
	next int // where the next observation goes in obs
}

type insertObs struct {
	n    int
	took time.Duration
}

const (
	insertTarget = 300 * time.Millisecond
	firstInsert  = 256
	minInsert    = 32
	maxInsert    = 4096
	insertWindow = 8
	// insertCeiling is the latency no insert should come near: half the store timeout.
	insertCeiling = storeTimeout / 2
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
	case err != nil || took > insertCeiling:
		s.size = max(cur/2, minInsert) // a timeout, or close to one: ask for less at once
		return
	case n <= 0:
		return
	}
	s.obs[s.next] = insertObs{n: n, took: took}
	s.next = (s.next + 1) % insertWindow
	if n < cur/4 {
		return // a small insert (a manual trigger) says how large the fixed cost is, not how large to go
	}
	fixed, perExec := s.fit()
	ideal := maxInsert
	if perExec > 0 {
		budget := max(insertTarget-fixed, insertTarget/2)
		ideal = int(min(float64(budget)/perExec, float64(insertCeiling-fixed)/perExec, maxInsert))
	}
	// A quarter of the way to the ideal size, and at most double or half at once: one slow write (a
	// checkpoint, a compaction) must not shrink the batches to nothing, nor one fast one blow them up.
	next := (3*cur + ideal + 3) / 4 // rounded up, so that it reaches the ideal
	s.size = min(max(next, cur/2, minInsert), 2*cur, maxInsert)
}

// fit returns the fixed latency of an insert and the latency per execution (in nanoseconds), by least
// squares over the observations kept. With one size only, all of the latency is counted per execution.
func (s *insertSizer) fit() (fixed time.Duration, perExec float64) {
	var k, sn, st, snn, snt float64
	for _, o := range s.obs {
		if o.n == 0 {
			continue
		}
		n, t := float64(o.n), float64(o.took)
		k, sn, st, snn, snt = k+1, sn+n, st+t, snn+n*n, snt+n*t
	}
	if k == 0 {
		return 0, 0
	}
	meanN, meanT := sn/k, st/k
	varN := snn/k - meanN*meanN
	if varN < meanN*meanN/100 { // sizes too alike to tell the parts apart
		return 0, meanT / meanN
	}
	perExec = (snt/k - meanN*meanT) / varN
	a := meanT - perExec*meanN
	switch {
	case perExec <= 0: // latency does not grow with the size (noise, or all fixed): bigger is better
		return time.Duration(meanT), 0
	case a < 0:
		return 0, meanT / meanN
	}
	return time.Duration(a), perExec
}
