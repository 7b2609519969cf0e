package monitor

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/clover-sched/clover/api"
	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/registry"
	"github.com/clover-sched/clover/internal/schedule"
	"github.com/clover-sched/clover/internal/store"
)

// members is a view of one kind of registered members (a registry.Cache).
type members interface {
	Members() []registry.Member
}

// checkStore is what the checks read from the store.
type checkStore interface {
	ListJobs(ctx context.Context) ([]job.Spec, error)
	ListExecutions(ctx context.Context, f store.ExecutionFilter) ([]job.Execution, error)
}

// leaderWatch follows the servers' election: who leads, since when there is none, and recent changes.
// The observer goroutine writes it; the check loop reads it.
type leaderWatch struct {
	mu       sync.Mutex
	id       string
	noneFrom time.Time   // when the cluster was last seen without a leader; zero while one leads
	changes  []time.Time // when the leader changed, oldest first
	known    bool        // a first observation arrived
}

func (w *leaderWatch) observe(id string, at time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.known && id != "" && id != w.id {
		w.changes = append(w.changes, at)
	}
	switch {
	case id == "" && (w.noneFrom.IsZero() || !w.known):
		w.noneFrom = at
	case id != "":
		w.noneFrom = time.Time{}
	}
	w.id, w.known = id, true
}

func (w *leaderWatch) get(now time.Time, window time.Duration) (id string, noneFrom time.Time, changes int, known bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.changes = slices.DeleteFunc(w.changes, func(t time.Time) bool { return now.Sub(t) > window })
	return w.id, w.noneFrom, len(w.changes), w.known
}

// checker finds the problems of the cluster. Its state (members seen, first failures) is owned by the
// check loop's goroutine.
type checker struct {
	cfg      Config
	now      func() time.Time
	logger   *slog.Logger
	http     *http.Client
	scheme   string // of the servers' API: http, or https with APICAFile
	token    string // the API token; "" in insecure mode
	servers  members
	clients  members
	store    checkStore
	leader   *leaderWatch
	seen     map[string]registry.Member // "kind/id" -> the member as last seen alive
	gone     map[string]time.Time       // "kind/id" -> when it was first missed
	failedAt map[string]time.Time       // server id -> first failed health check in a row
	// lackingSince: job -> since when no live client could run it.
	lackingSince map[string]time.Time
	// reported: "kind/id" of gone members whose alert is known to be open; if it is then cleared while the
	// member is still gone, an operator cleared it (the member was removed on purpose): forget the member.
	reported map[string]bool
}

// held tells the checker which alerts the last check left open.
func (c *checker) held(keys []string) {
	for _, key := range keys {
		kind, id, _ := strings.Cut(key, "/")
		if kind == kindServerDown || kind == kindClientDown {
			c.reported[strings.TrimSuffix(kind, "-down")+"/"+id] = true
		}
	}
}

func newChecker(cfg Config, now func() time.Time, logger *slog.Logger, servers, clients members, st checkStore, lw *leaderWatch) *checker {
	return &checker{
		cfg: cfg, now: now, logger: logger, http: &http.Client{Timeout: 3 * time.Second}, scheme: "http",
		servers: servers, clients: clients, store: st, leader: lw,
		seen: map[string]registry.Member{}, gone: map[string]time.Time{}, failedAt: map[string]time.Time{},
		lackingSince: map[string]time.Time{}, reported: map[string]bool{},
	}
}

// membership reports servers and clients that were registered and are gone: their ZooKeeper session
// ended. openDown are the member-down alerts open now (from this or an earlier monitor): a member still
// missing stays reported even if this monitor never saw it alive.
func (c *checker) membership(now time.Time, openDown map[string]store.Alert) []Problem {
	live := map[string]registry.Member{}
	for _, m := range c.servers.Members() {
		live["server/"+m.ID] = m
	}
	for _, m := range c.clients.Members() {
		live["client/"+m.ID] = m
	}
	for k, m := range live {
		c.seen[k] = m
		delete(c.gone, k)
		delete(c.reported, k)
	}
	for k := range c.gone {
		kind, id, _ := strings.Cut(k, "/")
		if _, open := openDown[kind+"-down/"+id]; !open && c.reported[k] {
			delete(c.seen, k) // cleared by an operator while still gone: it was removed on purpose
			delete(c.gone, k)
			delete(c.reported, k)
		}
	}
	for k := range c.seen {
		if _, ok := live[k]; !ok {
			if _, ok := c.gone[k]; !ok {
				c.gone[k] = now
			}
		}
	}
	var out []Problem
	for k, since := range c.gone {
		kind, id, _ := strings.Cut(k, "/")
		out = append(out, downProblem(kind, id, since))
	}
	for key, a := range openDown { // a.Kind is server-down or client-down
		kind, id := strings.TrimSuffix(a.Kind, "-down"), strings.TrimPrefix(key, a.Kind+"/")
		k := kind + "/" + id
		_, alive := live[k]
		_, counted := c.gone[k]
		if !alive && !counted {
			out = append(out, downProblem(kind, id, a.Since))
		}
	}
	return out
}

func downProblem(kind, id string, since time.Time) Problem {
	p := problem(kind+"-down", id)
	p.Since = since
	if kind == "server" {
		p.What = fmt.Sprintf("server %s left the cluster: its ZooKeeper session ended", id)
		p.WhatToDo = "Check the server's host and process (its log ends with the reason if it stopped on its own) " +
			"and start it again. The other servers go on; if it led, another one leads now."
	} else {
		p.What = fmt.Sprintf("client %s left the cluster: its ZooKeeper session ended", id)
		p.WhatToDo = "Check the client's host and process and start it again. Its next firings go to other " +
			"clients that serve the same jobs; its runs under way were rerun elsewhere (rerunnable jobs) or are " +
			"orphaned: see `clover exec live`."
	}
	return p
}

// responsiveness reports servers registered in ZooKeeper whose API does not answer, and clients whose
// heartbeat the leader has not heard, for longer than Unresponsive. heard says whether the leader's view of
// heartbeats could be read.
func (c *checker) responsiveness(ctx context.Context, now time.Time, leaderAPI string) (out []Problem, heard bool) {
	servers := c.servers.Members()
	type result struct {
		id string
		ok bool
	}
	results := make(chan result, len(servers))
	for _, m := range servers {
		go func() { results <- result{m.ID, m.APIAddr != "" && c.healthy(ctx, m.APIAddr)} }()
	}
	for range servers {
		r := <-results
		if r.ok {
			delete(c.failedAt, r.id)
			continue
		}
		if _, ok := c.failedAt[r.id]; !ok {
			c.failedAt[r.id] = now
		}
		if since := c.failedAt[r.id]; now.Sub(since) >= c.cfg.Unresponsive {
			p := problem(kindServerSilent, r.id)
			p.Since = since
			p.What = fmt.Sprintf("server %s is registered but its API does not answer", r.id)
			p.WhatToDo = "The process may be hung (a long GC pause, a full disk, a stopped VM). Look at its log " +
				"and its host; restart it if it stays silent: its ZooKeeper session then ends and the others go on."
			out = append(out, p)
		}
	}
	for id := range c.failedAt {
		if !slices.ContainsFunc(servers, func(m registry.Member) bool { return m.ID == id }) {
			delete(c.failedAt, id)
		}
	}
	if leaderAPI == "" {
		return out, false
	}
	var beats []api.ClientHeartbeat
	if err := c.get(ctx, leaderAPI, "/api/v1/heartbeats", &beats); err != nil {
		c.logger.Debug("cannot read the leader's heartbeats", "err", err)
		return out, false
	}
	for _, b := range beats {
		last := b.LastAt
		if b.Since.After(last) {
			last = b.Since // registered again since it was last heard: silent only from then on
		}
		if now.Sub(last) < c.cfg.Unresponsive {
			continue
		}
		p := problem(kindClientSilent, b.Client)
		p.Since = last
		p.What = fmt.Sprintf("client %s is registered but the leader has not heard its heartbeat", b.Client)
		p.WhatToDo = "The client may be hung, or unable to reach the servers over ZeroMQ (a firewall, a wrong " +
			"advertised endpoint). Its runs' leases lapse; look at its log and its network."
		out = append(out, p)
	}
	return out, true
}

func (c *checker) healthy(ctx context.Context, api string) bool {
	return c.get(ctx, api, "/healthz", nil) == nil
}

// get reads a server's API; out, when not nil, receives the JSON answer.
func (c *checker) get(ctx context.Context, api, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.scheme+"://"+api+path, nil)
	if err != nil {
		return err
	}
	if c.token != "" && path != "/healthz" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: HTTP %d", path, resp.StatusCode)
	}
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// leadership reports a cluster without a leader for longer than NoLeader, and a leader that changed
// FlapChanges times within FlapWindow. It returns the leader's API address ("" without one).
func (c *checker) leadership(now time.Time) ([]Problem, string) {
	id, noneFrom, changes, known := c.leader.get(now, c.cfg.FlapWindow)
	var out []Problem
	if known && id == "" && now.Sub(noneFrom) >= c.cfg.NoLeader {
		p := problem(kindNoLeader, "")
		p.Since, p.Where = noneFrom, "cluster "+c.cfg.Cluster
		p.What = "no server leads the cluster: nothing is fired"
		p.WhatToDo = "Start a server, or check why the servers cannot lead (their logs: ZooKeeper or MongoDB " +
			"unreachable, an epoch refused). Missed firings follow each job's misfire policy once one leads."
		out = append(out, p)
	}
	if changes >= c.cfg.FlapChanges {
		p := problem(kindLeaderFlapping, "")
		p.Since, p.Where = now.Add(-c.cfg.FlapWindow), "cluster "+c.cfg.Cluster
		p.What = fmt.Sprintf("the leader changed %d times within %s", changes, c.cfg.FlapWindow)
		p.WhatToDo = "Servers keep losing their ZooKeeper sessions: look for long pauses (GC, swapping), an " +
			"overloaded ZooKeeper or a flaky network, and for a session_timeout too short for them."
		out = append(out, p)
	}
	if id == "" {
		return out, ""
	}
	for _, m := range c.servers.Members() {
		if m.ID == id {
			return out, m.APIAddr
		}
	}
	return out, ""
}

// maxInflightRead is the most executions one check reads from the leader's live view (the API's maximum).
const maxInflightRead = 10_000

// inflight reports, from the leader's view, executions orphaned, overdue, or waiting for a client for
// longer than Waiting.
func (c *checker) inflight(ctx context.Context, now time.Time, leaderAPI string, jobs map[string]job.Spec) (out []Problem, seen bool) {
	if leaderAPI == "" {
		return nil, false
	}
	var flights []api.InFlight
	if err := c.get(ctx, leaderAPI, fmt.Sprintf("/api/v1/inflight?limit=%d", maxInflightRead), &flights); err != nil {
		c.logger.Debug("cannot read the leader's executions in flight", "err", err)
		return nil, false
	}
	// A full page is the oldest part of a backlog: what it shows is raised, but alerts about executions
	// beyond it are kept, not resolved, since they were not seen.
	seen = len(flights) < maxInflightRead
	if !seen {
		c.logger.Warn("the leader holds more executions open than one read shows; alerts about the newest are kept as they are", "read", len(flights))
	}
	for _, f := range flights {
		var p Problem
		switch {
		case f.Status == "orphaned":
			p = problem(kindOrphaned, f.ID)
			p.Since = f.ScheduledAt
			p.What = fmt.Sprintf("execution %s of job %s is orphaned: its client %s vanished while it ran, and the job is not rerunnable", f.ID, f.Job, f.Client)
			p.WhatToDo = "Find out whether it finished on that client, then `clover exec done " + f.ID +
				"` (or `--status failed`), or `clover exec rerun " + f.ID + "` to run it again elsewhere."
		case f.Overdue:
			p = problem(kindOverdue, f.ID)
			p.Since = f.Since
			p.What = fmt.Sprintf("execution %s of job %s runs longer than its overdue limit (on %s)", f.ID, f.Job, f.Client)
			p.WhatToDo = "Look at what it does on " + f.Client + "; stop it with `clover exec stop " + f.ID + "` if it hangs."
		case f.Status == "waiting" && !f.Since.IsZero() && now.Sub(f.Since) >= c.cfg.Waiting:
			p = problem(kindWaiting, f.ID)
			p.Since = f.Since
			p.What = fmt.Sprintf("execution %s of job %s waits for a client that can take it", f.ID, f.Job)
			p.WhatToDo = "No live client serves the job with room, labels and pins that fit: start one, or " +
				"change the job's routing."
		default:
			continue
		}
		p.Contacts = jobs[f.Job].Contacts
		out = append(out, p)
	}
	return out, seen
}

// jobsWithoutClient reports the jobs that no live client can run, before their next firing: once that has
// lasted NoClient (a client restarting, a job just created, are not news), or at once if the job is due
// within NoClient.
func (c *checker) jobsWithoutClient(now time.Time, jobs []job.Spec) []Problem {
	clients := c.clients.Members()
	var out []Problem
	lacking := map[string]bool{}
	for _, spec := range jobs {
		if spec.Paused || slices.ContainsFunc(clients, func(m registry.Member) bool { return canRun(m, spec) }) {
			continue
		}
		s, err := schedule.Parse(spec.Schedule, spec.TimeZone)
		if err != nil {
			continue
		}
		next := s.Next(now)
		if next.IsZero() {
			continue // it never fires again
		}
		lacking[spec.Name] = true
		since, ok := c.lackingSince[spec.Name]
		if !ok {
			since = now
			c.lackingSince[spec.Name] = now
		}
		if now.Sub(since) < c.cfg.NoClient && next.Sub(now) > c.cfg.NoClient {
			continue
		}
		p := problem(kindJobNoClient, spec.Name)
		p.Since = since
		p.What = fmt.Sprintf("job %s has no live client that can run it (next firing %s)", spec.Name, next.UTC().Format(time.RFC3339))
		p.WhatToDo = fmt.Sprintf("Start a client that serves job %s or handler %q", spec.Name, spec.Handler)
		if len(spec.Routing.Labels) > 0 || len(spec.Routing.Clients) > 0 {
			p.WhatToDo += fmt.Sprintf(" and fits its routing (labels %v, clients %v)", spec.Routing.Labels, spec.Routing.Clients)
		}
		p.WhatToDo += ", or pause the job."
		p.Contacts = spec.Contacts
		out = append(out, p)
	}
	for name := range c.lackingSince {
		if !lacking[name] {
			delete(c.lackingSince, name)
		}
	}
	return out
}

// canRun mirrors the leader's eligibility: the client serves the job by name or handler (a local job: by
// name, since only its declaring clients fire it), and fits its pins and labels.
func canRun(m registry.Member, spec job.Spec) bool {
	serves := slices.Contains(m.Jobs, spec.Name) || (spec.Mode != job.ModeLocal && slices.Contains(m.Handlers, spec.Handler))
	if !serves {
		return false
	}
	if pins := spec.Routing.Clients; len(pins) > 0 && !slices.Contains(pins, m.ID) {
		return false
	}
	for k, v := range spec.Routing.Labels {
		if m.Labels[k] != v {
			return false
		}
	}
	return true
}

// failures reports jobs whose latest ended execution failed (timed out included). A job's problem clears
// when a later execution succeeds. openFailing are the job-failing alerts open now, checked again even if
// their failure is no longer among the recent ones.
func (c *checker) failures(ctx context.Context, jobs map[string]job.Spec, openFailing map[string]store.Alert) ([]Problem, error) {
	recent, err := c.store.ListExecutions(ctx, store.ExecutionFilter{State: job.StateFailed, Limit: 50})
	if err != nil {
		return nil, err
	}
	var names []string
	for _, a := range openFailing {
		names = append(names, strings.TrimPrefix(a.Key, kindJobFailing+"/"))
	}
	for _, e := range recent {
		names = append(names, e.Job)
	}
	slices.Sort(names)
	var out []Problem
	for _, name := range slices.Compact(names) {
		if _, exists := jobs[name]; !exists {
			continue // deleted: its history stays, its alert clears
		}
		execs, err := c.store.ListExecutions(ctx, store.ExecutionFilter{Job: name, Limit: 20})
		if err != nil {
			return nil, err
		}
		i := slices.IndexFunc(execs, func(e job.Execution) bool { return e.State.Terminal() && e.State != job.StateSkipped })
		if i < 0 {
			if a, ok := openFailing[kindJobFailing+"/"+name]; ok {
				out = append(out, fromAlert(a)) // nothing ended lately: the failure stands
			}
			continue
		}
		if execs[i].State != job.StateFailed {
			continue
		}
		e := execs[i]
		p := problem(kindJobFailing, name)
		p.Since = e.FinishedAt
		reason := ""
		if e.Result != nil {
			reason = e.Result.Error
		}
		p.What = fmt.Sprintf("job %s failed: execution %s ended %s on %s: %s", name, e.ID, e.FinishedAt.UTC().Format(time.RFC3339), e.Client, reason)
		p.WhatToDo = fmt.Sprintf("Read its output with `clover exec get %s`; the alert clears when a later run succeeds.", e.ID)
		p.Contacts = jobs[name].Contacts
		out = append(out, p)
	}
	return out, nil
}
