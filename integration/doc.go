// Package integration runs Clover as its users do: real `clover` processes against a real ZooKeeper,
// FerretDB and ZeroMQ, started on free loopback ports in a temp dir and killed when the test ends.
//
// cluster.go is the harness (StartCluster, like etcd's NewCluster); the *_test.go files are the scenarios.
// The load driver (cmd/clover-bench) uses the same harness.
package integration
