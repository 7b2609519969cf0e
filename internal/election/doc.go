// Package election elects one leader among Clover servers with ZooKeeper, in the shape of etcd's
// concurrency.Election: Campaign blocks until the caller leads and returns a Term, Resign hands leadership
// on, Leader and Observe tell anyone (followers, clients) who leads.
//
// Each candidate holds one ephemeral sequential node under the election path, named
// "_c_<guid>-n_<10-digit sequence>" (the "_c_<guid>-" prefix lets a candidate find its node again after a
// connection loss during the create, as Curator's protected mode does). The candidate with the lowest
// sequence leads. Every other candidate watches only the node just before its own, so a leader's departure
// wakes exactly one candidate, not all of them (no herd effect). Children with other names are ignored.
//
// Fencing. A term's epoch is the leader node's sequence number plus one (so every epoch is positive). ZooKeeper numbers the children of one parent
// from a counter that only grows, so a node created later always has a larger number. Suppose leader L2
// follows leader L1. When L1 led, its node n1 was the lowest existing one. Had n2 been created before n1,
// it would have had a lower number and been there when n1 led (a candidate's node only disappears, it never
// returns), so n1 would not have been the lowest. Hence n2 was created after n1 and n2 > n1. The same node
// never leads two terms: a Term ends for good, and the next Campaign retires the old node and creates a new
// one. So epochs strictly grow from term to term, for as long as the election's parent node exists (deleting
// it restarts the counter: never do that). Anyone receiving a message stamped with an epoch lower than one
// it has seen ignores it, which fences off a former leader that has not yet noticed it was deposed.
//
// A Term ends (Done closes) as soon as leadership can no longer be proven: when the connection is lost
// (Disconnected, even if the session may survive: as Curator's LeaderLatch treats SUSPENDED), when the
// session expires, when the node is deleted, or on Resign. Within a term, a leader should still check
// zksession.Session.Healthy before each action: the client library learns of a lost session only when it
// next hears from the network, which a paused process does not.
//
// Log levels: Info for won or lost leadership; Warn for a term that ended without Resign.
package election
