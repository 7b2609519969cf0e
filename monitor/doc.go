// Package monitor will watch the cluster from outside (dead servers and clients, stuck and overdue
// executions, a missing leader) and mail the people responsible. It runs as its own process, elected like
// the servers, so that monitoring survives the loss of what it watches. Not written yet: see the open issue.
package monitor
