// Package notify delivers the notifications queued in the store's outbox: mails over SMTP and JSON
// webhooks, retried with backoff while the receiver is down, and rendered from an alert (RenderAlert,
// WebhookPayload) by whoever queues them.
//
//	monitor ──EnqueueNotifications──► notifications (MongoDB outbox, deduplicated by id)
//	                                         │ DueNotifications every poll
//	                                         ▼
//	                                    Dispatcher.Run ──► one queue and worker pool per channel
//	                                                          │ ClaimNotification (a lease), Send with a timeout
//	                                                          ├─► email:   SMTPSender (STARTTLS, AUTH) ─► SMTP server
//	                                                          └─► webhook: WebhookSender (POST JSON)   ─► HTTP endpoint
//	                                    MarkNotificationSent | MarkNotificationRetry (backoff) | MarkNotificationFailed
//
// Whoever raises an alert only inserts notifications and never waits for a mail server. Several
// dispatchers (one per monitor) may run on the same store: each claims a notification before it sends it,
// and a claim is an inserted document, so of two only one sends. A notification is sent twice only if a
// dispatcher takes longer than its lease to send it and mark it (the lease is well beyond the send
// timeout), or dies or loses the store between sending and marking; mails carry a Message-ID derived from the notification's
// id, and webhooks an X-Clover-Notification header, so that receivers can drop such a duplicate.
package notify
