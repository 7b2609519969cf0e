// Package transport moves wire frames over ZeroMQ PUSH/PULL.
//
// An Inbox is a bound PULL socket read by one goroutine. An Outbox holds one PUSH socket per peer, so a
// sender can address one peer (the leader dispatching to a chosen client) or spread over several (a client
// reporting to any live server). Every PUSH socket sets ZMQ_IMMEDIATE: a frame is queued only on a completed
// connection, so a send to a peer that is down fails at once (ErrUnavailable) instead of waiting in a queue
// that would be lost with the peer; the caller then picks another peer or retries later. Frames that were
// queued and lost with a dying peer are the business of the layers above (acks, receipts, re-sends).
//
// Concurrency: a ZeroMQ socket must not be used by two goroutines at once. The Inbox socket is used only by
// Run's goroutine. Each Outbox peer socket is guarded by its own mutex, which also gives the memory barrier
// ZeroMQ asks for when a socket moves between threads.
package transport
