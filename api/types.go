// Package api holds the REST API's request and response types and its route table, shared by the server
// that serves it, the CLI and the monitor that call it, and the console to come. The OpenAPI document
// (GET /api/v1/openapi.json) is generated from the same table, so it cannot drift from what is served.
package api

import (
	"time"

	"github.com/clover-sched/clover/internal/fallback"
	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/jobdiff"
	"github.com/clover-sched/clover/internal/registry"
	"github.com/clover-sched/clover/internal/store"
	"github.com/clover-sched/clover/internal/wire"
)

// Error is the body of every error response.
type Error struct {
	Error string `json:"error"`
}

// ClusterStatus is the answer of GET /api/v1/cluster.
type ClusterStatus struct {
	Server  string            `json:"server"` // the server that answered
	Leader  *LeaderStatus     `json:"leader"`
	Servers []registry.Member `json:"servers"`
	Clients []registry.Member `json:"clients"`
}

// LeaderStatus names the leader and its term.
type LeaderStatus struct {
	ID      string `json:"id"`
	Epoch   int64  `json:"epoch"`
	APIAddr string `json:"api_addr"`
}

// FallbackStatus is the answer of GET /api/v1/fallback: the queue as the store holds it, and, from the
// leader, how its replay goes.
type FallbackStatus struct {
	fallback.Status
	Leader string          `json:"leader,omitempty"`
	Replay *ReplayProgress `json:"replay,omitempty"` // present when the server asked leads
}

// ReplayProgress is what the API shows of the replay by a server's current term.
type ReplayProgress struct {
	Leader        string    `json:"leader"`
	Epoch         int64     `json:"epoch"`
	Applied       int64     `json:"applied"`  // entries this term applied
	Rejected      int64     `json:"rejected"` // entries this term rejected
	LastEntry     string    `json:"last_entry,omitempty"`
	LastAppliedAt time.Time `json:"last_applied_at,omitzero"`
	LastPassAt    time.Time `json:"last_pass_at,omitzero"`
	LastError     string    `json:"last_error,omitempty"`
}

// NextFires is the answer of GET /api/v1/jobs/{name}/next.
type NextFires struct {
	Job      string      `json:"job"`
	Schedule string      `json:"schedule"`
	TimeZone string      `json:"time_zone"`
	Next     []time.Time `json:"next"`
}

// TriggerRequest is the (optional) body of POST /api/v1/jobs/{name}/trigger: parameters that add to and
// override the job's for this firing.
type TriggerRequest struct {
	Params map[string]string `json:"params,omitempty"`
}

// TriggerResponse names the execution a trigger made (a sharded firing's executions are id~0, id~1...).
type TriggerResponse struct {
	Execution string `json:"execution"`
}

// ExecActionRequest is the body of POST /api/v1/executions/{id}/{stop,rerun,done}.
type ExecActionRequest struct {
	Status job.State `json:"status,omitempty"` // done: succeeded or failed
	Note   string    `json:"note,omitempty"`   // who decided and why; recorded with the event
}

// ExecActionResponse acknowledges an action on an execution.
type ExecActionResponse struct {
	Execution string `json:"execution"`
	Action    string `json:"action"`
}

// InFlight is the leader's live view of an execution it follows.
type InFlight struct {
	ID          string     `json:"id"`
	Job         string     `json:"job"`
	Status      string     `json:"status"` // waiting, queued, dispatched, running, stopping, retrying, orphaned, reporting, held, checking
	Client      string     `json:"client,omitempty"`
	Attempt     int        `json:"attempt"`
	Run         int        `json:"run"`
	ScheduledAt time.Time  `json:"scheduled_at"`
	Since       time.Time  `json:"since,omitzero"` // running since (ack), waiting since (fired), or next retry time
	Overdue     bool       `json:"overdue,omitempty"`
	Shard       *job.Shard `json:"shard,omitempty"`
	// Progress is what the run's handler last reported (percent, message, when); nil before any report.
	Progress *wire.Progress `json:"progress,omitempty"`
}

// Backlog is the leader's view of the executions it holds open, by status, and of how close it is to the
// limits that bound them (limits.backlog, limits.backlog_mib): at either, scheduled firings wait and their
// times go to the jobs' misfire policies.
type Backlog struct {
	Open     int            `json:"open"`      // executions the leader follows
	ByStatus map[string]int `json:"by_status"` // the same, by InFlight.Status
	// Waiting are those held waiting for a client or their job's earlier runs (the backlog), and the
	// memory they hold, estimated.
	Waiting  int   `json:"waiting"`
	Bytes    int64 `json:"bytes"`
	Limit    int   `json:"limit"`
	LimitMiB int   `json:"limit_mib"`
	Full     bool  `json:"full"` // scheduled firings are held back now
	// Misfired counts executions of this term that no client could take within the misfire threshold and
	// that their job's misfire policy skipped.
	Misfired int64 `json:"misfired"`
	// InsertBatch is how many executions the leader now records in one insert (sized to the store).
	InsertBatch int `json:"insert_batch"`
}

// ClientHeartbeat is when the leader last heard a client's heartbeat; the monitor alerts on a client that
// is registered but silent.
type ClientHeartbeat struct {
	Client string    `json:"client"`
	LastAt time.Time `json:"last_at,omitzero"` // zero: not heard in this leader's term
	Since  time.Time `json:"registered_at"`    // when this term saw the client registered
}

// ContactRequest is the body of POST /api/v1/contacts.
type ContactRequest struct {
	Name    string `json:"name"`
	Email   string `json:"email"`
	Webhook string `json:"webhook,omitempty"`
}

// Cleared acknowledges POST /api/v1/alerts/clear.
type Cleared struct {
	Cleared string `json:"cleared"`
}

// ZNode is one node of Clover's ZooKeeper tree, as GET /api/v1/zookeeper shows it.
type ZNode struct {
	Path     string   `json:"path"`
	Data     string   `json:"data,omitempty"`     // the data as text (indented when it is JSON)
	Binary   bool     `json:"binary,omitempty"`   // the data is not text: Data holds its size only
	Children []string `json:"children,omitempty"` // names, sorted
	ACL      []string `json:"acl"`                // "scheme:id perms", as zkCli shows them
	// EphemeralOwner is the session that owns an ephemeral node (hex), "" for a persistent one.
	EphemeralOwner string    `json:"ephemeral_owner,omitempty"`
	Version        int32     `json:"version"`
	ModifiedAt     time.Time `json:"modified_at"`
}

// Activity is the answer of GET /api/v1/activity: what the leader fired and how executions ended, minute
// by minute, oldest first. The leader counts in memory since its term began (Since): a new leader starts
// from nothing.
type Activity struct {
	Leader  string           `json:"leader"`
	Since   time.Time        `json:"since"`
	Minutes []ActivityMinute `json:"minutes"`
}

// ActivityMinute is one minute of Activity.
type ActivityMinute struct {
	At time.Time `json:"at"`
	ActivityCounts
}

// ActivityCounts counts one minute: firings recorded to run, executions that ended by outcome, and
// first dispatches more than a second after their scheduled time.
type ActivityCounts struct {
	Fired     int `json:"fired"`
	Succeeded int `json:"succeeded"`
	Failed    int `json:"failed"`
	Skipped   int `json:"skipped"`
	Late      int `json:"late"`
}

// OutputChunk is a piece of a run's output. Offsets count the bytes the run wrote from its start: ask
// again from Next for what follows, nothing is given twice. Offset is past the offset asked for when the
// bytes asked for are no longer kept (a client keeps a long output's last part, the store its last 4 KiB).
type OutputChunk struct {
	Execution string `json:"execution"`
	Run       int    `json:"run"`
	Offset    int64  `json:"offset"`
	// Text is the bytes from Offset, as text (bytes that are not UTF-8 show as U+FFFD); a chunk never
	// ends inside a character unless the run ended there.
	Text string `json:"text"`
	Next int64  `json:"next"` // the offset after Text's bytes
	End  int64  `json:"end"`  // how many bytes the run has written so far (known so far)
	// First is the oldest offset still kept: asking from before it gives what follows it.
	First int64 `json:"first"`
	// Ended: the run ended and End is final; nothing follows Next = End.
	Ended bool `json:"ended"`
	// Source says where the bytes come from: "client" (the run's client, live), "stored" (the run's
	// reported tail) or "none" (nothing yet: the run has not started, or its client did not answer).
	Source string `json:"source"`
	Client string `json:"client,omitempty"`
}

// RevisionPage is a page of a job's definition history, newest first: the versions in [Before-Limit,
// Before) that are kept (pruned ones are missing). Ask for the next page with before=Next (0: none).
type RevisionPage struct {
	Job       string           `json:"job"`
	Latest    int64            `json:"latest"`  // the job's newest version (its deletion's, if it was deleted)
	Deleted   bool             `json:"deleted"` // the job is deleted: restore brings it back
	Revisions []store.Revision `json:"revisions"`
	Next      int64            `json:"next,omitempty"`
}

// JobDiff is what changed in a job's definition from one version to another, field by field.
type JobDiff struct {
	Job     string           `json:"job"`
	From    int64            `json:"from"`
	To      int64            `json:"to"`
	Changes []jobdiff.Change `json:"changes"`
}

// RollbackRequest is the body of POST /api/v1/jobs/{name}/rollback: make a new version equal to Version,
// provided the job is still at Expect (the version the caller last saw).
type RollbackRequest struct {
	Version int64  `json:"version"`
	Expect  int64  `json:"expect"`
	Message string `json:"message,omitempty"`
}

// RestoreRequest is the (optional) body of POST /api/v1/jobs/{name}/restore.
type RestoreRequest struct {
	Message string `json:"message,omitempty"`
}

// TagRequest is the body of POST /api/v1/jobs/{name}/revisions/{version}/tags.
type TagRequest struct {
	Tag string `json:"tag"`
}
