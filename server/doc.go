// Package server is a Clover server: one member of the HA cluster.
//
// Every server registers itself in ZooKeeper, keeps a watched view of the clients and of the other servers,
// receives acknowledgements and results from clients over ZeroMQ (intake.go) and records them in MongoDB,
// and serves the REST API (api.go). One server at a time leads (leadership.go): it alone fires jobs and
// dispatches executions (leader.go, dispatch.go). The others are hot standbys that forward API writes and the
// reports they receive to the leader.
//
//	         ZooKeeper: election, registry of servers and clients
//	               │
//	client ──ack/result──▶ any server ──persist──▶ MongoDB
//	   ▲                       │ forward
//	   │                       ▼
//	   └──────dispatch──── leader ──insert executions──▶ MongoDB
//
// Where to look: the leader loop is leader.go (run), the dispatch path is dispatch.go, the store is
// internal/store.
package server
