// Package monitor watches a Clover cluster from outside and tells people when something dies or hangs.
// It runs as its own process (`clover monitor`); several may run, and the one elected through ZooKeeper
// (like the servers) acts, so that monitoring survives the loss of any server it watches.
//
//	ZooKeeper (members, election) ─┐
//	servers' APIs (health, inflight, heartbeats) ─┼─► checks ─► problems ─► alerts (MongoDB) ─► notifications ─► SMTP / webhook
//	MongoDB (jobs, executions, alerts) ─┘                       open, remind, clear       (outbox, deduplicated)
//
// Each check cycle compares the problems found now with the alerts open in MongoDB: a new problem opens
// an alert and queues a mail to its contacts, one still there queues a reminder every remind_every, one
// gone clears its alert and queues a recovery mail. Alerts that servers raise (the fallback queue) are
// mailed the same way. Notifications carry ids made from the alert and its episode, so two monitors, or
// one restarted, never send the same mail twice; the notify package delivers them and retries while the
// mail server is down, and nothing here ever waits for SMTP.
package monitor
