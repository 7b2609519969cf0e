// Package fallback is the queue clients write to when no server takes their reports: the entries a client
// could not deliver (results of runs that finished, acks of runs it fired itself, its application's run
// requests, its declarations) wait in MongoDB, in the order the client queued them, until a leader replays
// them.
//
//	client ──(no receipt for a while)──► Queue.Put ──► MongoDB "fallback" collection ──► leader's replay
//	                                          │                    ▲
//	                                          └──► Spool (local file, fsynced) ──(MongoDB back)──┘
//
// When MongoDB is unreachable as well, Queue keeps the entries in a local spool file and moves them to
// MongoDB once it answers, the spool first so that the order holds. Every entry has a unique id made of the
// client's id, the start time of the process that queued it and a sequence number: moving the spool again
// after a crash inserts nothing twice.
package fallback
