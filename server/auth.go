package server

import (
	"bytes"
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/clover-sched/clover/api"
	"github.com/clover-sched/clover/internal/keyring"
)

// Headers a follower adds when it forwards a write to the leader: who called it, signed with the cluster
// secret. The caller's own token is never forwarded (the leader's address comes from ZooKeeper).
const (
	headerCaller      = "X-Clover-Caller"
	headerRole        = "X-Clover-Role"
	headerForwardedBy = "X-Clover-Forwarded-By"
	headerForwardAt   = "X-Clover-Forward-At"
	headerSignature   = "X-Clover-Signature"
)

// forwardSkew is how old (or early) a signed forward may be.
const forwardSkew = time.Minute

// Caller is who made an API request, once authenticated.
type Caller struct {
	Name string
	Role string
	Via  string // the server that forwarded the request, if any
	// Console: the request came from this server's web console, in process (see console.go).
	Console bool
}

// via is what the audit says the request came through: the forwarding server, or the console.
func (c Caller) via() string {
	if c.Console && c.Via == "" {
		return "console"
	}
	return c.Via
}

type callerKey struct{}

// callerOf is the request's authenticated caller.
func callerOf(ctx context.Context) Caller {
	c, _ := ctx.Value(callerKey{}).(Caller)
	return c
}

var (
	errNoToken       = errors.New("authentication required: send Authorization: Bearer <token> (clover --token, or CLOVER_TOKEN)")
	errBadToken      = errors.New("unknown or revoked token")
	errBadForward    = errors.New("forwarded request without a valid signature")
	errMediaType     = errors.New("writes must be sent as Content-Type: application/json")
	errForeignOrigin = errors.New("request from a foreign browser origin refused")
	errUnknownHost   = errors.New("unknown Host header refused (add the name to api.hosts)")
)

// guard wraps every API route: it refuses requests from browsers that another site drives (Host,
// Origin, Content-Type), authenticates the caller (a token, or a signed forward from another server),
// checks the caller's role against the route's and bounds the body.
func (s *Server) guard(rt api.Route, h http.HandlerFunc) http.HandlerFunc {
	write := rt.Method != http.MethodGet && rt.Method != http.MethodHead
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.knownHost(r.Host) {
			s.refuse(w, r, http.StatusForbidden, "host", errUnknownHost)
			return
		}
		if o := r.Header.Get("Origin"); o != "" && !s.sameOrigin(o, r) {
			s.refuse(w, r, http.StatusForbidden, "origin", errForeignOrigin)
			return
		}
		if write && rt.Method != http.MethodDelete && !jsonBody(r) {
			s.refuse(w, r, http.StatusUnsupportedMediaType, "media_type", errMediaType)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, cmp.Or(rt.MaxBody, maxBody))
		caller, status, err := s.authenticate(r)
		if err != nil {
			if status == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="clover"`)
			}
			s.refuse(w, r, status, "unauthenticated", err)
			return
		}
		r = r.WithContext(context.WithValue(r.Context(), callerKey{}, caller))
		if keyring.RoleRank(caller.Role) < keyring.RoleRank(rt.Role) {
			err := fmt.Errorf("%s (role %s) may not %s: it needs role %s", caller.Name, caller.Role, rt.Pattern(), rt.Role)
			if write {
				s.audit(r, rt, http.StatusForbidden, nil, err)
			}
			s.refuse(w, r, http.StatusForbidden, "forbidden", err)
			return
		}
		if !write {
			h(w, r)
			return
		}
		s.audited(rt, h)(w, r)
	}
}

func (s *Server) refuse(w http.ResponseWriter, r *http.Request, status int, reason string, err error) {
	s.metrics.apiRefused.WithLabelValues(reason).Inc()
	s.logger.Debug("api request refused", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr, "reason", reason, "err", err)
	writeError(w, status, err)
}

// jsonBody reports whether the request says its body is JSON. Browsers send a cross-site form or
// text/plain body without asking first (no CORS preflight); application/json makes them ask, and this
// API answers no preflight.
func jsonBody(r *http.Request) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return err == nil && mt == "application/json"
}

// authenticate returns the caller of r, or the status and reason to refuse it.
func (s *Server) authenticate(r *http.Request) (Caller, int, error) {
	if c, ok := r.Context().Value(consoleCallerKey{}).(Caller); ok {
		return c, 0, nil // the console, in process, for the person logged in to it
	}
	if r.Header.Get(headerSignature) != "" || r.Header.Get(headerCaller) != "" || r.Header.Get(headerForwardedBy) != "" {
		if s.sec.insecure() {
			return Caller{Name: r.Header.Get(headerCaller), Role: keyring.RoleAdmin, Via: r.Header.Get(headerForwardedBy)}, 0, nil
		}
		c, err := s.verifyForward(r)
		if err != nil {
			return Caller{}, http.StatusUnauthorized, err
		}
		return c, 0, nil
	}
	if s.sec.insecure() {
		return Caller{Name: "anonymous", Role: keyring.RoleAdmin}, 0, nil
	}
	auth := r.Header.Get("Authorization")
	token, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok || token == "" {
		return Caller{}, http.StatusUnauthorized, errNoToken
	}
	tok, err := s.sec.tokens.lookup(keyring.HashToken(strings.TrimSpace(token)))
	if err != nil {
		s.dropLog.Warn(s.logger, "api tokens unreadable: every token is refused until the file is mended", "err", err)
		return Caller{}, http.StatusServiceUnavailable, errors.New("the server cannot read its tokens file")
	}
	if tok.Name == "" {
		return Caller{}, http.StatusUnauthorized, errBadToken
	}
	return Caller{Name: tok.Name, Role: tok.Role}, 0, nil
}

// forwardSignature signs a forwarded request: method, URI, caller, role, forwarder, time and body.
func forwardSignature(key []byte, method, uri, caller, role, by, at string, body []byte) string {
	sum := sha256.Sum256(body)
	m := hmac.New(sha256.New, key)
	for _, part := range []string{method, uri, caller, role, by, at, hex.EncodeToString(sum[:])} {
		m.Write([]byte(part))
		m.Write([]byte{0})
	}
	return hex.EncodeToString(m.Sum(nil))
}

// signForward replaces r's credentials by its caller's identity signed for the leader.
func (s *Server) signForward(r *http.Request, c Caller) error {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return fmt.Errorf("read body: %w", err)
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	r.Header.Del("Authorization")
	at := strconv.FormatInt(s.now().UnixMilli(), 10)
	by := s.cfg.ID
	if c.Console { // the audit says the write came from this server's console
		by = "console@" + s.cfg.ID
	}
	r.Header.Set(headerCaller, c.Name)
	r.Header.Set(headerRole, c.Role)
	r.Header.Set(headerForwardedBy, by)
	r.Header.Set(headerForwardAt, at)
	if !s.sec.insecure() {
		r.Header.Set(headerSignature, forwardSignature(s.sec.forwardKey, r.Method, r.URL.RequestURI(), c.Name, c.Role, by, at, body))
	}
	return nil
}

// verifyForward checks a forwarded request's signature, its age and that it was not seen before.
func (s *Server) verifyForward(r *http.Request) (Caller, error) {
	c := Caller{Name: r.Header.Get(headerCaller), Role: r.Header.Get(headerRole), Via: r.Header.Get(headerForwardedBy)}
	at := r.Header.Get(headerForwardAt)
	sig := r.Header.Get(headerSignature)
	ms, err := strconv.ParseInt(at, 10, 64)
	if err != nil || sig == "" || c.Name == "" || keyring.RoleRank(c.Role) < 0 {
		return Caller{}, errBadForward
	}
	if d := s.now().Sub(time.UnixMilli(ms)); d > forwardSkew || d < -forwardSkew {
		return Caller{}, fmt.Errorf("%w: signed %s ago (clocks more than %s apart?)", errBadForward, d.Round(time.Second), forwardSkew)
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return Caller{}, fmt.Errorf("read body: %w", err)
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	want := forwardSignature(s.sec.forwardKey, r.Method, r.URL.RequestURI(), c.Name, c.Role, c.Via, at, body)
	if subtle.ConstantTimeCompare([]byte(want), []byte(sig)) != 1 {
		return Caller{}, errBadForward
	}
	if !s.sec.replays.first(sig, s.now()) {
		return Caller{}, fmt.Errorf("%w: replayed", errBadForward)
	}
	return c, nil
}

// replayGuard remembers the signatures of forwarded requests for as long as they are fresh.
type replayGuard struct {
	mu   sync.Mutex
	seen map[string]time.Time
}

func newReplayGuard() *replayGuard { return &replayGuard{seen: map[string]time.Time{}} }

// first records sig and reports whether it was new.
func (g *replayGuard) first(sig string, now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.seen) > 1024 {
		for k, at := range g.seen {
			if now.Sub(at) > 2*forwardSkew {
				delete(g.seen, k)
			}
		}
	}
	if _, ok := g.seen[sig]; ok {
		return false
	}
	g.seen[sig] = now
	return true
}

// knownHost reports whether a Host header names this server: an IP address, localhost, this machine's
// name, the advertised API host, or a name in api.hosts. A name that a DNS rebinding attack points at
// 127.0.0.1 is none of these.
func (s *Server) knownHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "" || net.ParseIP(strings.Trim(host, "[]")) != nil || host == "localhost" {
		return true
	}
	if name, err := os.Hostname(); err == nil && strings.EqualFold(name, host) {
		return true
	}
	if h, _, err := net.SplitHostPort(s.apiAddr); err == nil && strings.EqualFold(h, host) {
		return true
	}
	return slices.ContainsFunc(s.cfg.API.Hosts, func(h string) bool { return strings.EqualFold(h, host) })
}

// sameOrigin reports whether a browser's Origin is this API's own (the console) or one of api.origins.
func (s *Server) sameOrigin(origin string, r *http.Request) bool {
	if slices.Contains(s.cfg.API.Origins, origin) {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil {
		return false
	}
	return strings.EqualFold(u.Host, r.Host)
}
