package monitor

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/clover-sched/clover/internal/notify"
	"github.com/clover-sched/clover/internal/store"
)

// reconcile brings the alerts in line with the problems found now, and queues the notifications: a
// problem opens its alert and tells its contacts; one still open gets a reminder every RemindEvery; one
// gone for clearAfter checks in a row is cleared, and a recovery message follows. Alerts that servers
// raise (kinds the monitor does not own) are mailed the same way, and their recovery once a server clears
// them.
//
// Every message is queued again on every check while it applies (the problem message of an open alert,
// the recovery of one cleared lately): its id makes the queue keep one, and a check that failed half way
// (the store slow, the monitor killed) loses nothing. Without a view of the cluster (ZooKeeper down)
// nothing is cleared.
func (m *Monitor) reconcile(ctx context.Context, st *store.Store, now time.Time, found []Problem, open map[string]store.Alert, blind bool) (held []string) {
	contacts, err := st.ListContacts(ctx)
	if err != nil {
		m.logger.Warn("cannot read contacts; mailing operators' addresses only", "err", err)
	}
	book := map[string]store.Contact{}
	for _, c := range contacts {
		book[c.Name] = c
	}
	current := map[string]Problem{}
	for _, p := range found {
		if _, dup := current[p.Key]; !dup {
			current[p.Key] = p
		}
	}
	byKind := map[string]int{}
	var queue []store.Notification
	for key, p := range current {
		byKind[p.Kind]++
		delete(m.absent, key)
		a, isOpen := open[key]
		alert := store.Alert{
			Key: key, Kind: p.Kind, Summary: p.What, Where: p.Where, Details: p.WhatToDo, Contacts: p.Contacts,
			Since: p.Since, RaisedBy: m.cfg.ID,
		}
		if isOpen {
			// Only while it is still open: an operator may have cleared it since this check read it.
			if still, err := st.RefreshAlert(ctx, alert, now); err != nil || !still {
				continue
			}
		} else if _, err := st.RaiseAlert(ctx, alert, now); err != nil {
			m.logger.Warn("cannot record an alert", "alert", key, "err", err)
			continue
		}
		held = append(held, key)
		if !isOpen {
			if a, err = st.GetAlert(ctx, key); err != nil {
				continue // its message is queued on the next check
			}
			m.logger.Warn("problem", "alert", key, "what", p.What, "since", p.Since)
		}
		queue = append(queue, m.notify(p, a.RaisedAt, store.NotifyProblem, 0, book)...)
		queue = append(queue, m.remind(p, a, now, book)...)
	}
	for key, a := range open {
		if _, still := current[key]; still {
			continue
		}
		p := fromAlert(a)
		switch {
		case !ownKinds[a.Kind]:
			// Raised by a server (the fallback queue): mail it, remind; the server clears it.
			byKind[a.Kind]++
			queue = append(queue, m.notify(p, a.RaisedAt, store.NotifyProblem, 0, book)...)
			queue = append(queue, m.remind(p, a, now, book)...)
			continue
		case blind, a.Kind == kindZooKeeper && key != m.zkKey():
			// Nothing can be known now; or another monitor's view of ZooKeeper, which only it can clear.
			byKind[a.Kind]++
			continue
		}
		if m.absent[key]++; m.absent[key] < clearAfter {
			byKind[a.Kind]++ // a check that missed it once does not end it: one blip would mail twice
			continue
		}
		if cleared, err := st.ClearAlert(ctx, key, now); err != nil || !cleared {
			continue
		}
		delete(m.absent, key)
		m.logger.Info("problem cleared", "alert", key, "lasted", now.Sub(a.Since).Round(time.Second))
	}
	queue = append(queue, m.recoveries(ctx, st, now, book)...)
	m.metrics.setProblems(byKind)
	if len(queue) == 0 {
		return held
	}
	n, err := st.EnqueueNotifications(ctx, queue)
	if err != nil {
		m.logger.Warn("cannot queue notifications; queued again on the next check", "err", err)
		return held
	}
	if n > 0 {
		m.logger.Info("notifications queued", "new", n)
	}
	return held
}

// clearAfter is how many checks in a row must miss a problem before its alert clears.
const clearAfter = 2

// zkKey is the alert of this monitor's view of ZooKeeper: each monitor raises and clears its own, since
// one monitor cut off from ZooKeeper says nothing of the others.
func (m *Monitor) zkKey() string { return kindZooKeeper + "/" + m.cfg.ID }

// remind queues the reminder due for an open alert, if any: the n-th after n RemindEvery.
func (m *Monitor) remind(p Problem, a store.Alert, now time.Time, book map[string]store.Contact) []store.Notification {
	n := int(now.Sub(a.RaisedAt) / m.cfg.RemindEvery)
	if n < 1 {
		return nil
	}
	return m.notify(p, a.RaisedAt, store.NotifyReminder, n, book)
}

// recoveries queues the recovery message of alerts cleared lately (by this monitor, another one, an
// operator or a server) whose problem message was queued.
func (m *Monitor) recoveries(ctx context.Context, st *store.Store, now time.Time, book map[string]store.Contact) []store.Notification {
	cleared, err := st.ListAlerts(ctx, store.AlertCleared)
	if err != nil {
		return nil
	}
	var out []store.Notification
	for _, a := range cleared {
		if now.Sub(a.ClearedAt) > recoveryWindow || a.ClearedAt.Before(a.RaisedAt) {
			continue
		}
		sent, err := st.ListNotifications(ctx, a.Key, 1000)
		if err != nil {
			continue
		}
		episode := episodeID(a.Key, a.RaisedAt)
		if !slices.ContainsFunc(sent, func(n store.Notification) bool { return strings.HasPrefix(n.ID, episode+"/"+store.NotifyProblem) }) {
			continue
		}
		out = append(out, m.notify(fromAlert(a), a.RaisedAt, store.NotifyRecovery, 0, book)...)
	}
	return out
}

// recoveryWindow is how long after an alert cleared its recovery message is still queued if missing.
const recoveryWindow = 10 * time.Minute

// episodeID names one episode of an alert: the same problem raised again after it cleared is a new one.
func episodeID(key string, raisedAt time.Time) string {
	return fmt.Sprintf("%s@%d", key, raisedAt.UnixMilli())
}

// notify makes the notifications of one message to every contact of p, on every channel they have.
func (m *Monitor) notify(p Problem, raisedAt time.Time, kind string, n int, book map[string]store.Contact) []store.Notification {
	emails, hooks := m.recipients(p.Contacts, book)
	if m.senders["email"] == nil {
		emails = nil // no mail server configured: the alert is recorded, not mailed
	}
	var out []store.Notification
	for _, to := range emails {
		out = append(out, m.notificationN(p, to, "email", kind, n, raisedAt))
	}
	for _, to := range hooks {
		out = append(out, m.notificationN(p, to, "webhook", kind, n, raisedAt))
	}
	return out
}

// recipients resolves contacts (names in the contact book, or email addresses) to addresses and webhooks.
// No contact, or none known: the operators.
func (m *Monitor) recipients(contacts []string, book map[string]store.Contact) (emails, hooks []string) {
	resolve := func(names []string) {
		for _, c := range names {
			if strings.Contains(c, "@") {
				emails = append(emails, c)
				continue
			}
			ct, ok := book[c]
			if !ok {
				m.logger.Warn("alert names an unknown contact; add it with `clover contact add`", "contact", c)
				continue
			}
			if ct.Email != "" {
				emails = append(emails, ct.Email)
			}
			if ct.Webhook != "" {
				hooks = append(hooks, ct.Webhook)
			}
		}
	}
	resolve(contacts)
	if len(emails) == 0 && len(hooks) == 0 {
		resolve(m.cfg.Operators)
	}
	slices.Sort(emails)
	slices.Sort(hooks)
	return slices.Compact(emails), slices.Compact(hooks)
}

func (m *Monitor) notificationN(p Problem, to, channel, kind string, n int, raisedAt time.Time) store.Notification {
	nt := m.notification(p, to, channel, kind, time.Time{}, raisedAt)
	if n > 0 {
		nt.ID = fmt.Sprintf("%s/%s-%d/%s/%s", episodeID(p.Key, raisedAt), kind, n, channel, to)
	}
	return nt
}

// notification is one message about p to one recipient. Its id names the alert's episode, the kind of
// message and the recipient: queued twice (two monitors, a restart), it is stored once.
func (m *Monitor) notification(p Problem, to, channel, kind string, clearedAt, raisedAt time.Time) store.Notification {
	now := m.now()
	if kind == store.NotifyRecovery {
		clearedAt = now
	}
	view := notify.AlertView{
		Kind: kind, Alert: p.Key, What: p.What, Where: p.Where, Since: p.Since, WhatToDo: p.WhatToDo,
		Cluster: m.cfg.Cluster, ClearedAt: clearedAt, Now: now,
	}
	nt := store.Notification{
		ID: fmt.Sprintf("%s/%s/%s/%s", episodeID(p.Key, raisedAt), kind, channel, to), AlertKey: p.Key, Kind: kind,
		Channel: channel, To: to, State: store.NotificationPending, CreatedAt: now, NextAttempt: now,
	}
	if channel == "webhook" {
		nt.Payload = notify.WebhookPayload(view)
	} else {
		nt.Subject, nt.Body = notify.RenderAlert(view)
	}
	return nt
}
