// Package client is Clover's worker side: the library an application embeds (or `clover client` runs) to
// serve jobs.
//
// A client registers in ZooKeeper with its ZeroMQ endpoint, capacity, labels, the jobs it declares and the
// handlers it offers. The leader dispatches executions to it over ZeroMQ; the client acknowledges (or
// refuses) each one, runs it, and reports the result to any live server, spreading over them, re-sending
// until a server returns a receipt saying the result is recorded.
//
// Safety rules a client keeps: it ignores dispatches from a leadership epoch older than the newest it has
// seen (a deposed leader), it never starts an execution after the dispatch's accept-by instant (the leader
// may have given it to another client by then), and it runs an execution id at most once however often it
// is sent (a re-sent dispatch gets the same answer again).
package client
