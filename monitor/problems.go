package monitor

import (
	"fmt"
	"time"

	"github.com/clover-sched/clover/internal/store"
)

// Problem is something wrong now, found by a check. Its Key names it across checks and monitors, so that
// the same problem is one alert, however often it is found.
type Problem struct {
	Key   string // e.g. "client-down/client-1"
	Kind  string // e.g. "client-down"
	What  string // one line: what is wrong
	Where string // which member, job or execution
	// Since is when it started, as well as the monitor knows.
	Since    time.Time
	WhatToDo string
	// Contacts are told: contact names or email addresses. Empty: the operators.
	Contacts []string
}

// Problem kinds the monitor raises and clears itself. Alerts of other kinds are raised and cleared by
// servers (the fallback queue's); the monitor only mails them.
const (
	kindServerDown     = "server-down"
	kindClientDown     = "client-down"
	kindServerSilent   = "server-unresponsive"
	kindClientSilent   = "client-unresponsive"
	kindNoLeader       = "no-leader"
	kindLeaderFlapping = "leader-flapping"
	kindJobNoClient    = "job-no-client"
	kindJobFailing     = "job-failing"
	kindOrphaned       = "execution-orphaned"
	kindOverdue        = "execution-overdue"
	kindWaiting        = "execution-waiting"
	kindZooKeeper      = "zookeeper-unreachable"
	kindMongoDB        = "mongodb-unreachable"
)

var ownKinds = map[string]bool{
	kindServerDown: true, kindClientDown: true, kindServerSilent: true, kindClientSilent: true,
	kindNoLeader: true, kindLeaderFlapping: true, kindJobNoClient: true, kindJobFailing: true,
	kindOrphaned: true, kindOverdue: true, kindWaiting: true, kindZooKeeper: true, kindMongoDB: true,
}

func problem(kind, subject string) Problem {
	key := kind
	if subject != "" {
		key = kind + "/" + subject
	}
	return Problem{Key: key, Kind: kind, Where: subject}
}

// fromAlert is the problem an open alert stands for.
func fromAlert(a store.Alert) Problem {
	return Problem{Key: a.Key, Kind: a.Kind, What: a.Summary, Where: a.Where, Since: a.Since, WhatToDo: a.Details, Contacts: a.Contacts}
}

// ago says how long ago t was, for people.
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "unknown"
	}
	return fmt.Sprintf("%s (%s ago)", t.UTC().Format(time.RFC3339), now.Sub(t).Round(time.Second))
}
