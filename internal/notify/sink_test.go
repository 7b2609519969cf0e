package notify

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"io"
	"math/big"
	"mime"
	"mime/quotedprintable"
	"net"
	netmail "net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// received is one message an smtpSink accepted.
type received struct {
	From    string
	To      []string
	User    string // who authenticated, if anyone
	TLS     bool   // the session had switched to TLS
	Header  netmail.Header
	Subject string
	Body    string // decoded
}

// smtpSink is a real SMTP server (go-smtp) in the test process that keeps what it receives.
type smtpSink struct {
	Addr string

	// Set before start.
	user, pass string        // AUTH PLAIN required when user is set
	tlsConfig  *tls.Config   // STARTTLS offered when set
	block      chan struct{} // Data waits until it is closed (a hung server)
	rejectRcpt bool          // every recipient refused with 550

	stop   chan struct{}
	mu     sync.Mutex
	msgs   []received
	inData int // sessions in Data now
}

// startSink serves configure's sink on addr ("127.0.0.1:0" for any port) until the test ends.
func startSink(t *testing.T, addr string, configure func(*smtpSink)) *smtpSink {
	t.Helper()
	s := &smtpSink{stop: make(chan struct{})}
	if configure != nil {
		configure(s)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("smtp sink: %v", err)
	}
	s.Addr = ln.Addr().String()
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) { return &sinkSession{sink: s, conn: c}, nil }))
	srv.Domain = "localhost"
	srv.AllowInsecureAuth = true // AUTH over a plain connection, for the test only
	srv.TLSConfig = s.tlsConfig
	srv.ReadTimeout, srv.WriteTimeout = 30*time.Second, 30*time.Second
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, smtp.ErrServerClosed) {
			t.Errorf("smtp sink: %v", err)
		}
	}()
	t.Cleanup(func() {
		close(s.stop)
		srv.Close()
		<-served
	})
	return s
}

func (s *smtpSink) messages() []received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]received(nil), s.msgs...)
}

func (s *smtpSink) count() int { return len(s.messages()) }

func (s *smtpSink) sending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inData
}

type sinkSession struct {
	sink *smtpSink
	conn *smtp.Conn
	user string
	from string
	to   []string
}

var (
	_ smtp.Session     = (*sinkSession)(nil)
	_ smtp.AuthSession = (*sinkSession)(nil)
)

func (ss *sinkSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (ss *sinkSession) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if username != ss.sink.user || password != ss.sink.pass {
			return smtp.ErrAuthFailed
		}
		ss.user = username
		return nil
	}), nil
}

func (ss *sinkSession) Mail(from string, _ *smtp.MailOptions) error {
	if ss.sink.user != "" && ss.user == "" {
		return smtp.ErrAuthRequired
	}
	ss.from = from
	return nil
}

func (ss *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if ss.sink.rejectRcpt {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user here"}
	}
	ss.to = append(ss.to, to)
	return nil
}

func (ss *sinkSession) Data(r io.Reader) error {
	s := ss.sink
	s.mu.Lock()
	s.inData++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.inData--
		s.mu.Unlock()
	}()
	if s.block != nil {
		select {
		case <-s.block:
		case <-s.stop:
			return errors.New("shutting down")
		}
	}
	msg, err := netmail.ReadMessage(r)
	if err != nil {
		return err
	}
	subject, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	if err != nil {
		return err
	}
	var body io.Reader = msg.Body
	switch strings.ToLower(msg.Header.Get("Content-Transfer-Encoding")) {
	case "quoted-printable":
		body = quotedprintable.NewReader(body)
	case "base64":
		body = base64.NewDecoder(base64.StdEncoding, body)
	}
	text, err := io.ReadAll(body)
	if err != nil {
		return err
	}
	_, isTLS := ss.conn.TLSConnectionState()
	s.mu.Lock()
	s.msgs = append(s.msgs, received{
		From: ss.from, To: append([]string(nil), ss.to...), User: ss.user, TLS: isTLS,
		Header: msg.Header, Subject: subject, Body: strings.ReplaceAll(string(text), "\r\n", "\n"),
	})
	s.mu.Unlock()
	return nil
}

func (ss *sinkSession) Reset() { ss.from, ss.to = "", nil }

func (ss *sinkSession) Logout() error { return nil }

// selfSigned returns a server certificate for 127.0.0.1 and a client configuration that trusts it.
func selfSigned(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "clover test smtp"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	server = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}
	client = &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	return server, client
}
