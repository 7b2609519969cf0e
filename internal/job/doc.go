// Package job holds the data Clover schedules and records: a job's definition (Spec), one firing of it
// (Execution) and the append-only facts reported about that firing (Event). Every other package speaks
// these types; this one depends on nothing but the standard library.
//
// An execution is keyed by (job, scheduled time): ExecutionID derives the key, so two processes that both
// believe they lead can never create two records of the same firing. Its life after the insert is told by
// Events, each keyed by (execution, kind, attempt), so recording is insert-only and idempotent: MongoDB-
// protocol servers such as FerretDB insert fast but update slowly, and a retried report must not count twice.
package job
