package notify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/clover-sched/clover/internal/store"
)

// WebhookSender posts webhook notifications: their JSON Payload to the URL in To.
type WebhookSender struct {
	client  *http.Client
	timeout time.Duration
}

var _ Sender = (*WebhookSender)(nil)

// ErrPrivateAddress refuses a webhook that resolves to a loopback, private or link-local address.
var ErrPrivateAddress = errors.New("webhook address is loopback, private or link-local")

// NewWebhookSender returns a sender whose every request is bounded by timeout (10s if timeout <= 0).
// Unless allowPrivate, it refuses to connect to loopback, private, link-local and unspecified addresses,
// checked on the address actually dialled (after DNS, so a name that resolves inward is refused too): a
// contact's webhook must not reach into the network the monitor runs in. It follows no redirect.
func NewWebhookSender(timeout time.Duration, allowPrivate bool) *WebhookSender {
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	// No keep-alive: webhooks are rare, and an idle connection would be a goroutine left behind.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DisableKeepAlives = true
	tr.Proxy = nil // a proxy would dial for us, past the address check
	dialer := &net.Dialer{Timeout: timeout}
	if !allowPrivate {
		dialer.Control = func(network, address string, _ syscall.RawConn) error {
			host, _, err := net.SplitHostPort(address)
			if err != nil {
				return err
			}
			if ip := net.ParseIP(host); ip == nil || !publicIP(ip) {
				return fmt.Errorf("%w: %s", ErrPrivateAddress, host)
			}
			return nil
		}
	}
	tr.DialContext = dialer.DialContext
	client := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return &WebhookSender{client: client, timeout: timeout}
}

// notPublic are ranges the address methods of net.IP do not cover: shared address space (carrier-grade
// NAT), IETF protocol assignments, benchmarking, and IPv6 prefixes that embed an IPv4 address (NAT64),
// through which a private IPv4 address can be reached.
var notPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("64:ff9b::/96"),
	netip.MustParsePrefix("64:ff9b:1::/48"),
	netip.MustParsePrefix("2002::/16"),
}

func publicIP(ip net.IP) bool {
	if ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
		ip.IsUnspecified() || ip.IsMulticast() || ip.IsInterfaceLocalMulticast() {
		return false
	}
	addr, ok := netip.AddrFromSlice(ip)
	if !ok {
		return false
	}
	addr = addr.Unmap()
	for _, p := range notPublic {
		if p.Contains(addr) {
			return false
		}
	}
	return true
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
