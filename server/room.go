package server

import "time"

// Room that frees up between ticks goes to what waits at once.
//
// The tick (every 250 ms) offers every waiting execution to the clients with room, oldest first. A short
// run ends within milliseconds of its dispatch, so if only the tick filled a slot again, each slot would
// serve at most one run a tick: 64 slots, 256 runs a second, whatever the machine could do (measured: two
// clients of 64 slots ran 531 shell runs a second with 930 jobs a second due and half a CPU idle). So when
// a result, a refusal or a lost run gives room back, the loop offers it, after the note, to the executions
// the last tick left waiting, in the tick's order.
//
// The tick stays the one place that decides what waits: misfires, stale queue entries, retries, the
// backlog's count. This only hands out room sooner, and looks at a bounded part of the line, so that a line
// of thousands that no client can take costs the loop little per result.

const (
	// maxRoomMisses bounds how many waiting executions one offer tries to dispatch without success (their
	// clients are full) before it stops.
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
	misses := 0
	for i := w.head; i < len(w.flights) && i < w.head+maxRoomLooks && misses < maxRoomMisses; i++ {
		f := w.flights[i]
		switch {
		case l.flights[f.exec.ID] != f || f.phase != phaseWaiting || l.stale(f, now):
			// Dispatched or ended since, or past the misfire threshold (the tick applies the job's
			// misfire policy): not this offer's.
		case !l.dispatch(f, now):
			if misses++; !l.anyRoom() {
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

// anyRoom reports whether some client has a free slot (the width a job needs aside).
func (l *leader) anyRoom() bool {
	for c := range l.clients {
		if l.hasRoom(c, 0) {
			return true
		}
	}
	return false
}
