package notify

import (
	"errors"
	"fmt"
	"net"
	"net/mail"
	"strings"
	"time"
)

// SMTPConfig says how to reach the mail server. The monitor reads it under the key smtp.
type SMTPConfig struct {
	Host string `mapstructure:"host"`
	Port int    `mapstructure:"port"`
	// Username and Password authenticate with PLAIN or LOGIN (whichever the server offers first, in that
	// order) when Username is set. Credentials are sent only over TLS, or to a server on localhost.
	Username string `mapstructure:"username"`
	Password string `mapstructure:"password"`
	// From is the sender address of every mail, e.g. "Clover <clover@example.com>".
	From string `mapstructure:"from"`
	// StartTLS: "auto" upgrades the connection when the server offers STARTTLS, "always" refuses to send
	// without it, "never" sends in the clear.
	StartTLS string `mapstructure:"starttls"`
	// Timeout bounds one mail: connecting, every command, the whole exchange.
	Timeout time.Duration `mapstructure:"timeout"`
}

// StartTLS settings.
const (
	StartTLSAuto   = "auto"
	StartTLSAlways = "always"
	StartTLSNever  = "never"
)

// DefaultSMTPConfig is the submission port with STARTTLS when offered. Host is empty: no mail is sent
// until one is configured.
func DefaultSMTPConfig() SMTPConfig {
	return SMTPConfig{Port: 587, StartTLS: StartTLSAuto, Timeout: 30 * time.Second}
}

// Validate names the first bad key (without the smtp. prefix: the caller adds where it is).
func (c SMTPConfig) Validate() error {
	if c.Host == "" || strings.ContainsAny(c.Host, " /") {
		return fmt.Errorf("host %q: must be a host name or address", c.Host)
	}
	if c.Port < 1 || c.Port > 65535 {
		return fmt.Errorf("port %d: must be from 1 to 65535", c.Port)
	}
	if c.From == "" {
		return errors.New("from: the sender address is required")
	}
	if _, err := mail.ParseAddress(c.From); err != nil {
		return fmt.Errorf("from %q: %w", c.From, err)
	}
	if c.Password != "" && c.Username == "" {
		return errors.New("username: required when password is set")
	}
	switch c.StartTLS {
	case StartTLSAuto, StartTLSAlways, StartTLSNever:
	default:
		return fmt.Errorf("starttls %q: must be auto, always or never", c.StartTLS)
	}
	if c.Username != "" && c.StartTLS != StartTLSAlways && !loopbackHost(c.Host) {
		return fmt.Errorf("starttls %q: must be always when username is set, so that the credentials never cross the network in clear (a downgrade to plain text is refused)", c.StartTLS)
	}
	if c.Timeout <= 0 {
		return fmt.Errorf("timeout %s: must be positive", c.Timeout)
	}
	return nil
}

func loopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
