package client

import (
	"fmt"
	"runtime"
	"syscall"
)

// Capacity per CPU when none is configured. Jobs mostly wait (on a database, a file transfer, a remote
// call), so a client takes several per CPU; the CPU they do use is the jobs' share only (see spawner), so
// too many at once slows the jobs, not the client. 32 rather than 16: jobs due on the same second must
// find slots at once, or the later half of them waits for the first (docs/design.md, 19).
const (
	capacityPerCPU = 32
	minCapacity    = 8
	// filesPerRun is how many descriptors a shell run may hold in the client: its output file or pipes,
	// the process's pidfd, the journal files it writes.
	filesPerRun = 8
)

// DefaultCapacity is the capacity of a client that sets none: capacityPerCPU runs per CPU this process
// may use, at least minCapacity, and no more than its open-file limit allows. why says how it was derived,
// for the start log.
func DefaultCapacity() (n int, why string) {
	cpus := runtime.GOMAXPROCS(0) // the CPUs this process may use (affinity, cgroup quota), not the host's
	n = max(capacityPerCPU*cpus, minCapacity)
	why = fmt.Sprintf("%d per CPU x %d CPUs", capacityPerCPU, cpus)
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < 1<<40 { // larger: unlimited
		// Half the descriptors stay for ZooKeeper, ZeroMQ, the metrics listener and the fallback queue.
		if byFiles := int(lim.Cur / 2 / filesPerRun); byFiles < n {
			n = max(byFiles, 1)
			why = fmt.Sprintf("bounded by the open-file limit %d", lim.Cur)
		}
	}
	return n, why
}
