// Package zksession owns Clover's one ZooKeeper connection per process and tells the rest of the process
// what that connection's session is doing.
//
// ZooKeeper ties everything Clover keeps there (candidate nodes of the election, registrations of servers and
// clients) to a session: ephemeral nodes live exactly as long as the session that made them. go-zookeeper's
// Conn hides a lot of that: it reconnects by itself, keeps the session across short disconnects, and after the
// server has expired the session it silently starts a new one, whose id differs and in which the old
// ephemeral nodes no longer exist (outstanding watches then receive EventNotWatching). Session makes those
// transitions visible as State values (Connected with a session id, Disconnected, Expired) so that
// packages election and registry can end a term or re-create a node at the right moment.
//
// It also answers Healthy: whether ZooKeeper confirmed the session recently, measured on the monotonic clock.
// A process that was paused (SIGSTOP, a long GC, a suspended VM) past its session timeout has lost its
// session before the client library has had a chance to notice; a leader asks Healthy before each action so
// that it does not act on leadership it no longer holds.
//
// Log levels: Debug is the client library's own chatter (connects, reconnects); Info is a session state
// change that needs no action (connected, reconnected to the same session); Warn is a session lost
// (disconnected, expired): what was built on it is, or may be, gone.
package zksession
