package api

import (
	"net/http"

	"github.com/clover-sched/clover/internal/job"
	"github.com/clover-sched/clover/internal/keyring"
	"github.com/clover-sched/clover/internal/store"
	"github.com/clover-sched/clover/internal/workflow"
)

// Route is one operation of the REST API. The server serves exactly the routes of Routes (it refuses to
// start otherwise), and the OpenAPI document describes exactly them.
type Route struct {
	Method  string
	Path    string // a net/http pattern path: /api/v1/jobs/{name}
	Summary string
	// Leader: a write made by the leader; any other server forwards it there.
	Leader bool
	// Role is the least role a caller's token must have (keyring.Roles).
	Role     string
	Query    []Param
	Body     any // the request body's type (a zero value), nil when none
	Status   int // the status of a success
	Response any // the success body's type (a zero value), nil when none
	// MaxBody bounds the request body, in bytes; 0: 1 MiB.
	MaxBody int64
}

// Pattern is the route as a net/http ServeMux pattern: "GET /api/v1/jobs".
func (r Route) Pattern() string { return r.Method + " " + r.Path }

// Param is a query parameter.
type Param struct {
	Name, Description string
}

// messageParam is the message a job change records in its revision (see GET /api/v1/jobs/{name}/revisions).
var messageParam = Param{"message", "why: recorded with the revision the change makes (at most 1000 bytes)"}

// Routes is the REST API.
var Routes = []Route{
	{Method: "GET", Path: "/api/v1/openapi.json", Role: keyring.RoleViewer, Summary: "This document.", Status: http.StatusOK, Response: map[string]any{}},
	{Method: "GET", Path: "/api/v1/cluster", Role: keyring.RoleViewer, Summary: "The leader, the servers and the clients, as ZooKeeper shows them.", Status: http.StatusOK, Response: ClusterStatus{}},

	{Method: "GET", Path: "/api/v1/jobs", Role: keyring.RoleViewer, Summary: "Every job; with any of the parameters, a page of them in name order.", Status: http.StatusOK, Response: []job.Spec{},
		Query: []Param{{"limit", "1-1000 (default 100 when any of these is given)"}, {"after", "the last name of the previous page"},
			{"q", "name, handler or source contains this (any case)"}, {"state", "paused or active"},
			{"handler", "this handler"}, {"source", "this source (api, client:<id>)"}, {"client", "pinned to this client"},
			{"label", "asks its clients for this label (name=value)"}, {"contact", "names this contact"}}},
	{Method: "POST", Path: "/api/v1/jobs", Role: keyring.RoleAdmin, Summary: "Create a job.", Leader: true, Body: job.Spec{}, Status: http.StatusCreated, Response: job.Spec{}, Query: []Param{messageParam}},
	{Method: "GET", Path: "/api/v1/jobs/{name}", Role: keyring.RoleViewer, Summary: "One job.", Status: http.StatusOK, Response: job.Spec{}},
	{Method: "PUT", Path: "/api/v1/jobs/{name}", Role: keyring.RoleAdmin, Summary: "Replace a job; conditional on the version it carries.", Leader: true, Body: job.Spec{}, Status: http.StatusOK, Response: job.Spec{}, Query: []Param{messageParam}},
	{Method: "DELETE", Path: "/api/v1/jobs/{name}", Role: keyring.RoleAdmin, Summary: "Delete a job.", Leader: true, Status: http.StatusNoContent, Query: []Param{messageParam}},
	{Method: "POST", Path: "/api/v1/jobs:batch", Role: keyring.RoleAdmin, Summary: "Create, update and delete up to 1,000 jobs at once; each operation succeeds or fails on its own, with the status its single-job route would answer.",
		Leader: true, Body: BatchRequest{}, Status: http.StatusOK, Response: BatchResponse{}, MaxBody: MaxBatchBody, Query: []Param{messageParam}},
	{Method: "GET", Path: "/api/v1/jobs/{name}/next", Role: keyring.RoleViewer, Summary: "The job's next fire times.", Status: http.StatusOK, Response: NextFires{},
		Query: []Param{{"n", "how many (1-1000, default 10)"}}},
	{Method: "GET", Path: "/api/v1/jobs/{name}/revisions", Role: keyring.RoleViewer, Summary: "The job's definition history, newest first, a page of versions at a time (a deleted job's too).", Status: http.StatusOK, Response: RevisionPage{},
		Query: []Param{{"before", "versions before this one (default: all up to the newest)"}, {"limit", "how many versions a page spans, 1-1000 (default 50)"}, {"tagged", "true: only the tagged revisions"}}},
	{Method: "GET", Path: "/api/v1/jobs/{name}/revisions/{version}", Role: keyring.RoleViewer, Summary: "One revision: the definition at that version, who made it, when, why.", Status: http.StatusOK, Response: store.Revision{}},
	{Method: "GET", Path: "/api/v1/jobs/{name}/diff", Role: keyring.RoleViewer, Summary: "What changed in the definition between two versions, field by field.", Status: http.StatusOK, Response: JobDiff{},
		Query: []Param{{"from", "the older version (default: the one before to)"}, {"to", "the newer version (default: the newest)"}}},
	{Method: "POST", Path: "/api/v1/jobs/{name}/rollback", Role: keyring.RoleAdmin, Summary: "Make a new version equal to an earlier one, provided the job is still at the version expected.", Leader: true, Body: RollbackRequest{}, Status: http.StatusOK, Response: job.Spec{}},
	{Method: "POST", Path: "/api/v1/jobs/{name}/restore", Role: keyring.RoleAdmin, Summary: "Bring a deleted job back as it was deleted, as a new version.", Leader: true, Body: RestoreRequest{}, Status: http.StatusCreated, Response: job.Spec{}},
	{Method: "POST", Path: "/api/v1/jobs/{name}/revisions/{version}/tags", Role: keyring.RoleAdmin, Summary: "Tag a revision: tagged revisions are never pruned.", Leader: true, Body: TagRequest{}, Status: http.StatusOK, Response: store.Revision{}},
	{Method: "DELETE", Path: "/api/v1/jobs/{name}/revisions/{version}/tags/{tag}", Role: keyring.RoleAdmin, Summary: "Remove a revision's tag.", Leader: true, Status: http.StatusOK, Response: store.Revision{}},
	{Method: "POST", Path: "/api/v1/jobs/{name}/trigger", Role: keyring.RoleOperator, Summary: "Fire the job now, with parameters over its own.", Leader: true, Body: TriggerRequest{}, Status: http.StatusAccepted, Response: TriggerResponse{}},
	{Method: "POST", Path: "/api/v1/jobs/{name}/pause", Role: keyring.RoleOperator, Summary: "Pause the job: it does not fire until resumed.", Leader: true, Status: http.StatusOK, Response: job.Spec{}, Query: []Param{messageParam}},
	{Method: "POST", Path: "/api/v1/jobs/{name}/resume", Role: keyring.RoleOperator, Summary: "Resume the job; what it missed goes to its misfire policy.", Leader: true, Status: http.StatusOK, Response: job.Spec{}, Query: []Param{messageParam}},

	{Method: "GET", Path: "/api/v1/batches", Role: keyring.RoleViewer, Summary: "Every batch (a named graph of jobs), by name.", Status: http.StatusOK, Response: []store.Batch{}},
	{Method: "GET", Path: "/api/v1/batches/{name}", Role: keyring.RoleViewer, Summary: "One batch's latest definition.", Status: http.StatusOK, Response: workflow.Definition{}},
	{Method: "PUT", Path: "/api/v1/batches/{name}", Role: keyring.RoleAdmin, Summary: "Create a batch (version 0) or replace it at the version it carries; every node's job must exist. Runs under way keep the version they started with.", Leader: true, Body: workflow.Definition{}, Status: http.StatusOK, Response: workflow.Definition{}, Query: []Param{messageParam}},
	{Method: "DELETE", Path: "/api/v1/batches/{name}", Role: keyring.RoleAdmin, Summary: "Delete a batch; its revisions and runs are kept.", Leader: true, Status: http.StatusNoContent, Query: []Param{messageParam, {"version", "only if the batch is at this version"}}},
	{Method: "GET", Path: "/api/v1/batches/{name}/revisions", Role: keyring.RoleViewer, Summary: "The batch's definition history, newest first.", Status: http.StatusOK, Response: []store.BatchRevision{}},
	{Method: "POST", Path: "/api/v1/batches/{name}/revisions/{version}/tags", Role: keyring.RoleAdmin, Summary: "Tag a version of a batch (a release, an audit mark).", Leader: true, Body: TagRequest{}, Status: http.StatusOK, Response: store.BatchRevision{}},
	{Method: "DELETE", Path: "/api/v1/batches/{name}/revisions/{version}/tags/{tag}", Role: keyring.RoleAdmin, Summary: "Remove a tag of a batch's version.", Leader: true, Status: http.StatusOK, Response: store.BatchRevision{}},
	{Method: "POST", Path: "/api/v1/batches/{name}/runs", Role: keyring.RoleOperator, Summary: "Start a run of the batch for a cycle (refused if the cycle has one, unless rerun).", Leader: true, Body: BatchRunRequest{}, Status: http.StatusCreated, Response: store.BatchRun{}},
	{Method: "GET", Path: "/api/v1/batches/{name}/runs", Role: keyring.RoleViewer, Summary: "The batch's runs, newest first.", Status: http.StatusOK, Response: []store.BatchRun{},
		Query: []Param{{"limit", "1-1000 (default 50)"}, {"open", "true: only runs under way (running, paused, stopping)"}}},
	{Method: "GET", Path: "/api/v1/batches/{name}/runs/{cycle}", Role: keyring.RoleViewer, Summary: "A run and where each node stands (partitions counted by state), its executions under way and the operations asked of it.", Leader: true, Status: http.StatusOK, Response: BatchRunStatus{}},
	{Method: "GET", Path: "/api/v1/batches/{name}/runs/{cycle}/executions", Role: keyring.RoleViewer, Summary: "The run's executions (those that ended, then those under way), at most 500: the console's Gantt; with state=failed, the run's exceptions.", Leader: true, Status: http.StatusOK, Response: []job.Execution{},
		Query: []Param{{"state", "only those in this state (failed: what went wrong in the run)"}}},
	{Method: "POST", Path: "/api/v1/batches/{name}/runs/{cycle}/pause", Role: keyring.RoleOperator, Summary: "Pause the run: no node starts; those running finish.", Leader: true, Body: BatchOperationRequest{}, Status: http.StatusOK, Response: store.BatchRun{}},
	{Method: "POST", Path: "/api/v1/batches/{name}/runs/{cycle}/resume", Role: keyring.RoleOperator, Summary: "Resume a paused run.", Leader: true, Body: BatchOperationRequest{}, Status: http.StatusOK, Response: store.BatchRun{}},
	{Method: "POST", Path: "/api/v1/batches/{name}/runs/{cycle}/stop", Role: keyring.RoleOperator, Summary: "Stop the run: its running executions are stopped and nothing more starts.", Leader: true, Body: BatchOperationRequest{}, Status: http.StatusOK, Response: store.BatchRun{}},
	{Method: "POST", Path: "/api/v1/batches/{name}/runs/{cycle}/rerun", Role: keyring.RoleOperator, Summary: "Rerun from the point of failure: what succeeded is kept; what failed, was stopped or was blocked runs again.", Leader: true, Body: BatchOperationRequest{}, Status: http.StatusOK, Response: store.BatchRun{}},
	{Method: "POST", Path: "/api/v1/batches/{name}/runs/{cycle}/reset", Role: keyring.RoleOperator, Summary: "Put every node back to not started (nothing may be running); the run is paused until resumed.", Leader: true, Body: BatchOperationRequest{}, Status: http.StatusOK, Response: store.BatchRun{}},
	{Method: "POST", Path: "/api/v1/batches/{name}/runs/{cycle}/nodes/{node}/skip", Role: keyring.RoleOperator, Summary: "Mark a node that is not running succeeded, by hand (recorded with who and why): the nodes after it go on.", Leader: true, Body: BatchOperationRequest{}, Status: http.StatusOK, Response: store.BatchRun{}},

	{Method: "GET", Path: "/api/v1/resources", Role: keyring.RoleViewer, Summary: "The counted resources batch nodes hold units of, and their capacities.", Status: http.StatusOK, Response: []store.Resource{}},
	{Method: "PUT", Path: "/api/v1/resources/{name}", Role: keyring.RoleAdmin, Summary: "Set a counted resource's capacity; executions waiting for it go as soon as it fits.", Leader: true, Body: ResourceRequest{}, Status: http.StatusOK, Response: store.Resource{}},

	{Method: "GET", Path: "/api/v1/executions", Role: keyring.RoleViewer, Summary: "Executions, newest first: the open ones and the history (or the archive).", Status: http.StatusOK, Response: []job.Execution{},
		Query: []Param{
			{"job", "only this job's"}, {"state", "pending, running, retrying, orphaned, succeeded, failed or skipped"},
			{"limit", "1-1000"}, {"before", "scheduled before this RFC 3339 time (paging)"},
			{"before_id", "with before: after this id among those scheduled at before"}, {"archived", "true: from the archive"},
			{"client", "only those whose last run was on this client (needs since)"}, {"text", "only those whose error or output contains this (any case; needs since)"},
			{"since", "only those scheduled at or after this RFC 3339 time; at most 31 days back with text or client"},
		}},
	{Method: "GET", Path: "/api/v1/executions/{id}", Role: keyring.RoleViewer, Summary: "One execution, with every run.", Status: http.StatusOK, Response: job.Execution{}},
	{Method: "GET", Path: "/api/v1/executions/{id}/output", Role: keyring.RoleViewer, Summary: "The output of one run, from a byte offset: asked of the client while the run is under way, from the stored tail after it ended. Follow it by asking again from next.", Status: http.StatusOK, Response: OutputChunk{},
		Query: []Param{{"offset", "the byte offset to read from (default: the last max bytes)"}, {"max", "1-65536 bytes (default 65536)"}, {"run", "which run (default: the newest)"}}},
	{Method: "POST", Path: "/api/v1/executions/{id}/stop", Role: keyring.RoleOperator, Summary: "Stop the execution: its client kills the run.", Leader: true, Body: ExecActionRequest{}, Status: http.StatusAccepted, Response: ExecActionResponse{}},
	{Method: "POST", Path: "/api/v1/executions/{id}/rerun", Role: keyring.RoleOperator, Summary: "Run an orphaned execution again, on another client.", Leader: true, Body: ExecActionRequest{}, Status: http.StatusAccepted, Response: ExecActionResponse{}},
	{Method: "POST", Path: "/api/v1/executions/{id}/done", Role: keyring.RoleOperator, Summary: "End an orphaned execution as succeeded or failed.", Leader: true, Body: ExecActionRequest{}, Status: http.StatusAccepted, Response: ExecActionResponse{}},
	{Method: "GET", Path: "/api/v1/inflight", Role: keyring.RoleViewer, Summary: "The leader's live view of the open executions, oldest first.", Leader: true, Status: http.StatusOK, Response: []InFlight{},
		Query: []Param{{"job", "only this job's"}, {"limit", "at most this many (default 1000, at most 10000)"}}},
	{Method: "GET", Path: "/api/v1/backlog", Role: keyring.RoleViewer, Summary: "How many executions the leader holds open, by status, and how close it is to its backlog limits.", Leader: true, Status: http.StatusOK, Response: Backlog{}},
	{Method: "GET", Path: "/api/v1/activity", Role: keyring.RoleViewer, Summary: "What the leader fired and how executions ended, minute by minute (the console's charts), since its term began.", Leader: true, Status: http.StatusOK, Response: Activity{},
		Query: []Param{{"minutes", "how many of the last minutes (1-1440, default 60)"}}},
	{Method: "GET", Path: "/api/v1/heartbeats", Role: keyring.RoleViewer, Summary: "When the leader last heard each client.", Leader: true, Status: http.StatusOK, Response: []ClientHeartbeat{}},

	{Method: "GET", Path: "/api/v1/fallback", Role: keyring.RoleViewer, Summary: "The fallback queue, and the leader's replay of it.", Status: http.StatusOK, Response: FallbackStatus{}},
	{Method: "GET", Path: "/api/v1/alerts", Role: keyring.RoleViewer, Summary: "Alerts, open ones by default.", Status: http.StatusOK, Response: []store.Alert{},
		Query: []Param{{"state", "open (default), cleared or all"}}},
	{Method: "POST", Path: "/api/v1/alerts/clear", Role: keyring.RoleOperator, Summary: "Clear an open alert.", Status: http.StatusOK, Response: Cleared{},
		Query: []Param{{"key", "the alert's key (required)"}}},
	{Method: "GET", Path: "/api/v1/contacts", Role: keyring.RoleViewer, Summary: "Contacts alerts are sent to.", Status: http.StatusOK, Response: []store.Contact{}},
	{Method: "POST", Path: "/api/v1/contacts", Role: keyring.RoleAdmin, Summary: "Add or replace a contact.", Body: ContactRequest{}, Status: http.StatusCreated, Response: store.Contact{}},
	{Method: "GET", Path: "/api/v1/contacts/{name}", Role: keyring.RoleViewer, Summary: "One contact.", Status: http.StatusOK, Response: store.Contact{}},
	{Method: "DELETE", Path: "/api/v1/contacts/{name}", Role: keyring.RoleAdmin, Summary: "Delete a contact.", Status: http.StatusNoContent},
	{Method: "GET", Path: "/api/v1/audit", Role: keyring.RoleAdmin, Summary: "The audit log: every write through the API, who made it and its outcome, newest first.", Status: http.StatusOK, Response: []store.AuditEntry{},
		Query: []Param{{"who", "only this caller's"}, {"before", "made before this RFC 3339 time (paging)"}, {"before_id", "with before: also those made at that time whose id sorts before this one (the last of the previous page)"}, {"limit", "1-1000, default 100"}}},
	{Method: "GET", Path: "/api/v1/notifications", Role: keyring.RoleViewer, Summary: "Notifications sent or queued, newest first.", Status: http.StatusOK, Response: []store.Notification{},
		Query: []Param{{"alert", "only this alert's"}, {"limit", "1-1000, default 100"}}},
	{Method: "GET", Path: "/api/v1/zookeeper", Role: keyring.RoleAdmin, Summary: "One node of Clover's ZooKeeper tree, read-only: its data, children, ACL and the session that owns it if ephemeral (admins: ACLs name digest users).", Status: http.StatusOK, Response: ZNode{},
		Query: []Param{{"path", "a node at or under the cluster's root (default: the root)"}}},
}
