package notify

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clover-sched/clover/internal/store"
)

func TestSMTPSender(t *testing.T) {
	t.Parallel()
	serverTLS, clientTLS := selfSigned(t)
	type spec struct {
		sink     func(*smtpSink)
		config   func(*SMTPConfig)
		tls      *tls.Config
		deadline time.Duration // a context deadline for Send, 0 for none
	}
	tests := map[string]struct {
		spec
		wantErr  string // a part of the error; empty: delivered
		wantUser string
		wantTLS  bool
	}{
		"plain, no auth": {},
		"auth PLAIN": {
			spec:     spec{sink: func(s *smtpSink) { s.user, s.pass = "mon", "secret" }, config: func(c *SMTPConfig) { c.Username, c.Password = "mon", "secret" }},
			wantUser: "mon",
		},
		"wrong password": {
			spec:    spec{sink: func(s *smtpSink) { s.user, s.pass = "mon", "secret" }, config: func(c *SMTPConfig) { c.Username, c.Password = "mon", "nope" }},
			wantErr: "uthentication",
		},
		"auth required but not configured": {
			spec:    spec{sink: func(s *smtpSink) { s.user, s.pass = "mon", "secret" }},
			wantErr: "authenticate",
		},
		"starttls always with a server that offers it": {
			spec:    spec{sink: func(s *smtpSink) { s.tlsConfig = serverTLS }, config: func(c *SMTPConfig) { c.StartTLS = StartTLSAlways }, tls: clientTLS},
			wantTLS: true,
		},
		"starttls auto upgrades when offered": {
			spec:    spec{sink: func(s *smtpSink) { s.tlsConfig = serverTLS }, tls: clientTLS},
			wantTLS: true,
		},
		"starttls always with auth": {
			spec: spec{
				sink:   func(s *smtpSink) { s.tlsConfig, s.user, s.pass = serverTLS, "mon", "secret" },
				config: func(c *SMTPConfig) { c.StartTLS, c.Username, c.Password = StartTLSAlways, "mon", "secret" },
				tls:    clientTLS,
			},
			wantTLS: true, wantUser: "mon",
		},
		"starttls always with a server that does not offer it": {
			spec:    spec{config: func(c *SMTPConfig) { c.StartTLS = StartTLSAlways }},
			wantErr: "STARTTLS",
		},
		"starttls never with a server that offers it": {
			spec: spec{sink: func(s *smtpSink) { s.tlsConfig = serverTLS }, config: func(c *SMTPConfig) { c.StartTLS = StartTLSNever }},
		},
		"untrusted certificate": {
			spec:    spec{sink: func(s *smtpSink) { s.tlsConfig = serverTLS }, config: func(c *SMTPConfig) { c.StartTLS = StartTLSAlways }},
			wantErr: "certificate",
		},
		"recipient refused": {
			spec:    spec{sink: func(s *smtpSink) { s.rejectRcpt = true }},
			wantErr: "no such user here",
		},
		"hung server: the context bounds the send": {
			spec:    spec{sink: func(s *smtpSink) { s.block = make(chan struct{}) }, deadline: 300 * time.Millisecond},
			wantErr: "deadline exceeded",
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			sink := startSink(t, "127.0.0.1:0", tt.sink)
			cfg := smtpConfig(t, sink.Addr)
			if tt.config != nil {
				tt.config(&cfg)
			}
			var opts []SMTPOption
			if tt.tls != nil {
				opts = append(opts, WithTLSConfig(tt.tls))
			}
			s, err := NewSMTPSender(cfg, opts...)
			if err != nil {
				t.Fatal(err)
			}
			ctx := t.Context()
			if tt.deadline > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.deadline)
				defer cancel()
			}
			n := mailNote("n1", "ops@example.com", time.Now())
			start := time.Now()
			err = s.Send(ctx, n)
			if tt.deadline > 0 && time.Since(start) > tt.deadline+2*time.Second {
				t.Errorf("Send took %s with a %s deadline", time.Since(start), tt.deadline)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Send = %v, want an error about %q", err, tt.wantErr)
				}
				if got := sink.count(); got != 0 {
					t.Errorf("sink received %d messages, want none", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			msgs := sink.messages()
			if len(msgs) != 1 {
				t.Fatalf("sink received %d messages, want 1", len(msgs))
			}
			m := msgs[0]
			if m.From != "clover@example.com" || len(m.To) != 1 || m.To[0] != "ops@example.com" {
				t.Errorf("envelope from %q to %v", m.From, m.To)
			}
			if m.Header.Get("From") != `"Clover" <clover@example.com>` || m.Header.Get("To") != "<ops@example.com>" {
				t.Errorf("headers From %q To %q", m.Header.Get("From"), m.Header.Get("To"))
			}
			if m.Subject != n.Subject || m.Body != n.Body {
				t.Errorf("got subject %q body\n%s\nwant subject %q body\n%s", m.Subject, m.Body, n.Subject, n.Body)
			}
			if m.Header.Get("X-Clover-Notification") != "n1" || !strings.HasSuffix(m.Header.Get("Message-Id"), "@clover>") {
				t.Errorf("headers X-Clover-Notification %q, Message-Id %q", m.Header.Get("X-Clover-Notification"), m.Header.Get("Message-Id"))
			}
			if m.User != tt.wantUser || m.TLS != tt.wantTLS {
				t.Errorf("authenticated as %q over TLS %v, want %q, %v", m.User, m.TLS, tt.wantUser, tt.wantTLS)
			}
		})
	}
}

func TestSMTPConfigValidate(t *testing.T) {
	t.Parallel()
	ok := func() SMTPConfig {
		c := DefaultSMTPConfig()
		c.Host, c.From = "mail.example.com", "clover@example.com"
		return c
	}
	tests := map[string]struct {
		change  func(*SMTPConfig)
		wantErr string // names the key; empty: valid
	}{
		"defaults with host and from": {change: func(*SMTPConfig) {}},
		"auth":                        {change: func(c *SMTPConfig) { c.Username, c.Password, c.StartTLS = "u", "p", StartTLSAlways }},
		"auth, starttls auto":         {change: func(c *SMTPConfig) { c.Username, c.Password = "u", "p" }, wantErr: "starttls"},
		"auth on localhost":           {change: func(c *SMTPConfig) { c.Host, c.Username, c.Password = "127.0.0.1", "u", "p" }},
		"no host":                     {change: func(c *SMTPConfig) { c.Host = "" }, wantErr: "host"},
		"port 0":                      {change: func(c *SMTPConfig) { c.Port = 0 }, wantErr: "port"},
		"port too high":               {change: func(c *SMTPConfig) { c.Port = 70000 }, wantErr: "port"},
		"no from":                     {change: func(c *SMTPConfig) { c.From = "" }, wantErr: "from"},
		"bad from":                    {change: func(c *SMTPConfig) { c.From = "clover" }, wantErr: "from"},
		"password without username":   {change: func(c *SMTPConfig) { c.Password = "p" }, wantErr: "username"},
		"starttls maybe":              {change: func(c *SMTPConfig) { c.StartTLS = "maybe" }, wantErr: "starttls"},
		"no timeout":                  {change: func(c *SMTPConfig) { c.Timeout = 0 }, wantErr: "timeout"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			c := ok()
			tt.change(&c)
			err := c.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("Validate() = %v", err)
			case tt.wantErr != "" && (err == nil || !strings.HasPrefix(err.Error(), tt.wantErr)):
				t.Errorf("Validate() = %v, want an error starting with %q", err, tt.wantErr)
			}
		})
	}
}

func TestWebhookSender(t *testing.T) {
	t.Parallel()
	tests := map[string]struct {
		status  int
		hang    bool
		wantErr string
	}{
		"200":     {status: 200},
		"204":     {status: 204},
		"500":     {status: 500, wantErr: "HTTP 500: broken"},
		"404":     {status: 404, wantErr: "HTTP 404"},
		"timeout": {hang: true, wantErr: "deadline exceeded"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got := make(chan *http.Request, 1)
			bodies := make(chan string, 1)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				got <- r
				bodies <- string(b)
				if tt.hang {
					<-r.Context().Done()
					return
				}
				w.WriteHeader(tt.status)
				if tt.status >= 300 {
					io.WriteString(w, "broken\n")
				}
			}))
			defer srv.Close()
			s := NewWebhookSender(300*time.Millisecond, true)
			payload := WebhookPayload(AlertView{Kind: store.NotifyProblem, Alert: "no-leader", What: "no leader", Now: time.Now()})
			n := store.Notification{ID: "n1", AlertKey: "no-leader", Kind: store.NotifyProblem, Channel: store.ChannelWebhook,
				To: srv.URL + "/hooks/SECRET-TOKEN", Payload: payload}
			err := s.Send(t.Context(), n)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Send = %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Send = %v, want an error about %q", err, tt.wantErr)
			case err != nil && strings.Contains(err.Error(), "SECRET"):
				t.Errorf("error %q shows the webhook's path", err)
			}
			r := <-got
			if r.Method != "POST" || r.URL.Path != "/hooks/SECRET-TOKEN" || r.Header.Get("Content-Type") != "application/json" ||
				r.Header.Get("X-Clover-Notification") != "n1" {
				t.Errorf("request %s %s, Content-Type %q, X-Clover-Notification %q", r.Method, r.URL.Path,
					r.Header.Get("Content-Type"), r.Header.Get("X-Clover-Notification"))
			}
			if b := <-bodies; b != string(payload) {
				t.Errorf("body %s, want %s", b, payload)
			}
		})
	}
}

// A contact's webhook cannot reach into the monitor's own network: loopback, private and link-local
// addresses are refused (after DNS, so localhost is refused too), and a redirect is not followed.
func TestWebhooksCannotReachInternalAddresses(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	s := NewWebhookSender(2*time.Second, false)
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
	for _, to := range []string{srv.URL + "/x", "http://localhost:" + port + "/x", "http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/x", "http://[::1]:" + port + "/x",
		"http://100.64.1.1/x", "http://[64:ff9b::a00:1]/x", "http://[::ffff:127.0.0.1]:" + port + "/x"} {
		n := store.Notification{ID: "n1", Channel: store.ChannelWebhook, To: to, Payload: []byte("{}")}
		if err := s.Send(t.Context(), n); err == nil || !errors.Is(err, ErrPrivateAddress) {
			t.Errorf("send to %s: err = %v, want ErrPrivateAddress", to, err)
		}
	}
	if hits.Load() != 0 {
		t.Fatalf("the internal server was reached %d times", hits.Load())
	}
	// Allowed (a test, or a monitor whose receivers are on its own network), a redirect is still not
	// followed: it is the receiver's answer, an error.
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, srv.URL+"/elsewhere", http.StatusFound)
	}))
	defer redirect.Close()
	err := NewWebhookSender(2*time.Second, true).Send(t.Context(), store.Notification{ID: "n2", Channel: store.ChannelWebhook, To: redirect.URL, Payload: []byte("{}")})
	if err == nil || hits.Load() != 0 {
		t.Fatalf("redirect: err = %v, hits %d; want an error and no request to the target", err, hits.Load())
	}
}
