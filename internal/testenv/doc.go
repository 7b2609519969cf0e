// Package testenv starts the real services Clover's tests run against (ZooKeeper from Debian's package,
// FerretDB built by scripts/ferretdb.sh) on free loopback ports inside the test's temp dir, and stops them in
// t.Cleanup. Nothing here is faked: a test that needs a service gets the real thing or fails saying how to
// install it (`make deps`).
package testenv
