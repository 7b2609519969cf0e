// Package admin will serve the web console (jobs, executions, logs, the ZooKeeper tree, contacts, charts)
// on top of the REST API in package server. Not written yet: see the open issue.
package admin
