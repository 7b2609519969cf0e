package server

import (
	"cmp"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/registry"
)

// Routing: which client an execution goes to.
//
// The eligible clients of an execution are the live ones that serve its job (by name or handler), carry
// every label its job requires and, if the job is pinned, are among its pinned clients. Of those, a client
// has room when its running and dispatched executions leave a free slot (Member.Capacity) and enough
// resource width (Member.Width) for the job's Routing.Width. The leader counts what each client holds
// itself, so dispatch is just in time: an execution goes out only to a client with room, and waits
// (visible as waiting) when none has any; there are no per-client queues. The client checks again and
// refuses as busy if the leader's count was stale.
//
// The strategy orders the clients with room; dispatch tries them in that order until a send succeeds.

// usage is what a client holds: slots and width taken by executions dispatched to it or running there.
type usage struct{ slots, width int }

// rebuildUsage counts, from the flights, what every client holds. It runs on every tick, so a count that
// went wrong (a missed release) heals within one.
func (l *leader) rebuildUsage() {
	clear(l.usage)
	now := l.now()
	for _, f := range l.flights {
		if f.holds(now) {
			u := l.usage[f.client]
			u.slots++
			u.width += f.exec.Width
			l.usage[f.client] = u
		}
	}
}

func (l *leader) occupy(client string, width int) {
	u := l.usage[client]
	u.slots++
	u.width += width
	l.usage[client] = u
}

func (l *leader) release(client string, width int) {
	u := l.usage[client]
	u.slots = max(u.slots-1, 0)
	u.width = max(u.width-width, 0)
	l.usage[client] = u
}

// incarnation tells registrations of the same client id apart: a client that restarts has forgotten
// what it was sent.
func (l *leader) incarnation(c string) time.Time {
	return l.started[c]
}

// hasRoom reports whether client c can take one more execution of width w.
func (l *leader) hasRoom(c string, w int) bool {
	m, ok := l.clients[c]
	if !ok {
		return false
	}
	u := l.usage[c]
	if m.Capacity > 0 && u.slots >= m.Capacity {
		return false
	}
	return m.Width == 0 || u.width+w <= m.Width
}

// eligible returns the live clients that may run e (sorted by id, or in the pinned order).
func (l *leader) eligible(e job.Execution, spec *job.Spec) []string {
	serving := l.serving(e)
	if declaredShell(spec) {
		// A client's own shell command runs on the clients that declare it, never on a client that only
		// offers the shell handler: a client may not make another run a command (an admin's right).
		serving = l.byJob[e.Job]
	}
	r := spec.Routing
	var out []string
	if len(r.Clients) > 0 {
		for _, c := range r.Clients {
			if slices.Contains(serving, c) {
				out = append(out, c)
			}
		}
	} else {
		out = slices.Clone(serving)
	}
	if len(r.Labels) > 0 || len(e.Labels) > 0 {
		out = slices.DeleteFunc(out, func(c string) bool {
			return !hasLabels(l.clients[c], r.Labels) || !hasLabels(l.clients[c], e.Labels)
		})
	}
	return out
}

// declaredShell reports whether spec is a shell job a client declared.
func declaredShell(spec *job.Spec) bool {
	return spec.Handler == job.HandlerShell && strings.HasPrefix(spec.Source, "client:")
}

func hasLabels(m registry.Member, want map[string]string) bool {
	for k, v := range want {
		if m.Labels[k] != v {
			return false
		}
	}
	return true
}

// serving returns the live clients that serve the execution's job by name or its handler, sorted.
func (l *leader) serving(e job.Execution) []string {
	a, b := l.byJob[e.Job], l.byHandle[e.Handler]
	if len(b) == 0 {
		return a
	}
	if len(a) == 0 {
		return b
	}
	out := append(slices.Clone(a), b...)
	slices.Sort(out)
	return slices.Compact(out)
}

// route orders the clients that may take e now, by its job's strategy. Strategies that name one client
// (consistent-hash, failover) return at most that client: the execution waits for it rather than go
// elsewhere while it is there.
func (l *leader) route(e job.Execution, spec *job.Spec, cands []string) []string {
	room := func(c string) bool { return l.hasRoom(c, e.Width) }
	switch spec.Routing.Strategy {
	case job.RouteConsistentHash:
		key := e.Job
		if k := spec.Routing.HashKey; k != "" && e.Params[k] != "" {
			key = e.Params[k]
		}
		if c := job.HashClient(key, cands); c != "" && room(c) {
			return []string{c}
		}
		return nil
	case job.RouteFailover:
		if len(cands) > 0 && room(cands[0]) {
			return cands[:1]
		}
		return nil
	}
	withRoom := slices.DeleteFunc(slices.Clone(cands), func(c string) bool { return !room(c) })
	if len(withRoom) == 0 {
		return nil
	}
	switch spec.Routing.Strategy {
	case job.RouteFirst:
		return withRoom
	case job.RouteRandom:
		rand.Shuffle(len(withRoom), func(i, j int) { withRoom[i], withRoom[j] = withRoom[j], withRoom[i] })
		return withRoom
	case job.RouteLeastBusy:
		slices.SortStableFunc(withRoom, func(a, b string) int { return cmp.Compare(l.usage[a].slots, l.usage[b].slots) })
		return withRoom
	case job.RouteShardBroadcast:
		start := 0
		if e.Shard != nil {
			start = e.Shard.Index
		}
		return rotate(withRoom, start)
	default: // round-robin
		start := l.rr[e.Job]
		l.rr[e.Job] = start + 1
		return rotate(withRoom, start)
	}
}

func rotate(s []string, start int) []string {
	if len(s) == 0 {
		return s
	}
	k := start % len(s)
	return append(s[k:len(s):len(s)], s[:k]...)
}

func (l *leader) rebuildEligibility() {
	l.byJob, l.byHandle, l.live = map[string][]string{}, map[string][]string{}, map[string]bool{}
	clear(l.clients)
	clear(l.started)
	for _, m := range l.members() { // sorted by id
		l.live[m.ID] = true
		l.clients[m.ID] = m
		l.started[m.ID] = m.StartedAt
		for _, j := range m.Jobs {
			l.byJob[j] = append(l.byJob[j], m.ID)
		}
		for _, h := range m.Handlers {
			l.byHandle[h] = append(l.byHandle[h], m.ID)
		}
	}
	for name := range l.rr {
		if _, ok := l.jobs[name]; !ok {
			delete(l.rr, name)
		}
	}
}
