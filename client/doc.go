// Package client is Clover's worker side: the library an application embeds (or `clover client` runs) to
// serve jobs.
//
// A client registers in ZooKeeper with its ZeroMQ endpoint, capacity, width, labels, the jobs it declares
// and the handlers it offers. The leader dispatches executions to it over ZeroMQ; the client acknowledges
// (or refuses) each one, runs it, and reports the result to any live server, spreading over them,
// re-sending until a server returns a receipt saying the result is recorded. Every lease_renew it sends a
// heartbeat listing the executions it runs (to the leader when it knows it, else to any server), which
// renews their leases: the leader treats a run no heartbeat lists for a while as lost. The leader may ask
// it to stop a run: the run's context is canceled (a shell command's whole process group is killed) and it
// reports a final failure, which no retry follows.
//
// A retry is a new run of the same execution id (Dispatch.Run 2, 3...): every ack and result names its
// run, so that the reports of two runs are never confused.
//
// Jobs declared in local mode are fired by the client itself, on its own clock: the ack of such a run
// carries the execution, which servers record, and goes out at once. A firing while the job's previous run
// is still under way is skipped, and fire times missed while the client was down are not caught up.
//
// Safety rules a client keeps: it ignores dispatches and stops from a leadership epoch older than the
// newest it has seen (a deposed leader), it never starts an execution after the dispatch's accept-by
// instant (the leader may have given it to another client by then), and it runs each run of an execution
// id at most once however often it is sent (a re-sent dispatch gets the same answer again).
package client
