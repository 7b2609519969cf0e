package server

import (
	"bytes"
	"context"
	"fmt"
	"net/http"

	"github.com/clover-sched/clover/admin"
	"github.com/clover-sched/clover/internal/keyring"
)

// The web console (package admin) is served by every server at /ui/. It reads and writes through this
// server's own API handler, in process, as the person logged in: the API's role checks, audit and
// forwarding to the leader apply to it unchanged. Its sessions are signed with a key derived from the
// cluster secret, so a login holds on every server.

// consoleCallerKey marks a request the console makes to the API in process, with its caller: a context
// value, which no request from the network can carry.
type consoleCallerKey struct{}

// consoleAPI is the API as the console calls it.
type consoleAPI struct{ api http.Handler }

func (a consoleAPI) Do(ctx context.Context, caller admin.Caller, method, path string, body []byte) (int, []byte, error) {
	ctx = context.WithValue(ctx, consoleCallerKey{}, Caller{Name: caller.Name, Role: caller.Role, Console: true})
	r, err := http.NewRequestWithContext(ctx, method, path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, fmt.Errorf("console: %s %s: %w", method, path, err)
	}
	r.Host = "localhost"
	r.RemoteAddr = "console"
	if method != http.MethodGet && method != http.MethodHead {
		r.Header.Set("Content-Type", "application/json")
	}
	w := &bufferedResponse{header: http.Header{}}
	a.api.ServeHTTP(w, r)
	return w.status, w.body.Bytes(), nil
}

// bufferedResponse keeps an in-process API answer.
type bufferedResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header { return b.header }
func (b *bufferedResponse) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = http.StatusOK
	}
	return b.body.Write(p)
}
func (b *bufferedResponse) WriteHeader(status int) {
	if b.status == 0 {
		b.status = status
	}
}

// newConsole makes the console once the keys are loaded.
func (s *Server) newConsole(api http.Handler) (*admin.Console, error) {
	o := admin.Options{API: consoleAPI{api: api}, Logger: s.logger.With("component", "console"), Now: s.now,
		SecureCookies: s.cfg.API.TLS.Enabled(), Origins: s.cfg.API.Origins}
	if !s.sec.insecure() {
		o.SessionKey = []byte(keyring.Derive(s.sec.forwardKey, keyring.PurposeConsoleSession))
		o.Holder = func(hash string) (admin.Caller, bool, error) {
			tok, err := s.sec.tokens.lookup(hash)
			if err != nil {
				return admin.Caller{}, false, err
			}
			return admin.Caller{Name: tok.Name, Role: tok.Role}, tok.Name != "", nil
		}
	}
	c, err := admin.New(o)
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	return c, nil
}

// serveConsole serves /ui/ once the console is made, to the hosts the API answers (a name that DNS
// rebinding points at this server is refused, as by the API).
func (s *Server) serveConsole(w http.ResponseWriter, r *http.Request) {
	if !s.knownHost(r.Host) {
		s.refuse(w, r, http.StatusForbidden, "host", errUnknownHost)
		return
	}
	ui := s.ui.Load()
	if ui == nil {
		http.Error(w, "the console is starting", http.StatusServiceUnavailable)
		return
	}
	ui.ServeHTTP(w, r)
}
