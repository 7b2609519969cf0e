package notify

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"

	mail "github.com/wneessen/go-mail"

	"github.com/clover-sched/clover/internal/store"
)

// SMTPSender mails email notifications through one SMTP server. Each Send opens its own connection, so
// sends may run concurrently and a broken connection never outlives one mail.
type SMTPSender struct {
	cfg       SMTPConfig
	tlsConfig *tls.Config
}

var _ Sender = (*SMTPSender)(nil)

// SMTPOption changes an SMTPSender built by NewSMTPSender.
type SMTPOption func(*SMTPSender)

// WithTLSConfig sets the TLS settings of STARTTLS (trusted roots, server name); the default trusts the
// system's roots for the configured host.
func WithTLSConfig(c *tls.Config) SMTPOption { return func(s *SMTPSender) { s.tlsConfig = c } }

// NewSMTPSender checks cfg and returns a sender.
func NewSMTPSender(cfg SMTPConfig, opts ...SMTPOption) (*SMTPSender, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("notify: smtp: %w", err)
	}
	s := &SMTPSender{cfg: cfg}
	for _, o := range opts {
		o(s)
	}
	if s.tlsConfig == nil {
		s.tlsConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if s.tlsConfig.ServerName == "" {
		s.tlsConfig = s.tlsConfig.Clone()
		s.tlsConfig.ServerName = cfg.Host
	}
	return s, nil
}

// Send mails n (Subject and Body, plain text) to n.To. It returns when the server accepted the mail, or
// with an error when it refused it, did not answer within the configured timeout, or ctx ended.
func (s *SMTPSender) Send(ctx context.Context, n store.Notification) error {
	if n.Channel != store.ChannelEmail {
		return fmt.Errorf("notify: smtp: notification %s is for channel %q", n.ID, n.Channel)
	}
	msg, err := s.message(n)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	client, err := mail.NewClient(s.cfg.Host, s.clientOptions(ctx)...)
	if err != nil {
		return fmt.Errorf("notify: smtp client for %s: %w", s.addr(), err)
	}
	if err := client.DialAndSendWithContext(ctx, msg); err != nil {
		if ctx.Err() != nil {
			err = errors.Join(ctx.Err(), err)
		}
		return fmt.Errorf("notify: mail %s to %s via %s: %w", n.ID, n.To, s.addr(), err)
	}
	return nil
}

func (s *SMTPSender) addr() string { return net.JoinHostPort(s.cfg.Host, fmt.Sprint(s.cfg.Port)) }

func (s *SMTPSender) clientOptions(ctx context.Context) []mail.Option {
	policy := map[string]mail.TLSPolicy{
		StartTLSAuto: mail.TLSOpportunistic, StartTLSAlways: mail.TLSMandatory, StartTLSNever: mail.NoTLS,
	}[s.cfg.StartTLS]
	opts := []mail.Option{
		mail.WithPort(s.cfg.Port), mail.WithTimeout(s.cfg.Timeout),
		mail.WithTLSPolicy(policy), mail.WithTLSConfig(s.tlsConfig),
		// go-mail bounds each command with the timeout but uses the context only to dial: closing the
		// connection when ctx ends makes the context bound the whole exchange too.
		mail.WithDialContextFunc(func(dialCtx context.Context, network, address string) (net.Conn, error) {
			var d net.Dialer
			conn, err := d.DialContext(dialCtx, network, address)
			if err != nil {
				return nil, err
			}
			context.AfterFunc(ctx, func() { conn.Close() })
			return conn, nil
		}),
	}
	if s.cfg.Username != "" {
		opts = append(opts, mail.WithOpportunisticSMTPAuth(mail.SMTPAuthPlain, mail.SMTPAuthLogin),
			mail.WithUsername(s.cfg.Username), mail.WithPassword(s.cfg.Password))
	}
	return opts
}

// message builds the mail of n. Its Message-ID derives from n.ID, so that a mail sent twice (a dispatcher
// died between sending and recording it) is recognisably the same.
func (s *SMTPSender) message(n store.Notification) (*mail.Msg, error) {
	m := mail.NewMsg()
	if err := m.From(s.cfg.From); err != nil {
		return nil, fmt.Errorf("notify: smtp: from %q: %w", s.cfg.From, err)
	}
	if err := m.To(n.To); err != nil {
		return nil, fmt.Errorf("notify: notification %s: to %q: %w", n.ID, n.To, err)
	}
	m.Subject(n.Subject)
	m.SetDate()
	sum := sha256.Sum256([]byte(n.ID))
	m.SetMessageIDWithValue(hex.EncodeToString(sum[:16]) + "@clover")
	m.SetGenHeader("X-Clover-Alert", n.AlertKey)
	m.SetGenHeader("X-Clover-Notification", n.ID)
	m.SetBodyString(mail.TypeTextPlain, n.Body)
	return m, nil
}
