package server

import (
	"slices"
	"time"
)

// Room that frees up between ticks goes to what waits at once.
//
// The tick (every 250 ms) offers every waiting execution to the clients with room, oldest first. A short
// run ends within milliseconds of its dispatch, so if only the tick filled a slot again, each slot would
// serve at most one run a tick: 64 slots, 256 runs a second, whatever the machine could do (measured: two
// clients of 64 slots ran 531 shell runs a second with 930 jobs a second due and half a CPU idle). So when
// a result gives room back, the loop offers it, after the note, to the executions the last tick left
// waiting, in the tick's order. A refusal gives none back: the client said it is full (and a busy one is
// sent nothing more until the next count, see onAck).
//
// The tick stays the one place that decides what waits: misfires, stale queue entries, retries, the
// backlog's count, the clients' counts. This only hands out room sooner, and looks at a bounded part of
// the line, so that a line of thousands that no client can take costs the loop little per result. What
// it leaves to the tick, conservatively: executions that came to wait after the tick (refused, given
// back, out of a store check), stale ones a misfire policy may keep, and a job whose first entry found no
// client (pinned to a full one), whose later entries are passed over in that offer. Precedence within a
// note: the queued executions the result woke (releaseWoken: their job's turn came with it), then the
// line. Fresh firings, as they are recorded, get what the line leaves of the room the recording's count
// finds.

const (
	// maxRoomMisses bounds how many jobs one offer tries to dispatch an execution of without success
	// (their clients are full) before it stops.
	maxRoomMisses = 32
	// maxRoomLooks bounds how many entries of the line one offer looks at.
	maxRoomLooks = 256
)

// waitLine is what the last tick left waiting for a client, oldest firing first.
type waitLine struct {
	flights   []*flight
	head      int  // flights[:head] were dispatched or ended
	roomFreed bool // a client got room back since the last offer
}

// reset keeps the executions of want (in want's order) that are still waiting after the tick and that a
// client could take now.
func (w *waitLine) reset(want []*flight, now time.Time) {
	clear(w.flights)
	if cap(w.flights) > 4096 && cap(w.flights) > 4*len(want) {
		w.flights = nil // not the term's peak for ever
	}
	w.flights, w.head = w.flights[:0], 0
	for _, f := range want {
		if f.phase == phaseWaiting && !f.check && !f.verify && f.stopping == "" && !now.Before(f.heldUntil) {
			w.flights = append(w.flights, f)
		}
	}
	w.roomFreed = false
}

// offerFreedRoom dispatches, oldest first, what the last tick left waiting, while clients have room.
func (l *leader) offerFreedRoom() {
	w := &l.line
	if !w.roomFreed {
		return
	}
	w.roomFreed = false
	if w.head >= len(w.flights) || !l.confirmed() {
		return
	}
	now := l.now()
	var missed []string // jobs whose entry found no client in this offer: their later ones would not either
	for i := w.head; i < len(w.flights) && i < w.head+maxRoomLooks && len(missed) < maxRoomMisses; i++ {
		f := w.flights[i]
		switch {
		case l.flights[f.exec.ID] != f || f.phase != phaseWaiting || l.stale(f, now):
			// Dispatched or ended since, or past the misfire threshold (the tick applies the job's
			// misfire policy): not this offer's.
		case slices.Contains(missed, f.exec.Job):
			continue
		case !l.dispatch(f, now):
			if missed = append(missed, f.exec.Job); !l.anyRoom() {
				return // the usual end: the room freed is taken
			}
			continue
		}
		if i == w.head {
			w.flights[i] = nil
			w.head++
		}
	}
}

// anyRoom reports whether some client that may be sent to has a free slot (the width a job needs aside).
func (l *leader) anyRoom() bool {
	for c := range l.clients {
		if !l.fullPipes[c] && l.hasRoom(c, 0) {
			return true
		}
	}
	return false
}
