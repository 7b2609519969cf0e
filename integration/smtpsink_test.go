package integration

import (
	"encoding/base64"
	"io"
	"mime"
	"mime/quotedprintable"
	"net"
	netmail "net/mail"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/clover-sched/clover/internal/testenv"
)

// mail is one message the sink received.
type mail struct {
	From string
	To   []string
	Data string // the whole message: headers and body
}

// parsed returns the subject and the decoded text of the message.
func (m mail) parsed() (subject, text string) {
	msg, err := netmail.ReadMessage(strings.NewReader(m.Data))
	if err != nil {
		return "", m.Data
	}
	subject, err = new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	if err != nil {
		subject = msg.Header.Get("Subject")
	}
	var body io.Reader = msg.Body
	switch strings.ToLower(msg.Header.Get("Content-Transfer-Encoding")) {
	case "quoted-printable":
		body = quotedprintable.NewReader(body)
	case "base64":
		body = base64.NewDecoder(base64.StdEncoding, body)
	}
	b, _ := io.ReadAll(body)
	return subject, string(b)
}

func (m mail) subject() string { s, _ := m.parsed(); return s }

// smtpSink is a real SMTP server in the test process that keeps what it receives. It can be stopped and
// started again on the same port, as a mail server that goes down and comes back.
type smtpSink struct {
	t    *testing.T
	Addr string

	mu     sync.Mutex
	mails  []mail
	server *smtp.Server
}

func startSMTPSink(t *testing.T) *smtpSink {
	s := &smtpSink{t: t, Addr: "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))}
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

// Start listens (again) on the sink's address.
func (s *smtpSink) Start() {
	s.t.Helper()
	srv := smtp.NewServer(s)
	srv.Domain = "localhost"
	srv.AllowInsecureAuth = true
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	var ln net.Listener
	if !testenv.Poll(10*time.Second, func() bool {
		var err error
		ln, err = net.Listen("tcp", s.Addr)
		return err == nil
	}) {
		s.t.Fatalf("smtp sink: cannot listen on %s", s.Addr)
	}
	s.mu.Lock()
	s.server = srv
	s.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
}

// Stop closes the listener and every connection: the mail server is down.
func (s *smtpSink) Stop() {
	s.mu.Lock()
	srv := s.server
	s.server = nil
	s.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
}

// Mails returns what was received so far.
func (s *smtpSink) Mails() []mail {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]mail(nil), s.mails...)
}

// matching returns the mails to addressee whose subject or text contains every word.
func (s *smtpSink) matching(to string, words ...string) []mail {
	var out []mail
	for _, m := range s.Mails() {
		if !strings.Contains(strings.Join(m.To, ","), to) {
			continue
		}
		subject, text := m.parsed()
		ok := true
		for _, w := range words {
			ok = ok && (strings.Contains(subject, w) || strings.Contains(text, w))
		}
		if ok {
			out = append(out, m)
		}
	}
	return out
}

// NewSession makes smtpSink an smtp.Backend.
func (s *smtpSink) NewSession(*smtp.Conn) (smtp.Session, error) { return &sinkSession{sink: s}, nil }

type sinkSession struct {
	sink *smtpSink
	m    mail
}

func (ss *sinkSession) Mail(from string, _ *smtp.MailOptions) error { ss.m.From = from; return nil }
func (ss *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.m.To = append(ss.m.To, to)
	return nil
}

func (ss *sinkSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	ss.m.Data = string(b)
	ss.sink.mu.Lock()
	ss.sink.mails = append(ss.sink.mails, ss.m)
	ss.sink.mu.Unlock()
	ss.m = mail{}
	return nil
}

func (ss *sinkSession) Reset()        { ss.m = mail{} }
func (ss *sinkSession) Logout() error { return nil }
