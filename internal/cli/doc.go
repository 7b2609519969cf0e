// Package cli is the `clover` command line: `clover server` and `clover client` run cluster members, and
// the operator commands (cluster, job, exec) talk to the REST API of any server.
package cli
