package notify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/clover-sched/clover/internal/store"
)

// WebhookSender posts webhook notifications: their JSON Payload to the URL in To.
type WebhookSender struct {
	client  *http.Client
	timeout time.Duration
}

var _ Sender = (*WebhookSender)(nil)

// NewWebhookSender returns a sender whose every request is bounded by timeout (10s if timeout <= 0).
func NewWebhookSender(timeout time.Duration) *WebhookSender {
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	// No keep-alive: webhooks are rare, and an idle connection would be a goroutine left behind.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DisableKeepAlives = true
	return &WebhookSender{client: &http.Client{Transport: tr}, timeout: timeout}
}

// Send posts n.Payload to n.To. Any 2xx answer is success; anything else, or no answer within the
// timeout, is an error that says what came back.
func (s *WebhookSender) Send(ctx context.Context, n store.Notification) error {
	if n.Channel != store.ChannelWebhook {
		return fmt.Errorf("notify: webhook: notification %s is for channel %q", n.ID, n.Channel)
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	where := redactURL(n.To)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.To, bytes.NewReader(n.Payload))
	if err != nil {
		return fmt.Errorf("notify: webhook %s to %s: bad URL", n.ID, where)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "clover-monitor")
	req.Header.Set("X-Clover-Notification", n.ID) // lets a receiver drop a duplicate
	req.Header.Set("X-Clover-Alert", n.AlertKey)
	resp, err := s.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its message repeats the URL
		}
		return fmt.Errorf("notify: webhook %s to %s: %w", n.ID, where, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("notify: webhook %s to %s: HTTP %d: %s", n.ID, where, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return nil
}

// redactURL is u without what may be a secret (user info, path, query: many webhook URLs carry their
// token there), for errors that are logged and stored.
func redactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.Host == "" {
		return "(an invalid URL)"
	}
	return p.Scheme + "://" + p.Host + "/..."
}
