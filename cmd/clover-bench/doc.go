// Command clover-bench is Clover's load driver: it starts real clusters with the integration harness
// (ZooKeeper, FerretDB, `clover server` and `clover client` processes, plus clients embedded in this
// process where a scenario needs Go handlers), drives them and prints one table of figures per scenario.
// The figures are measurements, not pass/fail: each is printed beside the aim it is compared with.
//
//	go run ./cmd/clover-bench                     # every scenario at the scale (about 25 minutes)
//	go run ./cmd/clover-bench -quick              # 10x fewer jobs, short windows
//	go run ./cmd/clover-bench -scenario burst -jobs 2000 -v
//	go run ./cmd/clover-bench -scenario overload,gofunc -old OLD/clover -old-label acd91ff  # bench-compare
//
// Every run that includes shell, gofunc or overload first measures the machine's ceilings (their own
// table): how many runs a second of each scenario's shell command Go can start and reap (as `clover client`
// runs it, and bare `sh -c`), and how fast FerretDB takes raw small documents and Clover-shaped executions
// in bulk (on a FerretDB of its own, before any cluster starts). Throughputs are then also printed as
// fractions of them.
//
// Scenarios:
//
//   - ceilings: the ceilings alone.
//   - shell: 1,000 shell jobs (`true`) every second on 1 server and 2 `clover client` processes. Executions
//     per second fired and finished against those scheduled, fire lateness from the leader's histogram,
//     server memory over the window; what finished as a fraction of the spawn ceiling of `true`.
//   - gofunc: 5,000 no-op Go-function jobs every second on 1 server and 4 clients embedded in this process;
//     handler runs per second, and what the store recorded as a fraction of the Clover-shaped store ceiling.
//   - overload: the Dkron comparison against the machine: shell jobs every second, each appending a line to a
//     ledger, on 1 server and 2 `clover client` processes at their default capacity, at 50%, 100% and 200%
//     of the spawn ceiling (-levels), each level on its own cluster for 5 minutes (20 s with -quick): what
//     ran (from the ledger) against the ceiling and the schedule, lateness, what was skipped by policy,
//     runs made twice, orphans, clients' lost ZooKeeper sessions and whether the leader's memory stayed flat.
//   - burst: 10,000 one-shot (@at) jobs due in the same second on 4 embedded clients: how long until every
//     one has started, and whether any was dropped or ran twice.
//   - failover: 2 servers; time from SIGKILL, and from SIGTERM (the leader resigns), of the leader until
//     the standby leads.
//   - history: 2 servers over a store filled with 0, 100,000 and 1,000,000 ended executions: takeover
//     after SIGKILL and the reads of operators and the monitor at each size.
//   - soak (only when named; an hour): 200 no-op Go jobs every second with history.keep 10 minutes and
//     the leader SIGKILLed every 10 minutes; what the store holds, the leader's memory and the takeovers,
//     every minute.
//
// -binary runs the clusters on a given clover binary instead of one built from this tree. -old runs each
// scenario first against an older binary (insecure: acd91ff predates keys, CURVE and tokens), then against
// the new one, and prints their tables merged, old and new side by side; the ceilings are measured once.
// `make bench-compare` builds OLD's binary (default acd91ff) in a temporary git worktree and does that.
// Figures the older binary does not have (a metric added since) are read another way where one exists
// (client session expiries from their logs, finished executions from its execution_events) or left blank.
// history and soak read the store in its current layout (the open set, history buckets) and burst writes
// jobs straight into it: compare those only against binaries that share that layout.
//
// Members run as in production, not as in tests: servers keep their default ack timeout and accept window
// and everything logs at info. Each table also says how busy each kind of process kept the CPUs, so that
// a figure taken while something else loaded the machine can be told apart.
//
// Everything the run starts (processes, temp dirs, embedded clients) is stopped and removed when it ends,
// when a step fails and on Ctrl-C or SIGTERM (a second one exits at once).
//
// Files: main.go wires flags to scenarios; ceilings.go measures and prints the ceilings (spawn.go the spawn
// rates, storeceiling.go the store's); compare.go merges the tables of -old; env.go is the testenv.T a
// non-test program supplies; harness.go starts clusters and embedded clients; jobs.go creates jobs;
// metrics.go reads /metrics and memory, cpu.go CPU times, storecount.go counts finished executions in the
// store; report.go prints tables; one file per scenario (steady.go holds what shell and gofunc share;
// ledgerfile.go reads overload's ledger).
package main
