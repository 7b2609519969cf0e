// Package registry records which Clover servers and clients are alive, and what each offers, in ZooKeeper,
// and keeps a watched in-memory view of them.
//
// A member registers an ephemeral node <root>/<kind>/<id> (kind "servers" or "clients") holding its Member
// as JSON. The node lives as long as the member's session; Registration keeps it there across session
// expiries (it re-creates the node in the new session) and against deletion by someone else, like Curator's
// PersistentNode. Cache is the reader's side, like Curator's PathChildrenCache: a watch on the children and
// one on each child's data keep a map of members current without polling. Nodes whose data is not a valid
// Member (written by someone else, or by a newer version) are logged once and left out of the view.
//
// While the reader's connection is down the view keeps the last known members: ZooKeeper cannot be asked,
// and callers that must act only on live members check zksession.Session.Healthy first.
//
// Log levels: Info for a member registered or re-registered; Warn for data skipped as invalid, a node held
// by another session, or an unexpected ZooKeeper error.
package registry
